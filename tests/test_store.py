"""The store core (store/handler.py): CrewAI compatibility, atomic saves, locking, caching, argument checks, batches.

Safe loading is tested in ``test_unpickle.py``, the lazy reads in ``test_lazy.py``, sources and views in
``test_source.py``, the pickle writer in ``test_pieces.py``.
"""

from __future__ import annotations

import errno
import os
import pickle
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crewtrain_nb
from crewtrain_nb import (
    CorruptStoreError,
    CrewTrainingHandler,
    PickleHandler,
    StoreError,
    StoreFormatError,
    StoreLockTimeout,
    StoreWriteError,
    UnsafePickleError,
)
from crewtrain_nb.store import _atomic
from crewtrain_nb.store import _pickle_file as pickle_file_module

WORKERS = str(Path(__file__).with_name("workers.py"))


def crewai_dump(path: Path, data: Any) -> None:
    """What CrewAI's own ``PickleHandler.save`` does: ``pickle.dump`` in ``"wb"`` mode."""
    with open(path, "wb") as file:
        pickle.dump(data, file)


def temp_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


# -- paths ----------------------------------------------------------------------


def test_pkl_suffix_is_added_like_crewai(tmp_path: Path) -> None:
    assert CrewTrainingHandler(tmp_path / "training_data").file_path == str(tmp_path / "training_data.pkl")
    assert CrewTrainingHandler(tmp_path / "x.pkl").file_path == str(tmp_path / "x.pkl")
    assert CrewTrainingHandler(str(tmp_path / "x.json")).file_path == str(tmp_path / "x.json.pkl")


def test_relative_name_resolves_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    handler = CrewTrainingHandler("trained_agents_data.pkl")
    assert handler.file_path == str(tmp_path / "trained_agents_data.pkl")
    assert os.path.isabs(handler.file_path)


@pytest.mark.parametrize("bad", [b"x.pkl", 3, None])
def test_file_name_of_wrong_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="file_name"):
        CrewTrainingHandler(bad)  # type: ignore[arg-type]


def test_empty_file_name_is_refused() -> None:
    with pytest.raises(ValueError, match="file_name is empty"):
        CrewTrainingHandler("")


# -- compatibility --------------------------------------------------------------


def test_what_we_write_loads_with_plain_pickle(tmp_path: Path, training_data: dict[str, Any]) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl")
    for agent, records in training_data.items():
        for iteration, record in records.items():
            handler.append(iteration, agent, record)
    with open(handler.file_path, "rb") as file:
        assert pickle.load(file) == training_data
    with open(handler.file_path, "rb") as file:
        assert file.read(2) == b"\x80\x04"  # protocol 4, like CrewAI


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_files_written_by_crewais_algorithm_load(
    tmp_path: Path, training_data: dict[str, Any], trained_data: dict[str, Any], protocol: int
) -> None:
    for name, data in (("training_data.pkl", training_data), ("trained_agents_data.pkl", trained_data)):
        path = tmp_path / name
        with open(path, "wb") as file:
            pickle.dump(data, file, protocol=protocol)
        assert CrewTrainingHandler(path).load() == data


def test_crewai_empty_store_after_failed_train_loads(tmp_path: Path) -> None:
    path = tmp_path / "training_data.pkl"
    crewai_dump(path, {})  # CrewAI 1.x writes this 5-byte pickle when train() fails
    assert path.stat().st_size == 5
    assert CrewTrainingHandler(path).load() == {}


