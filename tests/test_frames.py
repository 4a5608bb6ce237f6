"""Frames: store data -> DataFrames, checked against a plain per-record reference."""

from __future__ import annotations

import ast
import math
import os
import pickle
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crewtrain_nb import (
    CrewTrainingHandler,
    StoreFormatError,
    StoreNotFoundError,
    UnsafePickleError,
    feedback_frame,
    metrics_frame,
    runs_frame,
    store_kind,
    to_frame,
    trained_agents_frame,
)
from crewtrain_nb import frames as frames_module
from crewtrain_nb.crewai import feedback_status
from crewtrain_nb.demo import make_metrics_data, make_trained_agents_data
from crewtrain_nb.frames import _builders as frames_builders
from crewtrain_nb.frames import _flatten as frames_flatten

# -- a plain reference: flatten one record at a time -------------------------------


def flatten(record: Any, prefix: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], Any]:
    """Leaves of a record by key path; a record that is not a dict is the leaf ``("value",)``."""
    if not isinstance(record, Mapping):
        return {prefix or ("value",): record}
    leaves: dict[tuple[Any, ...], Any] = {}
    for key, value in record.items():
        if isinstance(value, Mapping):
            leaves.update(flatten(value, (*prefix, key)))
        else:
            leaves[(*prefix, key)] = value
    return leaves


