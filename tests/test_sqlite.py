"""The SQLite backend: the store core's guarantees re-run on ``.db`` files, lazy reads at scale.

``convert`` is tested in ``test_convert.py``.

Real processes (kill -9, writers with a reader, a stuck lock holder), faults, crashes, the model-based test
and fuzzing run for both backends in ``test_reliability.py``, ``test_store_model.py`` and ``test_fuzz_loader.py``.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import random
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crewtrain_nb import (
    CorruptStoreError,
    CrewTrainingHandler,
    PickleHandler,
    SQLiteHandler,
    StoreError,
    StoreFormatError,
    StoreWriteError,
    UnsafePickleError,
)
from crewtrain_nb.demo import make_metrics_data, make_trained_agents_data, make_training_data

from .reliability_lib import as_unprivileged
from .test_unpickle import hostile_payloads

WORKERS = str(Path(__file__).with_name("workers.py"))


def assert_same_store(loaded: Any, expected: Any) -> None:
    """Equal, with the same key order and key types at the two top levels; numpy arrays compared by value."""
    assert list(loaded) == list(expected)
    assert [type(key) for key in loaded] == [type(key) for key in expected]
    for agent, entry in expected.items():
        got = loaded[agent]
        assert type(got) is type(entry)
        if isinstance(entry, dict):
            assert list(got) == list(entry) and [type(k) for k in got] == [type(k) for k in entry]
            for key, value in entry.items():
                assert_same_value(got[key], value)
        else:
            assert_same_value(got, entry)


def assert_same_value(got: Any, expected: Any) -> None:
    if isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(got, expected)
        assert got.dtype == expected.dtype
    elif isinstance(expected, dict):
        assert type(got) is type(expected) and list(got) == list(expected)
        for key, value in expected.items():
            assert_same_value(got[key], value)
    else:
        assert got == expected and type(got) is type(expected)


def odd_store() -> dict[Any, Any]:
    """Everything a dict saved to a store may hold besides CrewAI's two shapes."""
    return {
        "late-first": {7: {"x": 1}, 2: {"x": 2}, 5: {"arr": np.arange(4, dtype=np.int16)}},
        "empty": {},
        3: "an int key",
        ("tuple", 1): [1, 2, 3],
        "negative-and-huge": {-1: "minus one", 2**70: "beyond int64"},
        "bools": {True: "not an iteration"},
        "numpy-keys": {np.int64(4): "numpy key"},
        "ordered": collections.OrderedDict([(1, "a"), (0, "b")]),
        "none": None,
        "trained": {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"},
    }


# -- dispatch by suffix --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["runs.db", "runs.sqlite", "runs.sqlite3", "RUNS.DB"])
@pytest.mark.parametrize("cls", [CrewTrainingHandler, PickleHandler])
def test_sqlite_suffixes_give_the_sqlite_backend(tmp_path: Path, name: str, cls: type) -> None:
    handler = cls(tmp_path / name)
    assert type(handler) is SQLiteHandler
    assert isinstance(handler, CrewTrainingHandler) and isinstance(handler, PickleHandler)
    assert handler.file_path == str(tmp_path / name)  # no .pkl appended
    handler.append(0, "a", {"x": 1})
    assert handler.load() == {"a": {0: {"x": 1}}}
    with open(handler.file_path, "rb") as file:
        assert file.read(16) == b"SQLite format 3\x00"


def test_other_names_stay_pickle_and_subclasses_are_not_redirected(tmp_path: Path) -> None:
    class Mine(CrewTrainingHandler):
        pass

    assert type(CrewTrainingHandler(tmp_path / "runs.dbx")) is CrewTrainingHandler
    assert type(Mine(tmp_path / "runs.db")) is Mine
    assert Mine(tmp_path / "runs.db").file_path.endswith("runs.db.pkl")
    assert SQLiteHandler(tmp_path / "runs").file_path == str(tmp_path / "runs.db")
    assert SQLiteHandler(tmp_path / "runs", add_suffix=False).file_path == str(tmp_path / "runs")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"backups": 3}, "backups apply to pickle stores only"),
        ({"audit": True}, "audit apply to pickle stores only"),
        ({"key": b"k" * 32}, "key apply to pickle stores only"),
        ({"max_decompressed_size": 10}, "max_decompressed_size apply to pickle stores only"),
    ],
)
def test_pickle_only_options_are_refused_not_ignored(tmp_path: Path, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CrewTrainingHandler(tmp_path / "runs.db", **options)
    assert os.listdir(tmp_path) == []


def test_versions_are_for_pickle_stores(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "runs.db")
    for call in (handler.versions, lambda: handler.restore(1)):
        with pytest.raises(StoreError, match="keeps no versions"):
            call()


def test_sqlite_stores_are_local_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be a local file"):
        CrewTrainingHandler("memory://runs/t.db")
    handler = CrewTrainingHandler(f"file://{tmp_path}/t.db")
    assert type(handler) is SQLiteHandler and handler.file_path == str(tmp_path / "t.db")


@pytest.mark.parametrize("bad", [b"x.db", 3, None])
def test_file_name_of_wrong_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="file_name"):
        SQLiteHandler(bad)  # type: ignore[arg-type]


