"""Reliability proven with real processes and real files: crashes at every step, kill -9, faults, a reader.

``test_store.py`` has the basic versions (4 x 100 appends, ~25 kills, faults on
``append``); these go further. Tests that take a store take ``store_factory``,
parametrized over :data:`reliability_lib.STORE_BACKENDS`, so a new backend is
one entry there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import StoreError, StoreLockTimeout, StoreWriteError
from crewtrain_nb.store import _atomic
from tests.reliability_lib import (
    CRASH_FUNCTIONS,
    CRASH_SCRIPT,
    FAULT_WRITES,
    READ_ONLY_WRITES,
    STORE_BACKENDS,
    TAIL_SCRIPT,
    Zygote,
    apply_operation,
    as_unprivileged,
    make_store,
    python_command,
    run_crash_points,
    run_kill_soak,
    run_operation,
    run_sqlite_crash_points,
    run_sqlite_faults,
    run_writers_and_reader,
    store_file,
    strace_available,
    temp_files,
)

#: A store-changing call, as (id, function of a handler).
WRITES: list[tuple[str, Callable[[Any], None]]] = [
    ("append", lambda store: store.append(77, "agent-x", {"initial_output": "new"})),
    ("save_trained_data", lambda store: store.save_trained_data("Writer", {"quality": 9.0})),
    ("save", lambda store: store.save({"replaced": {}})),
    ("clear", lambda store: store.clear()),
    ("batch", lambda store: _batch_of_appends(store)),
]
WRITE_IDS = [name for name, _ in WRITES]


def _batch_of_appends(store: Any) -> None:
    with store.batch():
        for iteration in range(3):
            store.append(iteration, "agent-y", {"loss": 1.0 / (iteration + 1)})


@pytest.fixture(params=sorted(STORE_BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def store_factory(backend: str) -> Callable[..., Any]:
    """``store_factory(path, **options)``: a handler of the backend under test."""
    return lambda path, **options: make_store(backend, path, **options)


@pytest.fixture
def filled_store(
    tmp_path: Path, backend: str, store_factory: Callable[..., Any], training_data: dict[str, Any]
) -> Iterator[Any]:
    store = store_factory(store_file(backend, tmp_path, "training_data"))
    store.save(training_data)
    yield store
    store.close()


@pytest.fixture
def pickle_store(tmp_path: Path, training_data: dict[str, Any]) -> Iterator[Any]:
    """A filled pickle store: for faults injected into the pickle writer's own calls (``_atomic.os``)."""
    store = make_store("pickle", store_file("pickle", tmp_path, "training_data"))
    store.save(training_data)
    yield store
    store.close()


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    with Zygote() as process:
        yield process


# -- crash at every step ------------------------------------------------------------------------


def test_a_crash_at_every_write_fsync_and_replace_leaves_before_or_after(tmp_path: Path, zygote: Zygote) -> None:
    report = run_crash_points(tmp_path, zygote=zygote)
    assert report.problems == []
    # Every operation commits once: a full rewrite writes, fsyncs the file and the directory, and replaces;
    # a tail pwrites itself and its commit byte, with an fdatasync after each.
    assert report.calls["replace"] + report.commits == len(CRASH_SCRIPT)
    assert report.calls["write"] >= report.calls["replace"] and report.calls["fsync"] == 2 * report.calls["replace"]
    assert report.calls["pwrite"] == 2 * report.commits and report.calls["fdatasync"] == 2 * report.commits
    assert report.crash_points == 2 * sum(report.calls[name] for name in CRASH_FUNCTIONS)


def test_a_crash_at_every_step_of_tails_and_compaction_leaves_before_or_after(tmp_path: Path, zygote: Zygote) -> None:
    # Appends, a new agent, a replaced record and entry, CrewAI's load/save pattern, tails outgrowing the file
    # (compaction), clear: the child dies before and after each pwrite, fdatasync, ftruncate, write, fsync, replace.
    report = run_crash_points(tmp_path, zygote=zygote, script="tails")
    assert report.problems == []
    assert report.commits >= 8  # most writes were tails ...
    assert report.calls["replace"] >= 3  # ... the first save, at least one compaction and clear were rewrites
    assert report.calls["replace"] + report.commits == len(TAIL_SCRIPT) - 1  # one step is a crashed writer's leftover
    assert report.calls["ftruncate"] >= 1  # a tail written over a longer uncommitted one cuts the rest off
    assert report.crash_points == 2 * sum(report.calls[name] for name in CRASH_FUNCTIONS)