def reference_rows(data: Mapping[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    """Rows in (agent in store order, iteration) order; leaves ordered like the wide columns (first appearance)."""
    rows = [
        (agent, iteration, {".".join(map(str, path)): value for path, value in flatten(data[agent][iteration]).items()})
        for agent in data
        for iteration in sorted(data[agent])
    ]
    order = {name: rank for rank, name in enumerate(dict.fromkeys(name for _, _, leaves in rows for name in leaves))}
    return [(a, i, dict(sorted(leaves.items(), key=lambda item: order[item[0]]))) for a, i, leaves in rows]


def reference_columns(data: Mapping[str, Any]) -> list[str]:
    return list(dict.fromkeys(name for _, _, leaves in reference_rows(data) for name in leaves))


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def same(cell: Any, expected: Any) -> bool:
    """Frame cell vs stored value: missing equals missing; numbers by value; arrays elementwise."""
    if is_missing(expected):
        return is_missing(cell)
    if isinstance(expected, (list, tuple, np.ndarray)):
        return isinstance(cell, type(expected)) and np.array_equal(np.asarray(cell), np.asarray(expected))
    if isinstance(expected, (bool, np.bool_)):
        return isinstance(cell, (bool, np.bool_)) and bool(cell) == bool(expected)
    return type(cell) is not bool and cell == expected


def is_metric(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def deep_bytes(data: Any) -> bytes:
    return pickle.dumps(data, protocol=4)


# -- stores built for the tests (seeded) -------------------------------------------


def crewai_086(training: dict[str, Any]) -> dict[str, Any]:
    """CrewAI 0.86 keeps "agent" (the id) and "agent_role" in every record."""
    data: dict[str, Any] = {}
    for agent, role in zip(training, ("Researcher", "Writer", "Reviewer"), strict=True):
        data[agent] = {i: {**record, "agent": agent, "agent_role": role} for i, record in training[agent].items()}
    return data


def ragged_store(agents: int = 3, iterations: int = 40, seed: int = 3) -> dict[str, Any]:
    """Records that do not share one shape: missing keys, extra keys, dict-or-scalar, None, arrays."""
    rng = random.Random(seed)
    data: dict[str, Any] = {}
    for a in range(agents):
        records: dict[int, Any] = {}
        for i in rng.sample(range(iterations * 2), iterations):  # sparse, inserted out of order
            record: dict[str, Any] = {"loss": rng.random(), "step": i, "metrics": {"f1": rng.random()}}
            roll = rng.random()
            if roll < 0.15:
                del record["loss"]
            elif roll < 0.25:
                record["metrics"] = None
            elif roll < 0.35:
                record["metrics"]["extra"] = {"deep": rng.randrange(5)}
            elif roll < 0.45:
                record["note"] = rng.choice(["ok", "diverged", ""])
            elif roll < 0.50:
                record["ok"] = rng.random() < 0.5
            elif roll < 0.55:
                record = rng.random()  # a bare float: lands in "value"
            elif roll < 0.60:
                record["weights"] = np.arange(rng.randrange(1, 4), dtype=np.float32)
            records[i] = record
        data[f"agent-{a}"] = records
    return data


# -- wide layout -----------------------------------------------------------------------


def check_wide(frame: pd.DataFrame, data: Mapping[str, Any]) -> None:
    expected = reference_rows(data)
    assert len(frame) == len(expected)
    assert list(frame.columns[:2]) == ["agent", "iteration"]
    assert frame["iteration"].dtype == np.int64
    assert list(zip(frame["agent"], frame["iteration"], strict=True)) == [(a, i) for a, i, _ in expected]
    leaf_names = reference_columns(data)
    assert list(frame.columns[2:]) == leaf_names
    records = frame.to_dict("records")
    for row, (_, _, leaves) in zip(records, expected, strict=True):
        for name in leaf_names:
            assert same(row[name], leaves.get(name)), (row["agent"], row["iteration"], name, row[name], leaves)


def test_wide_frame_round_trips_a_store_written_by_the_handler(
    metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]
) -> None:
    from_path = to_frame(metrics_store.file_path)
    check_wide(from_path, metrics_data)
    assert list(from_path.columns) == [
        "agent",
        "iteration",
        "loss",
        "accuracy",
        "metrics.f1",
        "metrics.precision",
        "metrics.recall",
        "weights",
    ]
    assert from_path["loss"].dtype == np.float64
    pd.testing.assert_frame_equal(from_path, to_frame(metrics_store))
    pd.testing.assert_frame_equal(from_path, to_frame(metrics_data))
    assert from_path.attrs == {
        "source": metrics_store.file_path,
        "kind": "iterations",
        "agents": 3,
        "records": 75,
        "layout": "wide",
    }
    assert to_frame(metrics_data).attrs["source"] is None


def test_iterations_sort_numerically_whatever_the_insertion_order(tmp_path: Path) -> None:
    data = make_metrics_data(agents=("b", "a"), iterations=13, weights=0, seed=1)
    shuffled = {agent: dict(reversed(list(records.items()))) for agent, records in data.items()}
    handler = CrewTrainingHandler(tmp_path / "m.pkl")
    handler.save(shuffled)
    frame = to_frame(tmp_path / "m.pkl")
    assert frame["agent"].tolist() == ["b"] * 13 + ["a"] * 13  # agents in store order
    assert frame["iteration"].tolist() == list(range(13)) * 2  # 10 after 9, not after 1
    check_wide(frame, shuffled)


def test_crewai_records_without_improved_output_keep_their_rows(
    training_store: CrewTrainingHandler, training_data: dict[str, Any]
) -> None:
    frame = to_frame(Path(training_store.file_path))
    check_wide(frame, training_data)
    missing = [
        "improved_output" not in training_data[a][i] for a, i in zip(frame["agent"], frame["iteration"], strict=True)
    ]
    assert any(missing) and not all(missing)  # the fixture has both kinds
    assert frame["improved_output"].isna().tolist() == missing
    assert list(frame.columns[2:]) == ["initial_output", "human_feedback", "improved_output"]


def test_crewai_086_records_keep_agent_column_and_rename_the_record_key(training_data: dict[str, Any]) -> None:
    data = crewai_086(training_data)
    frame = to_frame(data)
    assert "record.agent" in frame.columns and "agent_role" in frame.columns
    assert (frame["agent"] == frame["record.agent"]).all()  # 0.86 stores the agent id in the record
    assert set(frame["agent_role"]) == {"Researcher", "Writer", "Reviewer"}
    long = to_frame(data, layout="long")
    assert {"agent", "agent_role"} <= set(long["key"])  # the long layout keeps the key as stored


def test_feedback_frame_keeps_the_086_agent_role_column(
    training_store_086: CrewTrainingHandler, training_data_086: dict[str, Any], training_data: dict[str, Any]
) -> None:
    frame = feedback_frame(training_store_086)
    assert list(frame.columns[:3]) == ["agent", "iteration", "agent_role"]
    roles = {agent: records[0]["agent_role"] for agent, records in training_data_086.items()}
    assert frame["agent_role"].tolist() == frame["agent"].map(roles).tolist()
    assert frame["agent_role"].tolist() == to_frame(training_store_086)["agent_role"].tolist()
    assert set(frame["status"]) == {"no_improved_output", "no_feedback"}
    assert "agent_role" not in feedback_frame(training_data).columns  # 1.x records carry no role


def test_records_that_are_not_dicts_land_in_value() -> None:
    frame = to_frame({"a": {0: 1.5, 1: {"value": 2.0, "x": "y"}, 2: None}, "b": {0: "text"}})
    assert frame.columns.tolist() == ["agent", "iteration", "value", "x"]
    assert same(frame["value"].tolist()[0], 1.5) and same(frame["value"].tolist()[1], 2.0)
    assert is_missing(frame["value"][2]) and frame["value"][3] == "text"
    assert frame["x"].tolist()[1] == "y"


@pytest.mark.parametrize("slice_size", [1, 7, 1024])
def test_ragged_records_match_the_reference_across_slices(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, slice_size: int
) -> None:
    monkeypatch.setattr(frames_flatten, "_SLICE", slice_size)
    data = ragged_store()
    handler = CrewTrainingHandler(tmp_path / "ragged.pkl")
    handler.save(data)
    frame = to_frame(tmp_path / "ragged.pkl")
    check_wide(frame, data)
    assert frame["metrics.f1"].dtype == np.float64
    assert frame["step"].dtype == np.float64  # missing from the bare-float records -> NaN


def test_records_with_many_different_keys_are_grouped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames_flatten, "_SLICE", 16)
    data = {"a": {i: {"common": i, f"only_{i % 20}": float(i), "m": {f"k{i % 3}": i}} for i in range(50)}}
    check_wide(to_frame(data), data)
    assert to_frame(data).columns.tolist()[2:5] == ["common", "only_0", "m.k0"]


def test_numpy_leaves_and_bools_keep_their_meaning() -> None:
    data = {
        "a": {
            0: {"f": np.float32(0.5), "i": np.int64(3), "b": True, "arr": np.array([1.0, 2.0]), "z": np.array(4.0)},
            1: {"f": np.float32(1.5), "i": np.int64(4), "b": False, "arr": np.array([3.0]), "z": np.array(5.0)},
        }
    }
    frame = to_frame(data)
    assert frame["f"].tolist() == [0.5, 1.5] and frame["i"].dtype == np.int64
    assert frame["b"].dtype == bool and frame["z"].tolist() == [4.0, 5.0]  # 0-d arrays are scalars
    assert [cell.tolist() for cell in frame["arr"]] == [[1.0, 2.0], [3.0]]
    metrics = metrics_frame(data)
    assert sorted(set(metrics["metric"])) == ["f", "i", "z"]  # no bool, no array


def test_big_ints_and_mixed_types_stay_exact() -> None:
    frame = to_frame({"a": {0: {"n": 2**70, "m": 1}, 1: {"n": 1, "m": "one"}}})
    assert frame["n"].tolist() == [2**70, 1]
    assert frame["m"].tolist() == [1, "one"]


# -- arrays ------------------------------------------------------------------------------


def test_array_leaves_are_kept_as_copies_dropped_or_summarised(metrics_data: dict[str, Any]) -> None:
    before = deep_bytes(metrics_data)
    kept = to_frame(metrics_data)
    first = metrics_data["planner"][0]["weights"]  # the store's first agent
    assert kept["weights"][0] == first and kept["weights"][0] is not first
    kept["weights"][0].append(99.0)  # a user editing a cell does not reach the store
    assert deep_bytes(metrics_data) == before

    assert "weights" not in to_frame(metrics_data, arrays="drop").columns

    summary = to_frame(metrics_data, arrays="summary")
    names = [c for c in summary.columns if c.startswith("weights")]
    assert names == ["weights.len", "weights.mean", "weights.min", "weights.max"]
    weights = [metrics_data[a][i]["weights"] for a, i in zip(summary["agent"], summary["iteration"], strict=True)]
    assert summary["weights.len"].tolist() == [len(w) for w in weights]
    assert summary["weights.len"].dtype == np.int64
    np.testing.assert_allclose(summary["weights.mean"], [np.mean(w) for w in weights])
    np.testing.assert_allclose(summary["weights.min"], [min(w) for w in weights])
    np.testing.assert_allclose(summary["weights.max"], [max(w) for w in weights])


def test_summary_of_ragged_text_and_empty_arrays() -> None:
    data = {
        "a": {
            0: {"x": [1, 2, 3]},
            1: {"x": (4.0,)},
            2: {"x": np.array([[1.0, 5.0], [3.0, 7.0]])},
            3: {"x": ["a", "b"]},
            4: {"x": []},
            5: {"x": [[1], [2, 3]]},
            6: {"x": 2.5},
        }
    }
    frame = to_frame(data, arrays="summary")
    assert frame["x.len"].tolist()[:6] == [3, 1, 2, 2, 0, 2]
    np.testing.assert_allclose(frame["x.mean"][:3], [2.0, 4.0, 4.0])
    np.testing.assert_allclose(frame["x.max"][:3], [3.0, 4.0, 7.0])
    assert frame["x.mean"][3:6].isna().all()  # text, empty, ragged: no statistics
    assert frame["x"].tolist()[6] == 2.5 and frame["x"][:6].isna().all()  # scalars stay in "x"


# -- long layout --------------------------------------------------------------------------


def test_long_layout_has_one_row_per_leaf(metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]) -> None:
    long = to_frame(metrics_store.file_path, layout="long")
    assert long.columns.tolist() == ["agent", "iteration", "key", "value"]
    expected = [(a, i, name, value) for a, i, leaves in reference_rows(metrics_data) for name, value in leaves.items()]
    assert len(long) == len(expected)
    for row, (agent, iteration, name, value) in zip(long.itertuples(index=False), expected, strict=True):
        assert (row.agent, row.iteration, row.key) == (agent, iteration, name)
        assert same(row.value, value)
    assert long.attrs["layout"] == "long"