def test_append_save_trained_data_clear_behave_as_crewai(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.pkl")
    handler.initialize_file()
    assert handler.load() == {}
    handler.append(0, "a", {"initial_output": "x", "human_feedback": "y"})
    handler.append(1, "a", {"initial_output": "x2", "human_feedback": "y2", "improved_output": "z2"})
    handler.append(0, "a", {"initial_output": "x3", "human_feedback": "y3"})  # same iteration replaces
    handler.append(0, "b", {"initial_output": "q", "human_feedback": "r"})
    handler.save_trained_data("Writer", {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"})
    assert handler.load() == {
        "a": {
            0: {"initial_output": "x3", "human_feedback": "y3"},
            1: {"initial_output": "x2", "human_feedback": "y2", "improved_output": "z2"},
        },
        "b": {0: {"initial_output": "q", "human_feedback": "r"}},
        "Writer": {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"},
    }
    handler.clear()
    assert handler.load() == {}
    with open(handler.file_path, "rb") as file:
        assert pickle.load(file) == {}


def test_pickle_handler_saves_any_picklable_object(tmp_path: Path) -> None:
    handler = PickleHandler(tmp_path / "any")
    handler.save([1, 2, {"a": (3, 4)}])
    assert handler.load() == [1, 2, {"a": (3, 4)}]


# -- load: missing, empty, corrupt -----------------------------------------------


def test_missing_and_empty_files_load_as_empty_dict(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "missing.pkl")
    assert handler.load() == {}
    assert not os.path.exists(handler.file_path)  # reading creates nothing
    (tmp_path / "empty.pkl").write_bytes(b"")
    assert CrewTrainingHandler(tmp_path / "empty.pkl").load() == {}


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated-half"),
        pytest.param(lambda blob: blob[:-1], id="truncated-stop"),
        pytest.param(lambda blob: blob + b"garbage", id="trailing-bytes"),
        pytest.param(lambda blob: b"not a pickle at all", id="text"),
        pytest.param(lambda blob: b"\x80\x04" + bytes(range(256)) * 4, id="random"),
    ],
)
def test_corrupt_file_raises_and_is_never_overwritten(
    tmp_path: Path, training_data: dict[str, Any], damage: Any
) -> None:
    path = tmp_path / "training_data.pkl"
    path.write_bytes(damage(pickle.dumps(training_data, protocol=4)))
    before = path.read_bytes()
    handler = CrewTrainingHandler(path)
    with pytest.raises(CorruptStoreError) as caught:
        handler.load()
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    with pytest.raises(CorruptStoreError):
        handler.append(99, "new-agent", {"initial_output": "would erase the store"})
    with pytest.raises(CorruptStoreError):
        handler.save_trained_data("Writer", {"quality": 1.0})
    assert path.read_bytes() == before


def test_appending_to_a_non_dict_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    crewai_dump(path, [1, 2, 3])
    before = path.read_bytes()
    with pytest.raises(StoreFormatError, match="holds a list"):
        CrewTrainingHandler(path).append(0, "a", {})
    assert path.read_bytes() == before


def test_appending_into_a_trained_agents_entry_that_is_not_a_dict(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "x.pkl")
    handler.save({"Writer": ["not", "iterations"]})
    with pytest.raises(StoreFormatError, match="'Writer' holds a list"):
        handler.append(0, "Writer", {})


def test_directory_in_place_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "store.pkl").mkdir()
    with pytest.raises(StoreError, match="store.pkl"):
        CrewTrainingHandler(tmp_path / "store.pkl").load()


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "no" / "such" / "dir" / "t.pkl")
    with pytest.raises(StoreWriteError, match="does not exist; create it first"):
        handler.append(0, "a", {})


# -- cache ----------------------------------------------------------------------------


def count_unpickles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = pickle_file_module.safe_loads

    def counting(payload: bytes, *, path: str, **options: Any) -> Any:
        calls.append(len(payload))
        return real(payload, path=path, **options)

    monkeypatch.setattr(pickle_file_module, "safe_loads", counting)
    return calls