@pytest.fixture(scope="module")
def strace_allowed() -> None:
    reason = strace_available()
    if reason is not None:
        pytest.skip(f"SQLite's system calls cannot be killed or faulted here: {reason}")


def test_sqlite_killed_at_every_pwrite_and_fdatasync_holds_the_state_before_or_after(
    tmp_path: Path, zygote: Zygote, strace_allowed: None
) -> None:
    # SQLite writes from C, where the os hooks above cannot reach: strace kills the child on entering its
    # k-th pwrite64 / fdatasync / fsync instead, for every k the script reaches.
    report = run_sqlite_crash_points(tmp_path, zygote=zygote)
    assert report.problems == []
    assert report.crash_points == sum(report.calls.values())
    # synchronous=FULL: every operation's commit is synced at least once.
    assert report.calls["fdatasync"] + report.calls["fsync"] >= len(CRASH_SCRIPT)
    assert report.calls["pwrite64"] >= len(CRASH_SCRIPT)
    # Deaths fall both before a commit reached the log (old state) and after (new state): the points span commits.
    assert report.before > 0 and report.after > 0
    assert report.before + report.after == report.crash_points


def test_sqlite_io_errors_at_every_write_and_sync_keep_the_store(
    tmp_path: Path, zygote: Zygote, strace_allowed: None
) -> None:
    # EIO / ENOSPC returned by the kernel (injected by strace) at each pwrite64 and fdatasync of each kind of write.
    report = run_sqlite_faults(tmp_path, zygote=zygote)
    assert report.problems == []
    assert report.faults >= 5 * len(FAULT_WRITES)
    # During the write: StoreWriteError and the old data. After it returned, in the checkpoint at close: not the
    # write's failure, the new data stays (checked by run_sqlite_faults).
    assert set(report.outcomes) <= {"StoreWriteError (write)", "done (write)", "done (close)"}
    assert report.outcomes["StoreWriteError (write)"] >= report.faults // 2
    # The one fault SQLite gets past by design: the fsync of the directory after it creates the -wal, one per write.
    assert len(report.recovered) <= len(FAULT_WRITES), report.recovered


# -- kill -9 --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_kill_minus_nine_lose_no_acknowledged_append(tmp_path: Path, zygote: Zygote, backend: str) -> None:
    report = run_kill_soak(tmp_path, zygote=zygote, kills=200, backend=backend)
    assert report.problems == []
    assert report.kills == 200
    assert report.lost == 0
    assert report.acknowledged >= 200  # each child acknowledged at least one append before its kill
    if backend == "pickle":  # the appends were tails: most kills found the file the last one left, grown in place
        assert len(report.inodes) < report.kills // 4, len(report.inodes)


# -- faults -----------------------------------------------------------------------------------------


def fail_with(code: int) -> Callable[..., Any]:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return failing


@pytest.mark.parametrize("write", [function for _, function in WRITES], ids=WRITE_IDS)
@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_failing_step_of_any_write_keeps_the_old_file(
    pickle_store: Any, monkeypatch: pytest.MonkeyPatch, step: str, code: int, write: Callable[[Any], None]
) -> None:
    # test_store.py covers append; every other way of writing must behave the same. (SQLite's own I/O is
    # faulted in the SQLite section below: its C code does not call through ``os``.)
    filled_store = pickle_store
    path = Path(filled_store.file_path)
    if step == "replace":  # a tail replaces no file; versions keep every write a full rewrite
        filled_store = type(pickle_store)(path, backups=1)
    before = path.read_bytes()
    original = filled_store.load()
    with monkeypatch.context() as patch:
        # A tail writes with pwrite and syncs with fdatasync; a full rewrite writes, fsyncs and replaces.
        for name in {"write": ("write", "pwrite"), "fsync": ("fsync", "fdatasync")}.get(step, (step,)):
            patch.setattr(_atomic.os, name, fail_with(code))
        with pytest.raises(StoreWriteError) as caught:
            write(filled_store)
    message = str(caught.value)
    assert str(path) in message and os.strerror(code) in message and "previous file is unchanged" in message
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []
    assert filled_store.load() == original