@pytest.mark.parametrize("slice_size", [3, 1024])
def test_long_layout_of_ragged_records(monkeypatch: pytest.MonkeyPatch, slice_size: int) -> None:
    monkeypatch.setattr(frames_flatten, "_SLICE", slice_size)
    data = ragged_store(agents=2, iterations=25)
    long = to_frame(data, layout="long")
    expected = [(a, i, name, value) for a, i, leaves in reference_rows(data) for name, value in leaves.items()]
    assert [(r.agent, r.iteration, r.key) for r in long.itertuples(index=False)] == [e[:3] for e in expected]
    assert all(same(cell, e[3]) for cell, e in zip(long["value"], expected, strict=True))


# -- property: any store of plain records matches the reference ---------------------------

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "ok", "fin"]),
    st.lists(st.floats(-5, 5), max_size=3),
)
records = st.recursive(
    leaves, lambda inner: st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3), max_leaves=6
)
stores = st.dictionaries(
    st.sampled_from(["x", "y", "z"]),
    st.dictionaries(st.integers(0, 30), records, min_size=1, max_size=8),
    max_size=3,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=stores, slice_size=st.sampled_from([1, 2, 5, 1024]), grouped=st.booleans())
def test_property_any_store_matches_the_reference(
    monkeypatch: pytest.MonkeyPatch, data: Any, slice_size: int, grouped: bool
) -> None:
    monkeypatch.setattr(frames_flatten, "_SLICE", slice_size)
    monkeypatch.setattr(frames_flatten, "_FEW_EXTRA_KEYS", -(10**6) if grouped else 8)  # both ways of reading
    before = deep_bytes(data)
    check_wide(to_frame(data), data)

    long = to_frame(data, layout="long")
    expected = [(a, i, name, value) for a, i, leaves in reference_rows(data) for name, value in leaves.items()]
    assert [(r.agent, r.iteration, r.key) for r in long.itertuples(index=False)] == [e[:3] for e in expected]
    assert all(same(cell, e[3]) for cell, e in zip(long["value"], expected, strict=True))

    metrics = metrics_frame(data)
    position = {agent: rank for rank, agent in enumerate(data)}  # agents in store order
    wanted = sorted(
        ((a, name, i, float(value)) for a, i, name, value in expected if is_metric(value)),
        key=lambda row: (position[row[0]], *row[1:3]),
    )
    got = list(zip(metrics["agent"], metrics["metric"], metrics["iteration"], metrics["value"], strict=True))
    assert [row[:3] for row in got] == [row[:3] for row in wanted]
    assert all((math.isnan(g[3]) and math.isnan(w[3])) or g[3] == w[3] for g, w in zip(got, wanted, strict=True))
    assert deep_bytes(data) == before