def test_load_uses_the_cache_while_the_file_is_unchanged(
    training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_unpickles(monkeypatch)
    first = training_store.load()
    second = training_store.load()
    assert first == second
    assert len(calls) == 1
    training_store.append(50, next(iter(first)), {"initial_output": "new"})
    assert len(calls) == 1  # the append reuses the snapshot
    assert training_store.load()[next(iter(first))][50] == {"initial_output": "new"}
    assert len(calls) == 1  # ... and so does the load after our own write


def test_mutating_a_loaded_dict_never_changes_the_store(training_store: CrewTrainingHandler) -> None:
    original = training_store.load()
    mutated = training_store.load()
    agent = next(iter(mutated))
    mutated[agent][0]["human_feedback"] = "changed"
    mutated[agent][999] = {"x": 1}
    mutated["intruder"] = {}
    assert training_store.load() == original
    training_store.append(1, agent, {"initial_output": "a"})
    expected = original
    expected[agent][1] = {"initial_output": "a"}
    assert training_store.load() == expected


def test_mutating_appended_data_afterwards_is_not_stored(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.pkl")
    record = {"metrics": {"f1": 0.5}, "weights": [1.0, 2.0]}
    handler.append(0, "a", record)
    record["metrics"]["f1"] = 0.0
    record["weights"].append(3.0)
    handler.append(1, "a", {"loss": 1.0})
    assert handler.load()["a"][0] == {"metrics": {"f1": 0.5}, "weights": [1.0, 2.0]}


def test_a_change_by_another_writer_is_seen(training_store: CrewTrainingHandler, tmp_path: Path) -> None:
    training_store.load()
    crewai_dump(Path(training_store.file_path), {"other": {0: {"initial_output": "theirs"}}})
    assert training_store.load() == {"other": {0: {"initial_output": "theirs"}}}
    other = CrewTrainingHandler(training_store.file_path)
    other.append(1, "other", {"initial_output": "second"})
    assert set(training_store.load()["other"]) == {0, 1}
    training_store.append(2, "other", {"initial_output": "third"})
    assert set(other.load()["other"]) == {0, 1, 2}


def test_load_after_the_file_is_deleted_is_empty(training_store: CrewTrainingHandler) -> None:
    assert training_store.load()
    os.unlink(training_store.file_path)
    assert training_store.load() == {}


# -- argument checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iteration", "agent", "error", "match"),
    [
        (True, "a", TypeError, "train_iteration must be an int, got bool"),
        (1.0, "a", TypeError, "train_iteration must be an int, got float"),
        ("3", "a", TypeError, "train_iteration must be an int, got str"),
        (-1, "a", ValueError, "train_iteration must be >= 0, got -1"),
        # Frames, exports and SQLite keep iterations as int64; CrewAI counts from 0 one by one.
        (2**63, "a", ValueError, r"train_iteration must be at most 2\*\*63 - 1 \(an int64.*got 9223372036854775808"),
        (10**30, "a", ValueError, r"at most 2\*\*63 - 1.*got 1000000000000000000000000000000"),
        (np.uint64(2**63), "a", ValueError, r"at most 2\*\*63 - 1"),
        (0, 5, TypeError, "agent_id must be a str"),
        (0, uuid.UUID(int=1), TypeError, "agent_id must be a str"),
        (0, "", ValueError, "agent_id must be a non-empty str"),
    ],
)
@pytest.mark.parametrize("suffix", [".pkl", ".db"])  # both backends check the same way
def test_append_checks_arguments_before_writing(
    tmp_path: Path, iteration: Any, agent: Any, error: type[Exception], match: str, suffix: str
) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    with pytest.raises(error, match=match):
        handler.append(iteration, agent, {})
    assert not os.path.exists(handler.file_path)


@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_the_largest_int64_iteration_is_stored(tmp_path: Path, suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    handler.append(2**63 - 1, "a", {"loss": 1.0})
    assert handler.load() == {"a": {2**63 - 1: {"loss": 1.0}}}
    assert crewtrain_nb.to_frame(handler)["iteration"].tolist() == [2**63 - 1]


@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_numpy_integer_iteration_is_stored_as_int(tmp_path: Path, suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    handler.append(np.int64(3), "a", {})
    (key,) = handler.load()["a"]
    assert key == 3 and type(key) is int


@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_save_trained_data_checks_agent_id(tmp_path: Path, suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    with pytest.raises(TypeError, match="agent_id must be a str"):
        handler.save_trained_data(None, {})  # type: ignore[arg-type]
    assert not os.path.exists(handler.file_path)


# -- batch -------------------------------------------------------------------------------


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    writes: list[int] = []
    real = pickle_file_module.write_atomic

    def counting(path: str, payload: bytes) -> Any:
        writes.append(len(payload))
        return real(path, payload)

    monkeypatch.setattr(pickle_file_module, "write_atomic", counting)
    return writes


def test_batch_writes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metrics_data: dict[str, Any]) -> None:
    handler = CrewTrainingHandler(tmp_path / "m.pkl")
    writes = count_writes(monkeypatch)
    with handler.batch():
        for agent, records in metrics_data.items():
            for iteration, record in records.items():
                handler.append(iteration, agent, record)
        handler.save_trained_data("role", {"quality": 9.0})
        assert handler.load()["role"] == {"quality": 9.0}  # load inside sees the pending state
        assert not os.path.exists(handler.file_path)
    assert len(writes) == 1
    assert handler.load() == {**metrics_data, "role": {"quality": 9.0}}


def test_batch_that_raises_writes_nothing(training_store: CrewTrainingHandler) -> None:
    before = Path(training_store.file_path).read_bytes()
    original = training_store.load()
    with pytest.raises(RuntimeError, match="boom"), training_store.batch():
        training_store.append(100, "a", {"x": 1})
        training_store.clear()
        raise RuntimeError("boom")
    assert Path(training_store.file_path).read_bytes() == before
    assert training_store.load() == original


def test_nested_batch_joins_the_outer_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.pkl")
    writes = count_writes(monkeypatch)
    with handler.batch():
        handler.append(0, "a", 1)
        with handler.batch():
            handler.append(1, "a", 2)
    assert len(writes) == 1
    assert handler.load() == {"a": {0: 1, 1: 2}}


def test_empty_batch_writes_nothing(training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = count_writes(monkeypatch)
    with training_store.batch():
        training_store.load()
    assert writes == []


# -- permissions ----------------------------------------------------------------------------


def test_new_files_are_owner_only_and_existing_modes_are_kept(tmp_path: Path) -> None:
    previous = os.umask(0)  # even a umask that lets everything through: stores stay private
    try:
        handler = CrewTrainingHandler(tmp_path / "new.pkl", backups=2, audit=True)
        handler.append(0, "a", {})
        handler.append(1, "a", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(handler.file_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(handler.lock_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(handler.file_path + ".audit.jsonl").st_mode) == 0o600
    assert [stat.S_IMODE(os.stat(version.path).st_mode) for version in handler.versions()] == [0o600]
    shared = tmp_path / "shared.pkl"
    crewai_dump(shared, {})
    os.chmod(shared, 0o644)
    CrewTrainingHandler(shared).append(0, "a", {})
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o644


# -- failures while saving --------------------------------------------------------------------


def fail_with(code: int) -> Any:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return failing


#: The ``os`` functions each failing step patches: a full rewrite writes and fsyncs, a tail pwrites and fdatasyncs.
_STEP_FUNCTIONS = {"write": ("write", "pwrite"), "fsync": ("fsync", "fdatasync"), "replace": ("replace",)}


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
@pytest.mark.parametrize(
    ("how", "step"),
    [("tail", "write"), ("tail", "fsync"), ("rewrite", "write"), ("rewrite", "fsync"), ("rewrite", "replace")],
)
def test_a_failing_save_leaves_the_old_file_byte_identical(
    training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch, step: str, code: int, how: str
) -> None:
    path = Path(training_store.file_path)
    if how == "rewrite":  # versions keep full rewrites
        training_store = CrewTrainingHandler(path, backups=1)
    before = path.read_bytes()
    original = training_store.load()
    agent = next(iter(original))
    with monkeypatch.context() as patch:
        for name in _STEP_FUNCTIONS[step]:
            patch.setattr(_atomic.os, name, fail_with(code))
        with pytest.raises(StoreWriteError) as caught:
            training_store.append(77, agent, {"initial_output": "lost?"})
    assert os.strerror(code) in str(caught.value) and str(path) in str(caught.value)
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []
    # the handler is still consistent: the failed record is not in its cache
    assert training_store.load() == original
    training_store.append(78, agent, {"initial_output": "kept"})
    assert 77 not in training_store.load()[agent] and 78 in training_store.load()[agent]


def test_unpicklable_data_leaves_the_file_unchanged(training_store: CrewTrainingHandler) -> None:
    path = Path(training_store.file_path)
    before = path.read_bytes()
    with pytest.raises(StoreWriteError, match="cannot be pickled"):
        training_store.append(5, "a", {"fn": lambda: None})
    with pytest.raises(StoreWriteError, match="cannot be pickled"):
        training_store.save({"fn": lambda: None})
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []
    assert "a" not in training_store.load() or 5 not in training_store.load()["a"]


def test_interrupt_during_save_leaves_the_old_file(
    training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(training_store.file_path)
    before = path.read_bytes()

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training_store.save({"replaced": {}})
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []


def test_stale_temp_files_of_dead_writers_are_swept(training_store: CrewTrainingHandler) -> None:
    path = Path(training_store.file_path)
    stale = path.parent / f"{_atomic.temp_prefix(str(path))}deadbeef.tmp"
    stale.write_bytes(b"half a pickle")
    unrelated = path.parent / "notes.tmp"
    unrelated.write_bytes(b"keep me")
    training_store.append(1, "a", {})
    assert not stale.exists()
    assert unrelated.exists()


# -- real processes -----------------------------------------------------------------------------


def run_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, WORKERS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "training_data.pkl"
    workers = [run_worker("append", str(path), f"agent-{n}", "100") for n in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    data = CrewTrainingHandler(path).load()
    assert sorted(data) == [f"agent-{n}" for n in range(4)]
    for n in range(4):
        assert sorted(data[f"agent-{n}"]) == list(range(100))
    assert temp_files(tmp_path) == []


def test_lock_held_by_a_stuck_process_times_out(training_store: CrewTrainingHandler) -> None:
    path = Path(training_store.file_path)
    before = path.read_bytes()
    holder = run_worker("hold-lock", str(path), "30")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        impatient = CrewTrainingHandler(path, lock_timeout=0.3)
        with pytest.raises(StoreLockTimeout) as caught:
            impatient.append(0, "a", {})
        assert "lock_timeout" in str(caught.value) and str(path) in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
        assert impatient.load() == training_store.load()  # reading needs no lock
    finally:
        holder.kill()
        holder.communicate()
    assert path.read_bytes() == before


def test_kill_minus_nine_never_loses_an_acknowledged_append(tmp_path: Path) -> None:
    import random

    rng = random.Random(2026)
    path = tmp_path / "training_data.pkl"
    acknowledged: set[int] = set()
    next_iteration = 0
    kills = 0
    while kills < 25:
        worker = run_worker("append", str(path), "agent", "100000", str(next_iteration))
        assert worker.stdout is not None
        # wait for the child to be appending, then kill it at a random moment
        first = worker.stdout.readline()
        assert first.startswith("ack"), worker.stderr.read() if worker.stderr else first
        acknowledged.add(int(first.split()[1]))
        import time

        time.sleep(rng.uniform(0.0, 0.08))
        worker.kill()
        out, _ = worker.communicate()
        for line in out.splitlines():
            if line.startswith("ack "):
                acknowledged.add(int(line.split()[1]))
        kills += 1
        stored = CrewTrainingHandler(path).load()
        assert acknowledged <= set(stored["agent"]), sorted(acknowledged - set(stored["agent"]))[:5]
        next_iteration = max(stored["agent"]) + 1
    assert kills >= 20
    CrewTrainingHandler(path).append(next_iteration, "agent", {})
    assert temp_files(tmp_path) == []


# -- namespace, names as given, peek, what importing loads ------------------------------


def test_public_namespace() -> None:
    for name in crewtrain_nb.__all__:
        assert hasattr(crewtrain_nb, name), name
    assert issubclass(CorruptStoreError, StoreError)
    assert issubclass(UnsafePickleError, StoreError)
    assert issubclass(StoreLockTimeout, StoreError)


def test_add_suffix_false_uses_the_name_as_given(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "run.pickle", add_suffix=False)
    handler.append(0, "a", {})
    assert handler.file_path == str(tmp_path / "run.pickle")
    assert os.path.exists(tmp_path / "run.pickle")


def test_peek_returns_the_snapshot_without_copying(training_store: CrewTrainingHandler) -> None:
    assert training_store.peek() is training_store.peek()
    assert training_store.peek() == training_store.load()
    assert training_store.load() is not training_store.peek()


def test_the_handler_alone_loads_no_dataframe_or_plotting_library(tmp_path: Path) -> None:
    # A training script that uses the drop-in handler should not pay for pandas, matplotlib or
    # ipywidgets (nor need them to work): everything above the store is imported on first use.
    script = (
        "import sys\n"
        "from crewtrain_nb import CrewTrainingHandler\n"
        f"handler = CrewTrainingHandler({str(tmp_path / 'run')!r})\n"
        "handler.append(0, 'agent', {'loss': 0.5})\n"
        "assert handler.load() == {'agent': {0: {'loss': 0.5}}}\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib', 'ipywidgets') if m in sys.modules))\n"
        "import crewtrain_nb\n"
        "print(crewtrain_nb.to_frame.__module__, 'pandas' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["[]", "crewtrain_nb.frames True"]
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        crewtrain_nb.no_such_name  # noqa: B018
