"""Exports: files written, read back with pandas or import_json, and compared."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import os
import pickle
import stat
import sys
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crewtrain_nb import (
    CrewTrainingHandler,
    StoreFormatError,
    UnsafePickleError,
    export_csv,
    export_json,
    export_parquet,
    import_json,
    to_frame,
)
from crewtrain_nb import export as export_module
from crewtrain_nb.demo import make_metrics_data, make_trained_agents_data

from .test_frames import imports_of

# -- helpers -----------------------------------------------------------------------------


def identical(a: Any, b: Any) -> bool:
    """Equal values of identical types, all the way down (NaN equals NaN; arrays by dtype, shape, values)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return all(identical(x, y) for x, y in zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict):
        return (
            list(a) == list(b)
            and all(type(k) is type(b_k) for k, b_k in zip(a, b, strict=True))
            and all(identical(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (float, np.floating)) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def tricky_records() -> dict[str, Any]:
    """Every kind of plain data the safe loader lets into a store."""
    return {
        "ml": {
            0: {
                "loss": 0.5,
                "nan": float("nan"),
                "inf": float("inf"),
                "neg": -0.0,
                "big": 2**80,
                "ok": True,
                "none": None,
                "tuple": (1, "a", (2.5,)),
                "set": {1, 2, 3},
                "frozen": frozenset({"x"}),
                "bytes": b"\x00\xffraw",
                "bytearray": bytearray(b"ba"),
                "complex": complex(1, -2),
                "by_int": {1: "one", (2, 3): "pair"},
                "tag_clash": {"$type": "dict", "items": "not a tag"},
                "ordered": OrderedDict([("b", 1), ("a", 2)]),
                "when": datetime.datetime(2025, 5, 1, 12, 30, 15, 123, tzinfo=datetime.timezone.utc),
                "naive": datetime.datetime(2025, 5, 1, 12, 30),
                "day": datetime.date(2025, 5, 1),
                "clock": datetime.time(9, 5, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
                "took": datetime.timedelta(days=1, seconds=5, microseconds=7),
                "zone": datetime.timezone(datetime.timedelta(hours=-3)),
                "price": decimal.Decimal("1.10"),
                "id": uuid.UUID(int=7),
                "text": 'línea 1\n"quoted", comma',
            },
            1: {
                "f32": np.float32(0.1),
                "i8": np.int8(-3),
                "u64": np.uint64(2**63),
                "flag": np.bool_(False),
                "npstr": np.str_("s"),
                "matrix": np.arange(6, dtype=np.float32).reshape(2, 3),
                "with_nan": np.array([1.0, np.nan]),
                "words": np.array(["a", "bc"]),
                "raw": np.array([b"x", b"yz"]),
                "objects": np.array([[1, 2], "x", None], dtype=object),
                "scalar_array": np.array(3.5),
                "empty": np.zeros((0, 2)),
                "dtype": np.dtype("<i4"),
                "nested": {"deeper": {"deepest": [1, [2, {"x": None}]]}},
            },
            10: 3.25,  # a record that is not a dict
            2: "plain text record",
        },
        "$type": {0: {"agent named like the tag": 1}},
    }


# -- CSV ---------------------------------------------------------------------------------


def test_csv_round_trip_of_a_metrics_store(
    tmp_path: Path, metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]
) -> None:
    path = export_csv(metrics_store.file_path, tmp_path / "metrics.csv")
    assert path == tmp_path / "metrics.csv"
    read = pd.read_csv(path)
    frame = to_frame(metrics_store)
    assert read.columns.tolist() == frame.columns.tolist()
    for name in ("iteration", "loss", "accuracy", "metrics.f1", "metrics.precision", "metrics.recall"):
        assert read[name].tolist() == frame[name].tolist(), name  # full precision, not rounded
    assert read["agent"].tolist() == frame["agent"].tolist()
    assert [json.loads(cell) for cell in read["weights"]] == frame["weights"].tolist()
    assert path.read_bytes().decode("utf-8").count("\n") == len(frame) + 1  # header, then one line per row


def test_csv_of_crewai_records_keeps_text_and_missing_outputs(
    tmp_path: Path, training_store: CrewTrainingHandler
) -> None:
    agent = next(iter(training_store.load()))
    training_store.append(99, agent, {"initial_output": 'Ünïcode, "quotes"\nand a new line', "human_feedback": "ok"})
    path = export_csv(training_store, tmp_path / "training.csv")
    read = pd.read_csv(path, keep_default_na=False, na_values=[""])
    frame = to_frame(training_store)
    assert len(read) == len(frame)
    for name in ("initial_output", "human_feedback"):
        assert read[name].tolist() == frame[name].tolist()
    assert read["improved_output"].isna().tolist() == frame["improved_output"].isna().tolist()
    assert read.loc[read.iteration == 99, "initial_output"].item() == 'Ünïcode, "quotes"\nand a new line'


def test_csv_long_layout_and_trained_store(tmp_path: Path, metrics_data: dict[str, Any]) -> None:
    long = pd.read_csv(export_csv(metrics_data, tmp_path / "long.csv", layout="long"))
    frame = to_frame(metrics_data, layout="long")
    assert long.columns.tolist() == ["agent", "iteration", "key", "value"] and len(long) == len(frame)
    assert long["key"].tolist() == frame["key"].tolist()
    weights = long[long.key == "weights"]["value"].map(json.loads).tolist()
    assert weights == frame[frame.key == "weights"]["value"].tolist()

    trained = make_trained_agents_data()
    read = pd.read_csv(export_csv(trained, tmp_path / "trained.csv"))
    assert read.columns.tolist() == ["agent", "suggestions", "quality", "final_summary"]
    assert {row.agent: json.loads(row.suggestions) for row in read.itertuples()} == {
        role: entry["suggestions"] for role, entry in trained.items()
    }


def test_csv_chunks_write_the_same_file(tmp_path: Path, metrics_data: dict[str, Any]) -> None:
    whole = export_csv(metrics_data, tmp_path / "whole.csv")
    chunked = export_csv(metrics_data, tmp_path / "chunked.csv", chunk_rows=7)
    assert whole.read_bytes() == chunked.read_bytes()


def test_csv_of_an_empty_store_has_the_header(tmp_path: Path) -> None:
    path = export_csv({}, tmp_path / "empty.csv")
    assert path.read_text(encoding="utf-8") == "agent,iteration\n"


# -- JSON --------------------------------------------------------------------------------


def test_json_round_trip_of_real_store_files(
    tmp_path: Path, training_store: CrewTrainingHandler, metrics_store: CrewTrainingHandler, trained_data: Any
) -> None:
    trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    trained.save(trained_data)
    for handler in (training_store, metrics_store, trained):
        path = export_json(handler.file_path, tmp_path / (Path(handler.file_path).stem + ".json"))
        back = import_json(path)
        assert identical(back, handler.load())
        assert all(type(key) is int for records in back.values() for key in records) or handler is trained


def test_json_round_trip_is_identical_for_every_kind_of_plain_data(tmp_path: Path) -> None:
    data = tricky_records()
    handler = CrewTrainingHandler(tmp_path / "tricky.pkl")
    handler.save(data)
    stored = handler.load()
    back = import_json(export_json(handler, tmp_path / "tricky.json"))
    assert identical(back, stored)
    assert list(back["ml"]) == [0, 1, 10, 2]  # store order kept, int keys restored
    text = (tmp_path / "tricky.json").read_text(encoding="utf-8")
    assert json.loads(text)["format"] == "crewtrain_nb.store"  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in text and "Infinity" not in text


@pytest.mark.parametrize("data", [{}, {"a": {}}, {"Writer": {}, "Editor": {"quality": 7.0}}])
def test_json_round_trip_of_empty_and_sparse_stores(tmp_path: Path, data: dict[str, Any]) -> None:
    assert identical(import_json(export_json(data, tmp_path / "s.json")), data)


def test_json_refuses_objects_it_cannot_restore_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("previous export", encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        export_json({"writer": {3: {"when": np.datetime64("2025-01-01")}}}, target)
    message = str(caught.value)
    assert "agent 'writer', iteration 3" in message and "datetime64" in message
    assert target.read_text(encoding="utf-8") == "previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]  # no temporary file left


def test_import_json_explains_bad_files(tmp_path: Path) -> None:
    not_json = tmp_path / "a.json"
    not_json.write_text("{oops", encoding="utf-8")
    with pytest.raises(ValueError, match="not a JSON file"):
        import_json(not_json)
    other = tmp_path / "b.json"
    other.write_text('{"agent": {"0": {}}}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a crewtrain_nb JSON export"):
        import_json(other)
    newer = tmp_path / "c.json"
    newer.write_text('{"format": "crewtrain_nb.store", "version": 99, "kind": "empty", "data": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match="upgrade"):
        import_json(newer)
    damaged = tmp_path / "d.json"
    damaged.write_text(
        '{"format": "crewtrain_nb.store", "version": 1, "kind": "iterations", "data": {"a": {"x": 1}}}',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="iteration key 'x'"):
        import_json(damaged)
    with pytest.raises(FileNotFoundError, match="export_json"):
        import_json(tmp_path / "missing.json")


def test_json_needs_str_agent_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="agent key 7 is a int"):
        export_json({7: {0: {"x": 1}}}, tmp_path / "x.json")


# -- Parquet -----------------------------------------------------------------------------


def test_parquet_round_trip(tmp_path: Path, metrics_store: CrewTrainingHandler) -> None:
    path = export_parquet(metrics_store, tmp_path / "metrics.parquet", chunk_rows=10)
    read = pd.read_parquet(path)
    frame = to_frame(metrics_store)
    pd.testing.assert_frame_equal(read.drop(columns="weights"), frame.drop(columns="weights"))
    assert [cell.tolist() for cell in read["weights"]] == frame["weights"].tolist()
    import pyarrow.parquet as pq

    assert pq.ParquetFile(path).metadata.num_row_groups == 8  # 75 rows in chunks of 10


def test_parquet_of_crewai_long_layout_and_mixed_values(tmp_path: Path, training_store: CrewTrainingHandler) -> None:
    wide = pd.read_parquet(export_parquet(training_store, tmp_path / "t.parquet"))
    frame = to_frame(training_store)
    assert wide["improved_output"].isna().tolist() == frame["improved_output"].isna().tolist()
    assert wide["initial_output"].tolist() == frame["initial_output"].tolist()

    mixed = {"a": {0: {"x": 1.5, "y": "text"}, 1: {"x": "two", "y": [1, 2]}}}
    long = pd.read_parquet(export_parquet(mixed, tmp_path / "m.parquet", layout="long"))
    assert long["value"].tolist() == ["1.5", "text", "two", "[1, 2]"]  # mixed values: strings kept, others JSON


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"crewtrain-nb\[parquet\]"):
        export_parquet({"a": {0: {"x": 1}}}, tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


# -- progress, paths, purity ---------------------------------------------------------------


def test_progress_bar_only_when_asked_or_interactive(
    tmp_path: Path, metrics_data: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    export_csv(metrics_data, tmp_path / "quiet.csv", chunk_rows=5)
    export_json(metrics_data, tmp_path / "quiet.json", chunk_rows=5)
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal
    export_csv(metrics_data, tmp_path / "loud.csv", chunk_rows=5, progress=True)
    assert "CSV loud.csv" in capsys.readouterr().err

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert export_module._show_progress(None, total=100, chunk=10)
    assert not export_module._show_progress(None, total=10, chunk=10)  # one chunk: nothing to show
    assert not export_module._show_progress(False, total=100, chunk=10)


def test_paths_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such directory"):
        export_csv({}, tmp_path / "missing" / "x.csv")
    with pytest.raises(IsADirectoryError):
        export_json({}, tmp_path)
    with pytest.raises(ValueError, match="chunk_rows"):
        export_csv({}, tmp_path / "x.csv", chunk_rows=0)
    with pytest.raises(ValueError, match="not a store"):
        export_csv([1, 2], tmp_path / "x.csv")


def test_exports_do_not_mutate_their_input(tmp_path: Path) -> None:
    data = {**tricky_records(), **make_metrics_data(iterations=4)}
    del data["$type"]
    before = pickle.dumps(data, protocol=4)
    export_csv(data, tmp_path / "a.csv")
    export_csv(data, tmp_path / "b.csv", layout="long")
    export_json(data, tmp_path / "c.json")
    export_parquet(data, tmp_path / "d.parquet")
    assert pickle.dumps(data, protocol=4) == before


def test_export_imports_neither_matplotlib_nor_ipywidgets() -> None:
    absolute, local = imports_of(Path(export_module.__file__))
    assert not {name for name in absolute if name.split(".")[0] in {"matplotlib", "ipywidgets"}}
    assert local == {"frames", "store"}  # store: the one atomic writer, nothing that opens a store


def test_exports_list_agents_in_store_order(
    tmp_path: Path, unsorted_metrics_store: CrewTrainingHandler, store_order: tuple[str, ...]
) -> None:
    order = list(store_order)
    for layout in ("wide", "long"):
        csv = pd.read_csv(export_csv(unsorted_metrics_store, tmp_path / f"{layout}.csv", layout=layout))
        assert list(dict.fromkeys(csv["agent"])) == order, layout
    assert list(import_json(export_json(unsorted_metrics_store, tmp_path / "m.json"))) == order
    parquet = pd.read_parquet(export_parquet(unsorted_metrics_store, tmp_path / "m.parquet"))
    assert list(dict.fromkeys(parquet["agent"])) == order




# -- bad input, permissions, trusted ------------------------------------------------------------------

EXPORTS = [
    pytest.param(export_csv, ".csv", id="csv"),
    pytest.param(export_json, ".json", id="json"),
    pytest.param(export_parquet, ".parquet", id="parquet"),
]


@pytest.mark.parametrize(("export", "suffix"), EXPORTS)
def test_an_iteration_key_beyond_int64_is_a_format_error_and_writes_nothing(
    beyond_int64_stores: dict[str, Path], tmp_path: Path, export: Any, suffix: str
) -> None:
    path = beyond_int64_stores["metrics"]
    with pytest.raises(StoreFormatError, match=rf"{path}: agent '.*', iteration 10{{30}}: .*beyond what an int64"):
        export(path, tmp_path / f"out{suffix}")
    assert not (tmp_path / f"out{suffix}").exists()


@pytest.mark.parametrize(("export", "suffix"), EXPORTS)
def test_exports_get_the_users_usual_permissions_and_keep_an_existing_mode(
    tmp_path: Path, metrics_store: Any, export: Any, suffix: str
) -> None:
    # A person sharing a CSV expects what any new file gets (the umask applies); only stores stay 0600.
    previous = os.umask(0o022)
    try:
        new = export(metrics_store, tmp_path / f"new{suffix}")
        kept = tmp_path / f"kept{suffix}"
        kept.write_text("old")
        os.chmod(kept, 0o640)
        export(metrics_store, kept)
        os.umask(0o077)
        private = export(metrics_store, tmp_path / f"private{suffix}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_bytes() != b"old"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(os.stat(metrics_store.file_path).st_mode) == 0o600
    assert sorted(name for name in os.listdir(tmp_path) if name.endswith(".tmp")) == []


@pytest.mark.parametrize(("export", "suffix"), EXPORTS)
def test_every_export_takes_trusted(
    untrusted_stores: dict[str, Path], tmp_path: Path, export: Any, suffix: str
) -> None:
    with pytest.raises(UnsafePickleError, match="fractions.Fraction"):
        export(untrusted_stores["training"], tmp_path / f"out{suffix}")
    if export is export_json:  # loaded now: what stops it is JSON's own limit, said as such
        with pytest.raises(ValueError, match="a Fraction value cannot be written to JSON losslessly"):
            export(untrusted_stores["training"], tmp_path / f"out{suffix}", trusted=True)
    else:
        assert export(untrusted_stores["training"], tmp_path / f"out{suffix}", trusted=True).stat().st_size > 0