# -- metrics_frame ----------------------------------------------------------------------------


def test_metrics_frame_contract(metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]) -> None:
    frame = metrics_frame(metrics_store)
    assert frame.columns.tolist() == ["agent", "iteration", "metric", "value"]
    assert frame["iteration"].dtype == np.int64 and frame["value"].dtype == np.float64
    assert frame["agent"].dtype == frame["metric"].dtype == pd.Series(["s"]).dtype
    assert set(frame["metric"]) == {"loss", "accuracy", "metrics.f1", "metrics.precision", "metrics.recall"}
    position = {agent: rank for rank, agent in enumerate(metrics_data)}  # agents in store order
    keys = list(zip(frame["agent"].map(position), frame["metric"], frame["iteration"], strict=True))
    assert keys == sorted(keys)
    assert len(frame) == 3 * 25 * 5
    for row in frame.sample(40, random_state=0).itertuples(index=False):
        record = metrics_data[row.agent][row.iteration]
        path = row.metric.split(".")
        value = record[path[0]] if len(path) == 1 else record[path[0]][path[1]]
        assert row.value == value
    assert frame.attrs["metrics"] == 5 and frame.attrs["kind"] == "iterations"


def test_metrics_frame_orders_the_same_by_blocks_or_by_sort(
    monkeypatch: pytest.MonkeyPatch, metrics_data: dict[str, Any]
) -> None:
    by_blocks = metrics_frame(metrics_data)  # every record has every metric
    monkeypatch.setattr(frames_builders, "_MAX_BLOCKS", 0)  # force the general path
    by_sort = metrics_frame(metrics_data)
    pd.testing.assert_frame_equal(by_blocks, by_sort)
    assert len(by_sort) == 3 * 25 * 5


def test_metrics_frame_leaves_out_bools_text_and_none_but_keeps_nan() -> None:
    data = {"a": {0: {"ok": True, "t": "x", "n": None, "nan": float("nan"), "v": 1}, 1: {"ok": 1, "t": 2.0}}}
    frame = metrics_frame(data)
    assert list(zip(frame["metric"], frame["iteration"], strict=True)) == [("nan", 0), ("ok", 1), ("t", 1), ("v", 0)]
    assert math.isnan(frame["value"][0]) and frame["value"].tolist()[1:] == [1.0, 2.0, 1.0]


def test_metrics_frame_summarises_arrays_on_request(metrics_data: dict[str, Any]) -> None:
    frame = metrics_frame(metrics_data, arrays="summary")
    assert {"weights.len", "weights.mean", "weights.min", "weights.max"} <= set(frame["metric"])
    assert (frame.loc[frame.metric == "weights.len", "value"] == 8).all()


def test_metrics_frame_of_one_agent_and_of_an_empty_store(metrics_data: dict[str, Any]) -> None:
    one = metrics_frame(metrics_data, agents="critic")
    assert set(one["agent"]) == {"critic"} and len(one) == 25 * 5
    empty = metrics_frame({})
    assert empty.columns.tolist() == ["agent", "iteration", "metric", "value"] and len(empty) == 0
    assert empty["iteration"].dtype == np.int64 and empty["value"].dtype == np.float64
    with pytest.raises(ValueError, match="trained_agents_frame"):
        metrics_frame(make_trained_agents_data())


# -- store kinds, trained agents, feedback -------------------------------------------------


def test_store_kind(tmp_path: Path, training_data: dict[str, Any], trained_data: dict[str, Any]) -> None:
    handler = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    handler.save(trained_data)
    assert store_kind(handler) == "trained_agents"
    assert store_kind(training_data) == "iterations"
    assert store_kind({}) == store_kind({"a": {}}) == "empty"
    empty = CrewTrainingHandler(tmp_path / "failed.pkl")
    empty.save({})  # what CrewAI 1.x writes when train() fails
    assert store_kind(tmp_path / "failed.pkl") == "empty"


def test_trained_store_gives_one_row_per_agent(tmp_path: Path, trained_data: dict[str, Any]) -> None:
    handler = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    with handler.batch():
        for role, entry in trained_data.items():
            handler.save_trained_data(role, entry)
    wide = to_frame(handler.file_path)
    assert wide.columns.tolist() == ["agent", "suggestions", "quality", "final_summary"]
    assert wide["agent"].tolist() == list(trained_data)
    assert wide.attrs["kind"] == "trained_agents"

    frame = trained_agents_frame(handler)
    assert frame.columns.tolist() == ["agent", "quality", "n_suggestions", "suggestions", "final_summary"]
    for row in frame.itertuples(index=False):
        entry = trained_data[row.agent]
        assert row.quality == entry["quality"] and row.suggestions == entry["suggestions"]
        assert row.n_suggestions == len(entry["suggestions"]) and row.final_summary == entry["final_summary"]
    assert frame["quality"].dtype == np.float64 and frame["n_suggestions"].dtype == np.int64
    assert frame["suggestions"][0] is not trained_data[frame["agent"][0]]["suggestions"]