def test_a_read_only_file_system_is_a_clear_error(pickle_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a read-only mount does: opening the store for writing (a tail) and creating a temporary file (a
    # full rewrite) both fail with EROFS.
    filled_store = pickle_store
    path = Path(filled_store.file_path)
    before = path.read_bytes()
    real_open = os.open

    def open_read_only_mount(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(file) == str(path) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_read_only_mount)
    monkeypatch.setattr(_atomic, "_open_temp", fail_with(errno.EROFS))
    with pytest.raises(StoreWriteError, match="Read-only file system") as caught:
        filled_store.append(1, "a", {})
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before


def test_a_read_only_store_file_in_a_writable_folder_refuses_every_write(
    tmp_path: Path, backend: str, training_data: dict[str, Any]
) -> None:
    # An atomic save renames a new file over the old one, which needs only the folder's permission:
    # a 0444 file would be replaced silently. As a process that file permissions apply to (as root:
    # without CAP_DAC_OVERRIDE), every write is refused, naming the file and its mode.
    store_path = store_file(backend, tmp_path, "t")
    store = make_store(backend, store_path)
    store.save(training_data)
    store.close()
    os.chmod(store_path, 0o444)
    before = store_path.read_bytes()
    script = (
        "import sys; sys.path.insert(0, sys.argv[2])\n"
        "from reliability_lib import READ_ONLY_WRITES, make_store, run_operation\n"
        "from crewtrain_nb import StoreError\n"
        "store = make_store(sys.argv[3], sys.argv[1])\n"
        "for name, arguments in READ_ONLY_WRITES:\n"
        "    try:\n        run_operation(store, name, arguments)\n"
        "    except StoreError as exc:\n        print(name, type(exc).__name__, exc)\n"
        "    else:\n        print(name, 'done')\n"
        "print('load', sorted(store.load()) == sorted(sys.argv[4].split(',')))\n"
    )
    arguments = [str(store_path), str(Path(__file__).parent), backend, ",".join(training_data)]
    command = as_unprivileged([python_command()[0], "-c", script, *arguments])
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    *writes, loaded = result.stdout.splitlines()
    assert [line.split()[0] for line in writes] == [name for name, _ in READ_ONLY_WRITES]
    for line in writes:
        assert line.split()[1] == "StoreWriteError", line
        assert f"{store_path}: this process may not write the file (mode 0444, -r--r--r--)" in line, line
    assert loaded == "load True"  # still readable
    assert store_path.read_bytes() == before
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o444
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize(("operation", "arguments"), READ_ONLY_WRITES, ids=[name for name, _ in READ_ONLY_WRITES])
def test_a_read_only_store_file_is_written_exactly_when_open_could_write_it(
    tmp_path: Path, backend: str, training_data: dict[str, Any], operation: str, arguments: list[Any]
) -> None:
    # The rule is os.access(path, W_OK), the one open(path, "wb") passes: root (this test's usual user)
    # may write a 0444 file, as with open, and the file keeps its mode; anyone else is refused.
    store_path = store_file(backend, tmp_path, "t")
    store = make_store(backend, store_path)
    store.save(training_data)
    os.chmod(store_path, 0o444)
    if os.access(store_path, os.W_OK):
        run_operation(store, operation, arguments)
        assert store.load() == apply_operation(training_data, operation, arguments)
    else:
        with pytest.raises(StoreWriteError, match="mode 0444"):
            run_operation(store, operation, arguments)
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o444
    store.close()


def test_a_read_only_directory_is_a_clear_error_even_as_root(backend: str, training_data: dict[str, Any]) -> None:
    # Root ignores directory permissions, so as root the writer runs without CAP_DAC_OVERRIDE (a real permission check).
    # A write that replaces the file needs the directory; a pickle tail writes into the (writable) file itself,
    # as CrewAI's own writer does, so it succeeds there and only the full rewrite is refused.
    directory = Path(tempfile.mkdtemp(prefix="crewtrain-ro-"))
    try:
        store_path = store_file(backend, directory, "t")
        make_store(backend, store_path).save(training_data)
        warm = make_store(backend, store_path)
        warm.append(0, "warm", {})
        warm.close()  # SQLite: the last connection checkpoints and removes its -wal and -shm
        if warm.lock_path is not None:
            # The lock file is shared-writable so the writer gets past the lock to the real test: creating a file.
            os.chmod(warm.lock_path, 0o666)
        os.chmod(store_path, 0o644)
        os.chmod(directory, 0o555)
        script = (
            "import sys; sys.path.insert(0, sys.argv[2]); from reliability_lib import make_store\n"
            "from crewtrain_nb import StoreError\n"
            "store = make_store(sys.argv[3], sys.argv[1])\n"
            "rewrite = make_store(sys.argv[3], sys.argv[1], **({'tails': False} if sys.argv[3] == 'pickle' else {}))\n"
            "for name, call in (('load', store.load), ('append', lambda: store.append(5, 'a', {})),\n"
            "                   ('rewrite', lambda: rewrite.append(6, 'a', {}))):\n"
            "    try:\n        result = call()\n"
            "    except StoreError as exc:\n        print(name, type(exc).__name__, exc)\n"
            "    else:\n        print(name, 'done', sorted(result) if isinstance(result, dict) else '')\n"
        )
        command = as_unprivileged(
            [python_command()[0], "-c", script, str(store_path), str(Path(__file__).parent), backend]
        )
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=directory)
        assert result.returncode == 0, result.stderr[-2000:]
        loaded, appended, rewritten = result.stdout.splitlines()
        # Read as it is (SQLite: without creating its -shm file, see _connect_read_only); a write that needs the
        # directory is refused with a clear error naming the file and the cause, never a traceback from inside.
        assert loaded == f"load done {sorted([*training_data, 'warm'])}", loaded
        refusals = [rewritten] if backend == "pickle" else [appended, rewritten]
        for refused in refusals:
            assert refused.split()[1] == "StoreWriteError", refused
            assert str(store_path) in refused
            assert ("Permission denied" if backend == "pickle" else "directory must be writable") in refused
        expected = {**training_data, "warm": {0: {}}}
        if backend == "pickle":
            assert appended == "append done ", appended  # the tail went into the file
            expected["a"] = {5: {}}
        os.chmod(directory, 0o700)
        assert make_store(backend, store_path).load() == expected  # the refused rewrite changed nothing
        left = {store_path.name, "t.pkl.lock"} if backend == "pickle" else {store_path.name}
        assert set(os.listdir(directory)) == left  # no temporary, -wal or -shm file
    finally:
        os.chmod(directory, 0o700)
        for entry in directory.iterdir():
            entry.unlink()
        directory.rmdir()


@pytest.mark.parametrize("operation", ["load", *WRITE_IDS])
def test_a_directory_in_place_of_the_store_is_a_store_error(
    tmp_path: Path, backend: str, store_factory: Callable[..., Any], operation: str
) -> None:
    path = store_file(backend, tmp_path)
    path.mkdir()
    (path / "inside").write_text("kept")
    store = store_factory(path)
    action = dict(WRITES).get(operation, lambda handler: handler.load())
    with pytest.raises(StoreError) as caught:
        action(store)
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, IsADirectoryError)
    assert path.is_dir() and (path / "inside").read_text() == "kept"
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("write", [function for _, function in WRITES], ids=WRITE_IDS)
def test_a_lock_held_by_a_stuck_process_times_out_for_every_write(
    filled_store: Any, store_factory: Callable[..., Any], write: Callable[[Any], None]
) -> None:
    path = Path(filled_store.file_path)
    before = path.read_bytes()
    original = filled_store.load()
    holder = subprocess.Popen(
        python_command("hold-lock", str(path), "60"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        impatient = store_factory(path, lock_timeout=0.2)
        with pytest.raises(StoreLockTimeout) as caught:
            write(impatient)
        assert str(path) in str(caught.value) and "lock_timeout" in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
        assert impatient.load() == original  # reading needs no lock (SQLite: readers never wait in WAL mode)
        impatient.close()
    finally:
        holder.kill()
        holder.communicate()
    assert path.read_bytes() == before
    assert store_factory(path).load() == original


# -- permissions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000])
@pytest.mark.parametrize("write", [function for _, function in WRITES], ids=WRITE_IDS)
def test_new_store_and_lock_files_are_owner_only_whatever_the_umask(
    tmp_path: Path, backend: str, store_factory: Callable[..., Any], write: Callable[[Any], None], umask: int
) -> None:
    # filelock creates the lock with O_EXCL and then fchmods it to the mode we pass (0600), so umask cannot widen it.
    # SQLite gives its -wal and -shm the database file's mode, and the handler creates that file 0600.
    old = os.umask(umask)
    try:
        store = store_factory(store_file(backend, tmp_path, "new"))
        write(store)
    finally:
        os.umask(old)
    if write is WRITES[WRITE_IDS.index("clear")][1] and backend == "pickle":
        # clear() of a missing pickle store creates nothing, as CrewAI's does: no file to give a mode.
        assert not os.path.exists(store.file_path)
        return
    assert stat.S_IMODE(os.stat(store.file_path).st_mode) == 0o600
    companions = store.companion_paths()
    assert companions
    for companion in companions:  # SQLite's -wal and -shm exist while the handler's connection is open
        assert stat.S_IMODE(os.stat(companion).st_mode) == 0o600, companion
    store.close()


# -- concurrency with a reader --------------------------------------------------------------------


def test_two_handlers_and_three_processes_append_tails_while_a_lockless_reader_never_sees_half_a_tail(
    tmp_path: Path,
) -> None:
    import json
    import threading

    from crewtrain_nb import CrewTrainingHandler

    path = tmp_path / "shared.pkl"
    CrewTrainingHandler(path).save({"seed": {0: {"text": "s" * 20_000}}})  # big enough that appends stay tails
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        python_command("raw-read-loop", str(path), str(stop)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    appends = 60
    writers = [
        subprocess.Popen(
            python_command("append", str(path), f"process-{n}", str(appends)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    handlers = [CrewTrainingHandler(path), CrewTrainingHandler(path)]
    failures: list[BaseException] = []

    def run(handler: CrewTrainingHandler, agent: str) -> None:
        try:
            for iteration in range(appends):
                handler.append(iteration, agent, {"value": iteration, "text": "t" * 200})
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(handler, f"thread-{n}")) for n, handler in enumerate(handlers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    errors = [proc.communicate(timeout=600)[1] for proc in writers]
    assert [proc.returncode for proc in writers] == [0, 0, 0], errors
    stop.touch()
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err[-2000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert failures == []
    assert summary["problems"] == []
    assert summary["loads"] >= 10
    assert summary["pending"] >= 1  # the reader did meet tails written but not yet committed, and read past them
    final = pickle.loads(path.read_bytes())
    agents = [f"process-{n}" for n in range(3)] + ["thread-0", "thread-1"]
    assert all(list(final[agent]) == list(range(appends)) for agent in agents)
    assert CrewTrainingHandler(path).load() == final


@pytest.mark.slow
def test_eight_writers_and_a_reader_lose_nothing_and_never_see_a_torn_file(tmp_path: Path, backend: str) -> None:
    report = run_writers_and_reader(tmp_path, writers=8, appends=200, backend=backend)
    assert report.problems == []
    assert report.records == 1600
    assert report.reader_loads >= 2
    path = store_file(backend, tmp_path, "shared")
    if backend == "pickle":  # checked without the handler: a plain pickle, as CrewAI reads it
        with open(path, "rb") as file:
            assert sum(len(records) for records in pickle.load(file).values()) == 1600
    else:  # and with SQLite itself: an intact database holding 1,600 rows
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1600