# -- what is stored comes back exactly --------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: make_training_data(agents=3, iterations=13, seed=7), id="training"),
        pytest.param(lambda: make_trained_agents_data(seed=7), id="trained"),
        pytest.param(lambda: make_metrics_data(iterations=25, seed=7), id="metrics"),
        pytest.param(odd_store, id="odd"),
        pytest.param(dict, id="empty"),
    ],
)
def test_save_then_load_returns_exactly_what_was_saved(tmp_path: Path, make: Any) -> None:
    data = make()
    handler = CrewTrainingHandler(tmp_path / "s.db")
    handler.save(data)
    assert_same_store(handler.load(), data)
    assert_same_store(CrewTrainingHandler(tmp_path / "s.db").load(), data)  # a fresh connection agrees


@pytest.mark.parametrize("data", [[1, 2], "text", None, (1,)])
def test_saving_a_non_dict_is_a_clear_format_error(tmp_path: Path, data: Any) -> None:
    handler = CrewTrainingHandler(tmp_path / "s.db")
    handler.append(0, "a", {})
    with pytest.raises(StoreFormatError, match=r"holds a dict of agents, not a .*save other objects to a \.pkl"):
        handler.save(data)
    assert handler.load() == {"a": {0: {}}}


def crewai_operations(handler: CrewTrainingHandler) -> None:
    handler.initialize_file()
    handler.append(0, "a", {"initial_output": "x", "human_feedback": "y"})
    handler.append(3, "a", {"initial_output": "x2", "human_feedback": "y2", "improved_output": "z2"})
    handler.append(1, "a", {"initial_output": "x4"})
    handler.append(0, "a", {"initial_output": "x3", "human_feedback": "y3"})  # replaces, keeps its place
    handler.append(0, "b", {"initial_output": "q", "human_feedback": "r"})
    handler.save_trained_data("Writer", {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"})
    handler.save_trained_data("a", {"quality": 1.0})  # replaces a's iterations, keeps a first
    handler.append(2, "Writer", "into a trained entry")  # what CrewAI's dict code does too
    handler.save_trained_data("c", {4: "iterations given whole", 1: "x"})
    handler.append(0, "c", "appended")


def test_writes_behave_exactly_as_the_pickle_handlers(tmp_path: Path) -> None:
    pickled = CrewTrainingHandler(tmp_path / "t.pkl")
    sqlite = CrewTrainingHandler(tmp_path / "t.db")
    crewai_operations(pickled)
    crewai_operations(sqlite)
    assert_same_store(sqlite.load(), pickled.load())
    assert len(sqlite) == len(pickled) == 4
    for handler in (pickled, sqlite):
        handler.clear()
        assert handler.load() == {}


def test_appending_into_an_entry_that_is_not_a_dict_says_so(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.db")
    handler.save({"Writer": ["not", "iterations"]})
    with pytest.raises(StoreFormatError, match="'Writer' holds a list"):
        handler.append(0, "Writer", {})
    assert handler.load() == {"Writer": ["not", "iterations"]}


def test_load_is_a_copy_and_peek_is_cached_until_a_change(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.db")
    handler.save(make_metrics_data(iterations=5))
    loaded = handler.load()
    loaded["planner"][0]["loss"] = -1.0
    loaded["planner"].clear()
    assert handler.load()["planner"][0]["loss"] != -1.0
    assert handler.peek() is handler.peek()
    before = handler.peek()
    CrewTrainingHandler(tmp_path / "t.db").append(99, "planner", {"loss": 0.0})  # another connection writes
    assert handler.peek() is not before and 99 in handler.peek()["planner"]
    handler.append(100, "planner", {"loss": 0.0})
    assert 100 in handler.peek()["planner"]


def test_missing_file_reads_empty_and_creates_nothing(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "missing.db")
    assert handler.load() == {}
    assert handler.agents() == [] and len(handler) == 0 and list(handler.records()) == []
    assert handler.stats().records == 0 and handler.stats().changed is None
    with pytest.raises(KeyError, match="no agent 'a' in .*missing.db; it has no agents"):
        handler.get("a", 0)
    assert os.listdir(tmp_path) == []


def test_empty_file_reads_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    handler = CrewTrainingHandler(tmp_path / "empty.db")
    assert handler.load() == {}
    handler.append(0, "a", 1)
    assert handler.load() == {"a": {0: 1}}


def test_a_deleted_file_reads_empty_and_its_stale_log_is_not_replayed(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.db")
    handler.append(0, "a", 1)
    assert handler.load() == {"a": {0: 1}}
    os.unlink(tmp_path / "t.db")  # its -wal (holding the record) stays behind while a connection is open
    assert handler.load() == {}
    handler.append(0, "c", 3)
    assert handler.load() == {"c": {0: 3}}
    assert CrewTrainingHandler(tmp_path / "t.db").load() == {"c": {0: 3}}


# -- damaged and foreign files -----------------------------------------------------------------------


def written_store(path: Path) -> bytes:
    handler = CrewTrainingHandler(path)
    handler.save(make_training_data(agents=3, iterations=40, seed=1))
    handler.close()  # the last connection checkpoints: everything is in the main file
    assert not os.path.exists(f"{path}-wal")
    return path.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: b"not a database at all" * 50, id="text"),
        pytest.param(lambda blob: pickle.dumps({"a": {0: {}}}), id="a-pickle-named-db"),
        pytest.param(lambda blob: blob[:100] + bytes(len(blob) - 100), id="zeroed-pages"),
        pytest.param(lambda blob: blob[:4096] + bytes(range(256)) * ((len(blob) - 4096) // 256), id="garbled-pages"),
    ],
)
def test_damaged_file_raises_corrupt_naming_it_and_is_never_overwritten(tmp_path: Path, damage: Any) -> None:
    path = tmp_path / "t.db"
    path.write_bytes(damage(written_store(path)))
    before = path.read_bytes()
    handler = CrewTrainingHandler(path)
    with pytest.raises(CorruptStoreError) as caught:
        handler.load()
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    for write in (lambda: handler.append(99, "new", {}), lambda: handler.save_trained_data("W", {})):
        with pytest.raises(CorruptStoreError):
            write()
    handler.close()
    assert path.read_bytes() == before


def test_a_foreign_database_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (name TEXT)")
    conn.close()
    before = path.read_bytes()
    handler = CrewTrainingHandler(path)
    with pytest.raises(StoreFormatError, match="not a crewtrain_nb store .tables: users."):
        handler.load()
    with pytest.raises(StoreFormatError):
        handler.append(0, "a", {})
    handler.close()
    assert path.read_bytes() == before


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    written_store(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    conn.close()
    with pytest.raises(StoreFormatError, match="newer crewtrain_nb"):
        CrewTrainingHandler(path).load()


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    # A directory in place of the file, a read-only directory, a stuck lock holder, kill -9 and many
    # processes: tests/test_reliability.py, for both backends.
    with pytest.raises(StoreWriteError, match="does not exist; create it first"):
        CrewTrainingHandler(tmp_path / "no" / "dir" / "t.db").append(0, "a", {})


def test_unopenable_write_ahead_log_is_a_write_error_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    before = written_store(path)
    (tmp_path / "t.db-wal").mkdir()  # SQLite cannot create its log: as with a read-only directory
    handler = CrewTrainingHandler(path)
    with pytest.raises(StoreError) as caught:
        handler.append(0, "a", {})
    assert str(path) in str(caught.value)
    handler.close()
    (tmp_path / "t.db-wal").rmdir()
    assert path.read_bytes() == before


def test_unpicklable_data_and_interrupts_leave_the_store_unchanged(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.db")
    handler.save(make_metrics_data(iterations=5))
    original = handler.load()
    with pytest.raises(StoreWriteError, match="cannot be pickled"):
        handler.append(5, "planner", {"fn": lambda: None})
    with pytest.raises(StoreWriteError, match="cannot be pickled"):
        handler.save({"planner": {0: {"fn": lambda: None}}})
    with pytest.raises(KeyboardInterrupt), handler.batch():
        handler.clear()
        raise KeyboardInterrupt
    assert_same_store(handler.load(), original)
    assert_same_store(CrewTrainingHandler(tmp_path / "t.db").load(), original)


# -- safe loading of stored values -----------------------------------------------------------------


def plant(path: Path, blob: bytes, *, where: str) -> None:
    """Put a crafted pickle where a stored value lives, as an attacker editing the file would."""
    handler = CrewTrainingHandler(path)
    handler.append(0, "agent", {"initial_output": "fine"})
    handler.save_trained_data("Writer", {"quality": 1.0})
    handler.close()
    with sqlite3.connect(path) as conn:
        if where == "record":
            conn.execute("UPDATE records SET record = ?", (blob,))
        elif where == "trained-entry":
            conn.execute("UPDATE agents SET value = ? WHERE name = 'Writer'", (blob,))
        else:
            conn.execute("UPDATE agents SET name = NULL, key = ? WHERE name = 'Writer'", (blob,))
    conn.close()


@pytest.mark.parametrize("name", sorted(hostile_payloads(Path("x"))))
@pytest.mark.parametrize("where", ["record", "trained-entry", "agent-key"])
def test_hostile_values_are_refused_and_run_nothing(tmp_path: Path, name: str, where: str) -> None:
    marker = tmp_path / "pwned"
    payload = hostile_payloads(marker)[name]
    value = {"initial_output": "fine", "human_feedback": payload} if where == "record" else payload
    path = tmp_path / "t.db"
    plant(path, pickle.dumps(value, protocol=4), where=where)
    handler = CrewTrainingHandler(path)
    reads = [handler.load, handler.peek, handler.agents] if where == "agent-key" else [handler.load, handler.peek]
    if where == "record":
        reads += [lambda: handler.get("agent", 0), lambda: handler.entry("agent"), lambda: list(handler.records())]
    elif where == "trained-entry":
        reads += [lambda: handler.entry("Writer"), lambda: handler.append(1, "Writer", {})]
    for read in reads:
        with pytest.raises(UnsafePickleError) as caught:
            read()
        assert str(path) in str(caught.value)
    assert not marker.exists()
    assert handler.iterations("agent") == [0]  # listing iterations unpickles no record


def test_trusted_opts_out_of_safe_loading(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    plant(path, pickle.dumps({"when": collections.Counter("aab")}, protocol=4), where="record")
    with pytest.raises(UnsafePickleError, match="collections.Counter"):
        CrewTrainingHandler(path).get("agent", 0)
    assert CrewTrainingHandler(path, trusted=True).get("agent", 0) == {"when": collections.Counter("aab")}


@pytest.mark.parametrize(
    ("damage", "read"),
    [
        pytest.param("UPDATE records SET record = 5", lambda h: h.get("agent", 0), id="value-not-bytes"),
        pytest.param("UPDATE records SET agent = 999", lambda h: h.load(), id="record-of-no-agent"),
        pytest.param("UPDATE records SET iteration = 'x'", lambda h: h.iterations("agent"), id="text-iteration"),
        pytest.param(
            "UPDATE agents SET name = CAST(X'ff' AS TEXT) WHERE name = 'agent'", lambda h: h.load(), id="name-not-utf8"
        ),
        pytest.param("DROP INDEX records_in_order", lambda h: h.load(), id="index-dropped-still-reads"),
    ],
)
def test_damaged_rows_are_corrupt_store_errors_not_type_or_key_errors(tmp_path: Path, damage: str, read: Any) -> None:
    # What fuzzing the database files found (tests/test_fuzz_loader.py): each escaped as another exception.
    path = tmp_path / "t.db"
    plant(path, pickle.dumps({"initial_output": "fine"}), where="record")
    with sqlite3.connect(path) as conn:
        conn.execute(damage)
    conn.close()
    handler = CrewTrainingHandler(path)
    if "index" in damage.lower():
        assert read(handler)["agent"] == {0: {"initial_output": "fine"}}  # a missing index is not damage
        return
    with pytest.raises(CorruptStoreError, match="damaged") as caught:
        read(handler)
    assert str(path) in str(caught.value)


def test_corrupt_value_inside_the_database_is_a_corrupt_store_error(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    plant(path, b"\x80\x04garbage", where="record")
    with pytest.raises(CorruptStoreError, match=str(path)):
        CrewTrainingHandler(path).get("agent", 0)


# -- arguments, batch, permissions ----------------------------------------------------------------------


def test_batch_is_one_transaction_seen_inside_and_nested(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.db")
    other = CrewTrainingHandler(tmp_path / "t.db")
    with handler.batch():
        handler.append(0, "a", 1)
        with handler.batch():
            handler.append(1, "a", 2)
        handler.save_trained_data("role", {"quality": 9.0})
        assert handler.load() == {"a": {0: 1, 1: 2}, "role": {"quality": 9.0}}
        assert handler.get("a", 1) == 2 and len(handler) == 2
        assert other.load() == {}  # not committed yet
    assert other.load() == {"a": {0: 1, 1: 2}, "role": {"quality": 9.0}}


def test_a_failed_write_inside_batch_leaves_no_trace_of_itself(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.db")
    handler.save({"Writer": "text"})
    with handler.batch():
        handler.append(0, "a", 1)
        with pytest.raises(StoreFormatError):
            handler.append(0, "Writer", 1)
        handler.append(1, "a", 2)
    assert handler.load() == {"Writer": "text", "a": {0: 1, 1: 2}}


def test_batch_that_raises_writes_nothing(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.db")
    handler.save(make_training_data(agents=2, iterations=3))
    original = handler.load()
    with pytest.raises(RuntimeError, match="boom"), handler.batch():
        handler.append(100, "a", {"x": 1})
        handler.clear()
        raise RuntimeError("boom")
    assert handler.load() == original
    assert CrewTrainingHandler(tmp_path / "t.db").load() == original


def test_new_files_are_owner_only_and_existing_modes_are_kept(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "new.db")
    handler.append(0, "a", {})
    for name in ("new.db", "new.db-wal", "new.db-shm"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600, name
    handler.close()
    os.chmod(tmp_path / "new.db", 0o640)
    CrewTrainingHandler(tmp_path / "new.db").append(1, "a", {})
    assert stat.S_IMODE(os.stat(tmp_path / "new.db").st_mode) == 0o640


# -- lazy access on a large store -------------------------------------------------------------------------

LARGE_AGENTS = 10
LARGE_RECORDS = 100_000


@pytest.fixture(scope="module")
def large_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100k records of ~300 bytes over ten agents, written in one batch."""
    path = tmp_path_factory.mktemp("large") / "large.db"
    handler = CrewTrainingHandler(path)
    rng = random.Random(5)
    with handler.batch():
        for index in range(LARGE_RECORDS):
            handler.append(
                index // LARGE_AGENTS,
                f"agent-{index % LARGE_AGENTS}",
                {"initial_output": rng.randbytes(100).hex(), "human_feedback": "ok", "loss": rng.random()},
            )
    handler.close()
    return path


def peak_memory(path: Path, operation: str) -> int:
    result = subprocess.run(
        [sys.executable, WORKERS, "peak", str(path), operation], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["peak"])


def test_lazy_reads_on_a_large_store_never_load_it_whole(large_store: Path) -> None:
    whole = peak_memory(large_store, "load")
    assert whole > 30_000_000  # 100k records really are big when loaded
    for operation in ("get", "agents", "len", "stats"):
        assert peak_memory(large_store, operation) < whole / 200, operation
    assert peak_memory(large_store, "iterations") < whole / 20  # ten thousand ints of one agent
    assert peak_memory(large_store, "records") < whole / 50  # streamed a page at a time
    assert peak_memory(large_store, "entry") < whole / 5  # one agent of ten


def test_lazy_reads_on_a_large_store_answer_correctly(large_store: Path) -> None:
    handler = CrewTrainingHandler(large_store)
    assert len(handler) == LARGE_RECORDS
    assert handler.agents() == [f"agent-{n}" for n in range(LARGE_AGENTS)]
    assert handler.iterations("agent-3")[:3] == [0, 1, 2] and len(handler.iterations("agent-3")) == 10_000
    assert set(handler.get("agent-3", 9_999)) == {"initial_output", "human_feedback", "loss"}
    with pytest.raises(KeyError, match=r"has no iteration 10000; it has 0, 1, 2, .*\(10,000 in all\)"):
        handler.get("agent-3", 10_000)
    streamed = handler.records("agent-9")
    first = next(streamed)
    assert first[:2] == ("agent-9", 0)
    assert sum(1 for _ in streamed) == 9_999
    stats = handler.stats()
    assert (stats.records, stats.agents) == (LARGE_RECORDS, LARGE_AGENTS)
    assert stats.bytes >= os.path.getsize(large_store) > 10_000_000


READER_SCRIPT = """
import json, sys
from crewtrain_nb import CrewTrainingHandler, StoreError
store = CrewTrainingHandler(sys.argv[1])
for line in sys.stdin:
    try:
        data = store.load()
        print(json.dumps({agent: sorted(entry) for agent, entry in data.items()}), flush=True)
    except StoreError as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""


def closed_store_in(directory: Path) -> Path:
    """``directory/run.db``: one agent, iterations 0-2, its writer closed (which removes -wal and -shm)."""
    directory.mkdir()
    path = directory / "run.db"
    writer = CrewTrainingHandler(path)
    writer.save(make_metrics_data(agents=("planner",), iterations=3))
    writer.close()
    return path


def test_a_read_only_directory_is_read_while_a_writer_with_rights_appends(tmp_path: Path) -> None:
    # A reader without write rights to the directory (a shared or mounted run directory) reads the store
    # while its owner keeps appending: first the file alone (no log yet), then through the writer's log.
    directory = tmp_path / "shared"
    path = closed_store_in(directory)
    os.chmod(path, 0o644)
    os.chmod(directory, 0o555)
    command = as_unprivileged([sys.executable, "-c", READER_SCRIPT, str(path)])
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as reader:
        assert reader.stdin is not None and reader.stdout is not None and reader.stderr is not None

        def read() -> dict[str, Any]:
            assert reader.stdin is not None and reader.stdout is not None
            reader.stdin.write("load\n")
            reader.stdin.flush()
            return json.loads(reader.stdout.readline() or '{"error": "the reader died"}')

        try:
            assert read() == {"planner": [0, 1, 2]}
            os.chmod(directory, 0o755)  # the owner's rights (the reader's are checked without them)
            writer = CrewTrainingHandler(path)
            writer.append(3, "planner", {"loss": 0.1})  # creates -wal and -shm, kept while the writer is open
            os.chmod(directory, 0o555)
            assert read() == {"planner": [0, 1, 2, 3]}
            writer.append(4, "coder", {"loss": 0.2})
            assert read() == {"planner": [0, 1, 2, 3], "coder": [4]}
            writer.close()
            assert read() == {"planner": [0, 1, 2, 3], "coder": [4]}
        finally:
            os.chmod(directory, 0o755)
            reader.stdin.close()
            errors = reader.stderr.read()
        assert reader.wait(timeout=60) == 0, errors
    assert sorted(os.listdir(directory)) == ["run.db"]


def test_a_damaged_store_in_a_read_only_directory_is_reported_as_damaged(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    path = closed_store_in(directory)
    damaged = bytearray(path.read_bytes())
    damaged[100:4096] = bytes(len(damaged[100:4096]))  # the header (in WAL mode) stays; the schema page is gone
    path.write_bytes(bytes(damaged))
    os.chmod(path, 0o644)
    os.chmod(directory, 0o555)
    try:
        result = subprocess.run(
            as_unprivileged([sys.executable, "-c", READER_SCRIPT, str(path)]),
            input="load\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        os.chmod(directory, 0o755)
    assert result.returncode == 0, result.stderr[-2000:]
    error = json.loads(result.stdout)["error"]
    assert error.startswith("CorruptStoreError") and str(path) in error, error
    assert sorted(os.listdir(directory)) == ["run.db"]