def test_trained_agents_frame_handles_partial_entries_and_refuses_iterations(training_data: dict[str, Any]) -> None:
    frame = trained_agents_frame({"Writer": {"quality": 7}, "Editor": {"suggestions": ["a"], "final_summary": None}})
    assert frame["agent"].tolist() == ["Writer", "Editor"]
    assert frame["quality"][0] == 7.0 and math.isnan(frame["quality"][1])
    assert frame["n_suggestions"].tolist() == [0, 1] and frame["suggestions"].tolist() == [[], ["a"]]
    assert trained_agents_frame({}).columns.tolist()[:3] == ["agent", "quality", "n_suggestions"]
    with pytest.raises(ValueError, match="iterations store"):
        trained_agents_frame(training_data)


def test_feedback_frame(training_store: CrewTrainingHandler, training_data: dict[str, Any]) -> None:
    frame = feedback_frame(training_store.file_path)
    assert frame.columns.tolist() == [
        "agent",
        "iteration",
        "initial_output",
        "human_feedback",
        "improved_output",
        "status",
        "initial_chars",
        "feedback_chars",
        "improved_chars",
        "similarity",
    ]
    assert len(frame) == sum(len(records) for records in training_data.values())
    for row in frame.itertuples(index=False):
        record = training_data[row.agent][row.iteration]
        assert row.status == feedback_status(record)
        assert row.initial_chars == len(record["initial_output"])
        assert row.feedback_chars == len(record["human_feedback"])
        if "improved_output" in record:
            assert row.improved_chars == len(record["improved_output"]) and 0 < row.similarity < 1
        else:
            assert row.improved_chars is pd.NA and is_missing(row.improved_output) and math.isnan(row.similarity)
    statuses = [feedback_status(training_data[a][i]) for a, i in zip(frame["agent"], frame["iteration"], strict=True)]
    assert frame.attrs["statuses"] == dict(Counter(statuses))


def test_feedback_frame_statuses_for_crewai_corner_cases() -> None:
    data = {
        "a": {
            0: {"initial_output": "x", "human_feedback": "", "improved_output": "x"},  # empty feedback
            1: {"initial_output": "same words", "human_feedback": "fine", "improved_output": "same words"},
            2: {"initial_output": "x", "human_feedback": "more"},
            3: {"initial_output": "x"},
        }
    }
    frame = feedback_frame(data)
    assert frame["status"].tolist() == ["no_feedback", "complete", "no_improved_output", "no_feedback"]
    assert frame["similarity"].tolist()[:2] == [1.0, 1.0]
    assert frame["feedback_chars"].tolist()[:3] == [0, 4, 4] and frame["feedback_chars"][3] is pd.NA
    empty = feedback_frame({})
    assert len(empty) == 0 and empty["similarity"].dtype == np.float64


# -- runs ------------------------------------------------------------------------------------


def test_runs_frame_compares_runs(tmp_path: Path) -> None:
    first = make_metrics_data(iterations=4, weights=0, seed=1)
    second = make_metrics_data(agents=("planner",), iterations=6, weights=2, seed=2)
    handler = CrewTrainingHandler(tmp_path / "second.pkl")
    handler.save(second)
    frame = runs_frame({"baseline": first, "tuned": tmp_path / "second.pkl"})
    assert frame.columns[:3].tolist() == ["run", "agent", "iteration"]
    assert frame.groupby("run").size().to_dict() == {"baseline": 12, "tuned": 6}
    assert frame.loc[frame.run == "baseline", "weights"].isna().all()
    baseline = frame[frame.run == "baseline"].drop(columns=["run", "weights"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(baseline, to_frame(first), check_dtype=False)
    assert frame.attrs["runs"]["tuned"]["source"] == handler.file_path
    assert frame.attrs["runs"]["baseline"]["records"] == 12


def test_runs_frame_refuses_bad_runs() -> None:
    with pytest.raises(ValueError, match="non-empty dict"):
        runs_frame({})
    with pytest.raises(ValueError, match="mix store kinds"):
        runs_frame({"a": make_metrics_data(iterations=2), "b": make_trained_agents_data()})
    renamed = runs_frame({"r": {"a": {0: {"run": 3, "x": 1}}}})
    assert renamed.columns.tolist() == ["run", "agent", "iteration", "record.run", "x"]


# -- options, selection, empty stores -----------------------------------------------------


def test_agents_selection_and_sep(metrics_data: dict[str, Any]) -> None:
    frame = to_frame(metrics_data, agents=["planner", "coder"], sep="/")
    assert frame["agent"].unique().tolist() == ["planner", "coder"]  # store order, not the order asked in
    assert "metrics/f1" in frame.columns
    with pytest.raises(ValueError, match="no agent 'nobody'"):
        to_frame(metrics_data, agents="nobody")


def test_empty_stores_give_empty_frames_with_the_right_columns() -> None:
    for empty in ({}, {"a": {}}):
        frame = to_frame(empty)
        assert frame.columns.tolist() == ["agent", "iteration"] and len(frame) == 0
        assert frame["iteration"].dtype == np.int64 and frame.attrs["kind"] == "empty"
        assert to_frame(empty, layout="long").columns.tolist() == ["agent", "iteration", "key", "value"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"layout": "tall"}, "layout must be one of"),
        ({"arrays": "flatten"}, "arrays must be one of"),
        ({"sep": ""}, "sep must be a non-empty str"),
    ],
)
def test_bad_options_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_frame({}, **kwargs)


def test_key_clash_asks_for_another_sep() -> None:
    data = {"a": {0: {"m.f1": 1.0, "m": {"f1": 2.0}}}}
    with pytest.raises(ValueError, match="another sep"):
        to_frame(data)
    assert to_frame(data, sep="/").columns.tolist() == ["agent", "iteration", "m.f1", "m/f1"]


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ([{"loss": 1.0}], ["list", "not a store"]),
        ({"agent-1": [1, 2]}, ["agent 'agent-1'", "list"]),
        ({"loss": 0.5}, ["agent 'loss'", "float"]),
        ({"a": {0: {}}, "b": {"0": {"x": 1}}}, ["agent 'b'", "iteration '0'", "ints", "import_json"]),
        ({"a": {0: {"x": 1}}, "Writer": {"quality": 8.0}}, ["agent 'Writer'", "one kind"]),
    ],
)
def test_not_a_store_says_where(source: Any, words: list[str]) -> None:
    for function in (to_frame, metrics_frame, store_kind, feedback_frame):
        with pytest.raises(ValueError) as caught:
            function(source)
        for word in words:
            assert word in str(caught.value), (function.__name__, str(caught.value))


def test_a_store_file_holding_a_list_names_the_file(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "odd.pkl")
    handler.save([1, 2, 3])
    with pytest.raises(StoreFormatError) as caught:
        to_frame(handler.file_path)
    assert handler.file_path in str(caught.value) and caught.value.path == handler.file_path


# -- purity ------------------------------------------------------------------------------------


def test_no_function_mutates_its_input(training_store: CrewTrainingHandler, metrics_data: dict[str, Any]) -> None:
    ml = {**metrics_data, "np": {0: {"w": np.arange(3.0), "m": {"x": np.float32(1)}}, 1: 2.0}}
    trained = make_trained_agents_data(seed=3)
    training_before = deep_bytes(training_store.load())
    snapshots = {name: deep_bytes(data) for name, data in (("ml", ml), ("trained", trained))}
    for layout in ("wide", "long"):
        for arrays in ("keep", "drop", "summary"):
            to_frame(ml, layout=layout, arrays=arrays)["agent"]
            to_frame(training_store, layout=layout, arrays=arrays)
            to_frame(trained, layout=layout, arrays=arrays)
    metrics_frame(ml, arrays="summary")
    feedback_frame(training_store)
    trained_agents_frame(trained)["suggestions"][0].append("changed in the frame")
    runs_frame({"a": ml, "b": training_store.file_path})
    store_kind(ml)
    kept = to_frame(ml)
    kept.loc[kept.agent == "np", "w"].iloc[0][0] = 42.0  # editing an array cell
    assert deep_bytes(ml) == snapshots["ml"] and deep_bytes(trained) == snapshots["trained"]
    assert deep_bytes(training_store.load()) == training_before


def imports_of(module_file: Path) -> tuple[set[str], set[str]]:
    """``(absolute modules, local modules)`` a source file imports."""
    tree = ast.parse(module_file.read_text(encoding="utf-8"))
    absolute = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    absolute |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
    local = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    return absolute, local


def test_frames_imports_neither_matplotlib_nor_ipywidgets() -> None:
    package = Path(frames_module.__file__).parent
    absolute: set[str] = set()
    outside: set[str] = set()  # what the frames package imports from the rest of crewtrain_nb
    for module_file in sorted(package.glob("*.py")):
        tree = ast.parse(module_file.read_text(encoding="utf-8"))
        absolute |= imports_of(module_file)[0]
        outside |= {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level >= 2
        }
    assert not {name for name in absolute if name.split(".")[0] in {"matplotlib", "ipywidgets"}}
    assert outside == {"crewai", "errors", "store"}  # and those import neither (tests/test_crewai_files.py, the store)
    # And at run time, in a fresh interpreter: building frames loads neither.
    script = (
        "import sys\n"
        "from crewtrain_nb.demo import make_metrics_data\n"
        "from crewtrain_nb.frames import to_frame\n"
        "to_frame(make_metrics_data(iterations=3))\n"
        "print(sorted(m for m in ('matplotlib', 'ipywidgets') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- lazy reading of SQLite stores ------------------------------------------------------


def test_frames_of_chosen_agents_read_only_those_agents_of_a_sqlite_store(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from crewtrain_nb import CrewTrainingHandler
    from crewtrain_nb.demo import make_training_data

    data = {**make_metrics_data(iterations=30, seed=4), **make_training_data(agents=2, iterations=5, seed=4)}
    CrewTrainingHandler(tmp_path / "m.pkl").save(data)
    sqlite = CrewTrainingHandler(tmp_path / "m.db")
    sqlite.save(data)
    expected = to_frame(tmp_path / "m.pkl", agents=["coder", "critic"])
    expected_metrics = metrics_frame(tmp_path / "m.pkl", agents="planner")
    feedback_agent = next(agent for agent in data if agent not in ("planner", "coder", "critic"))
    expected_feedback = feedback_frame(tmp_path / "m.pkl", agents=feedback_agent)

    read = request.getfixturevalue("sqlite_reads")  # only now: the expected frames above read the pickle
    got = to_frame(sqlite, agents=["coder", "critic"])
    pd.testing.assert_frame_equal(got, expected)
    assert got.attrs["source"] == sqlite.file_path
    pd.testing.assert_frame_equal(metrics_frame(tmp_path / "m.db", agents="planner"), expected_metrics)
    pd.testing.assert_frame_equal(feedback_frame(sqlite, agents=feedback_agent), expected_feedback)
    assert sorted(read) == sorted(["coder", "critic", "planner", feedback_agent])
    with pytest.raises(ValueError, match="agents: no agent 'nobody' in .*m.db; its agents are 'planner', 'coder', "):
        to_frame(sqlite, agents="nobody")


# -- one agent order: the store's ----------------------------------------------------------


def agent_order(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["agent"]))


def test_frames_keep_the_order_agents_have_in_the_store(
    unsorted_training_store: CrewTrainingHandler,
    unsorted_metrics_store: CrewTrainingHandler,
    store_order: tuple[str, ...],
    tmp_path: Path,
) -> None:
    order = list(store_order)
    assert order != sorted(order)
    assert agent_order(to_frame(unsorted_metrics_store)) == order
    assert agent_order(to_frame(unsorted_metrics_store, layout="long")) == order
    assert agent_order(metrics_frame(unsorted_metrics_store)) == order
    assert agent_order(feedback_frame(unsorted_training_store)) == order
    assert agent_order(to_frame(unsorted_training_store)) == order
    # Naming agents in another order keeps the store's order (a SQLite store reads only those agents).
    for frame_of in (to_frame, metrics_frame):
        assert agent_order(frame_of(unsorted_metrics_store, agents=["mid", "zeta"])) == ["zeta", "mid"]
    assert agent_order(feedback_frame(unsorted_training_store, agents=["mid", "alpha"])) == ["alpha", "mid"]
    runs = runs_frame({"one": unsorted_metrics_store})
    assert agent_order(runs) == order
    trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    trained.save(make_trained_agents_data(roles=store_order))
    assert trained_agents_frame(trained)["agent"].tolist() == order


# -- trained=: the role of each agent, and its label ---------------------------------------------------


def test_feedback_frame_and_to_frame_label_agents_with_trained(tmp_path: Path) -> None:
    from crewtrain_nb.crewai import write_sidecar
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run

    paths = write_crewai_run(tmp_path, "paraphrased")
    run = make_crewai_run("paraphrased")
    frame = feedback_frame(paths["training"], trained=paths["trained"])
    assert frame.columns.tolist()[:4] == ["agent", "iteration", "role", "label"]
    plain = feedback_frame(paths["training"])
    pd.testing.assert_frame_equal(frame.drop(columns=["role", "label"]), plain, check_like=False)
    for row in frame.itertuples():
        role = run["agents"][row.agent]["role"]
        assert row.role == role and row.label == f"{role} · {row.agent[:8]} (inferred)"
    assert frame.attrs["roles"] == {agent: (info["role"], "inferred") for agent, info in run["agents"].items()}

    first = next(iter(run["agents"]))
    write_sidecar(paths["training"], run["agents"])  # recorded: no "(inferred)"
    wide = to_frame(paths["training"], trained=paths["trained"], agents=first)
    assert wide.columns.tolist()[:4] == ["agent", "iteration", "role", "label"]
    assert set(wide.label) == {f"{run['agents'][first]['role']} · {first[:8]}"}
    long = to_frame(paths["training"], layout="long", trained=paths["trained"])
    assert long.columns.tolist() == ["agent", "iteration", "role", "label", "key", "value"]


def test_trained_unknown_roles_and_clashing_keys() -> None:
    from crewtrain_nb.demo import make_crewai_run

    run = make_crewai_run("interrupted")  # its trained file is {}: no role is known
    frame = feedback_frame(run["training"], trained=run["trained"])
    assert frame.role.isna().all() and (frame.label == frame.agent).all()
    assert feedback_frame({}, trained={}).columns.tolist()[:4] == ["agent", "iteration", "role", "label"]
    record = {"initial_output": "a", "human_feedback": "b", "improved_output": "c", "role": "mine", "label": 1}
    wide = to_frame({"x": {0: record}}, trained={})
    assert wide.columns.tolist() == [
        "agent", "iteration", "role", "label", "initial_output", "human_feedback", "improved_output",
        "record.role", "record.label",
    ]  # fmt: skip
    assert wide.loc[0, "record.role"] == "mine" and pd.isna(wide.loc[0, "role"])
    with pytest.raises(ValueError, match="trained= labels the agents of a training_data.pkl-shaped store"):
        to_frame(make_crewai_run("paraphrased")["trained"], trained={})


# -- bad input: keys beyond int64, missing files, agents named by role or prefix, trusted --------------


@pytest.mark.parametrize("view", [to_frame, metrics_frame, feedback_frame, store_kind])
@pytest.mark.parametrize("kind", ["training", "metrics"])
def test_an_iteration_key_beyond_int64_is_a_format_error_naming_file_agent_and_key(
    beyond_int64_stores: dict[str, Path], view: Any, kind: str
) -> None:
    # A foreign writer's file (append refuses such keys): a clear error, never an OverflowError from numpy.
    path = beyond_int64_stores[kind]
    agent = next(iter(pickle.loads(path.read_bytes())))
    message = rf"{path}: agent '{agent}', iteration 1000000000000000000000000000000: .*beyond what an int64 holds"
    with pytest.raises(StoreFormatError, match=message):
        view(path)


@pytest.mark.parametrize("view", [to_frame, feedback_frame, metrics_frame, store_kind])
@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_a_handler_on_a_missing_file_is_no_such_file_not_an_empty_store(tmp_path: Path, view: Any, suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"training_data{suffix}")
    assert handler.load() == {}  # as CrewAI's handler does
    message = f"no such file: {handler.file_path}; .*CrewAI writes training_data.pkl .*where `crewai train` ran"
    with pytest.raises(StoreNotFoundError, match=message):
        view(handler)
    with pytest.raises(StoreNotFoundError, match=message):
        view(handler.file_path)
    assert os.listdir(tmp_path) == []


def test_agents_are_named_by_id_then_role_then_unique_id_prefix(crewai_086_data: dict[str, Any]) -> None:
    researcher, writer, other_writer = crewai_086_data
    frame = to_frame(crewai_086_data, agents="Researcher")
    assert set(frame["agent"]) == {researcher}
    assert frame.attrs["named"] == {"Researcher": researcher}  # the full id each name meant
    frame = feedback_frame(crewai_086_data, agents=[writer[:8], "Researcher"])
    assert set(frame["agent"]) == {writer, researcher}
    assert frame.attrs["named"] == {writer[:8]: writer, "Researcher": researcher}
    assert set(metrics_frame(crewai_086_data, agents=researcher[:3])["agent"]) <= {researcher}
    both = rf"agents: agent 'Writer' is ambiguous: .*2 agents.*'{writer}', '{other_writer}'"
    with pytest.raises(ValueError, match=both):
        to_frame(crewai_086_data, agents="Writer")


def test_an_exact_id_wins_over_a_role_and_a_role_over_an_id_prefix(crewai_086_data: dict[str, Any]) -> None:
    first, second, third = (next(iter(records.values())) for records in crewai_086_data.values())
    # An agent whose id is another's role, and a role that is also a prefix of two ids.
    data = {"ab-1": {0: {**first, "agent_role": "ab-2"}}, "ab-2": {0: {**second, "agent_role": "ab"}}, "x": {0: third}}
    assert set(to_frame(data, agents="ab-2")["agent"]) == {"ab-2"}
    assert set(to_frame(data, agents="ab")["agent"]) == {"ab-2"}
    prefix = "agent 'a' is ambiguous: 2 agent ids in the store start with it: 'ab-1', 'ab-2'; give more"
    with pytest.raises(ValueError, match=prefix):
        to_frame(data, agents="a")


@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_a_role_names_an_agent_of_a_store_file(tmp_path: Path, crewai_086_data: dict[str, Any], suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    handler.save(crewai_086_data)
    researcher = next(iter(crewai_086_data))
    assert set(feedback_frame(handler, agents="Researcher")["agent"]) == {researcher}
    unknown = rf"agents: no agent 'Editor' in {handler.file_path}; its agents are '{researcher}'"
    with pytest.raises(ValueError, match=unknown):
        feedback_frame(handler, agents="Editor")


@pytest.mark.parametrize("agents", [1, 2.5, b"coder", {"coder": 1}, ["coder", 7]])
@pytest.mark.parametrize("view", [to_frame, metrics_frame, feedback_frame])
def test_agents_of_the_wrong_type_are_a_type_error_naming_agents(
    metrics_data: dict[str, Any], view: Any, agents: Any
) -> None:
    with pytest.raises(TypeError, match="^agents must "):
        view(metrics_data, agents=agents)


@pytest.mark.parametrize(
    ("view", "kind"),
    [
        (to_frame, "training"),
        (metrics_frame, "metrics"),
        (feedback_frame, "training"),
        (store_kind, "metrics"),
        (trained_agents_frame, "trained"),
        (lambda path, **options: runs_frame({"run": path}, **options), "metrics"),
    ],
)
def test_every_frame_function_takes_trusted(untrusted_stores: dict[str, Path], view: Any, kind: str) -> None:
    path = untrusted_stores[kind]
    with pytest.raises(UnsafePickleError, match="fractions.Fraction"):
        view(path)
    result = view(path, trusted=True)
    if isinstance(result, str):
        assert result == "iterations"
    else:
        assert len(result) > 0 and result.attrs.get("source", path) is not None


def test_frame_cells_share_exactly_the_leaves_the_stores_copies_share() -> None:
    import datetime
    import decimal
    import uuid

    from crewtrain_nb.frames._leaves import copy_leaf, is_immutable_type
    from crewtrain_nb.store import IMMUTABLE_TYPES

    # One set for both: what load() shares with the cache is what a frame cell shares with the store.
    assert all(is_immutable_type(kind) for kind in IMMUTABLE_TYPES)
    shared = [
        *("text", b"raw", 3, 0.5, None, frozenset({1})),
        *(datetime.date(2026, 1, 2), decimal.Decimal("1.5"), uuid.UUID(int=7)),
    ]
    assert {type(value) for value in shared} <= IMMUTABLE_TYPES
    assert all(copy_leaf(value) is value for value in shared)
    for mutable in ([1, 2], {"a": 1}, {1, 2}, bytearray(b"x")):
        assert type(mutable) not in IMMUTABLE_TYPES
        assert copy_leaf(mutable) is not mutable and copy_leaf(mutable) == mutable
