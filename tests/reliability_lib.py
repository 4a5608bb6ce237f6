"""Machinery shared by the reliability tests and ``tests/reliability_report.py``.

Real processes, real files: a *zygote* (a Python process that imports the
package once and forks a fresh child per run) keeps hundreds of crashes and
kills affordable, since importing crewtrain_nb costs most of a second. Every
child is a separate process that dies by ``os._exit`` or ``SIGKILL`` for real.

The functions here return plain figures and lists of problems; the tests
assert on them and the report script prints them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pickle
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
WORKERS = str(TESTS / "workers.py")
TEMP_SUFFIX = ".tmp"


#: Store backends the reliability tests run against, by name. A new backend
#: is one more entry: a callable from a path to a handler with
#: CrewTrainingHandler's API. Child processes look backends up here too.
STORE_BACKENDS: dict[str, Callable[..., Any]] = {
    "pickle": lambda path, **options: __import__("crewtrain_nb").CrewTrainingHandler(path, **options),
    "sqlite": lambda path, **options: __import__("crewtrain_nb").SQLiteHandler(path, **options),
}

#: The file suffix of each backend. ``CrewTrainingHandler(name)`` picks the backend by suffix, so the
#: tests name their files with :func:`store_file`: code that opens a store by name alone gets the same backend.
STORE_SUFFIXES: dict[str, str] = {"pickle": ".pkl", "sqlite": ".db"}


def store_file(backend: str, directory: str | Path, stem: str = "store") -> Path:
    """``directory/stem`` with ``backend``'s suffix."""
    return Path(directory) / f"{stem}{STORE_SUFFIXES[backend]}"


def make_store(backend: str, path: str | Path, **options: Any) -> Any:
    """A handler of ``backend`` for ``path`` (options such as ``lock_timeout`` are passed on)."""
    return STORE_BACKENDS[backend](path, **options)


def python_command(*args: str) -> list[str]:
    """``python tests/workers.py ARGS``, with the same interpreter."""
    return [sys.executable, WORKERS, *args]


def as_unprivileged(command: list[str]) -> list[str]:
    """``command`` as run by a user whom file permissions apply to.

    Root passes permission checks through CAP_DAC_OVERRIDE, so as root the
    command runs under ``capsh`` without it: a directory's 0555 is then
    enforced as for any user (a real check, not a simulated error).
    """
    if os.geteuid() != 0:
        return command
    import shutil

    import pytest

    capsh = shutil.which("capsh")
    if capsh is None:
        pytest.skip("running as root and capsh (libcap) is not installed: cannot drop CAP_DAC_OVERRIDE")
    return [capsh, "--drop=cap_dac_override,cap_dac_read_search", "--", "-c", 'exec "$0" "$@"', *command]


def temp_files(directory: str | Path) -> list[str]:
    """Names of leftover temporary files of a store's writers in ``directory``."""
    return sorted(name for name in os.listdir(directory) if name.endswith(TEMP_SUFFIX))


class LineReader:
    """Read lines from a pipe with a timeout, unbuffered (a buffered reader hides lines from ``select``)."""

    def __init__(self, stream: Any) -> None:
        self.fd = stream.fileno()
        self.pending = b""

    def readline(self, timeout: float) -> str | None:
        """The next line without its newline; ``None`` at end of file; ``TimeoutError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no output for {timeout} s")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()


# -- the zygote ---------------------------------------------------------------------------


class Zygote:
    """A child interpreter that has imported crewtrain_nb and forks a grandchild per request.

    Protocol (one JSON object per line): the parent sends ``{"run": name, ...}``;
    the zygote forks, the grandchild runs :data:`workers.ZYGOTE_JOBS[name]`
    (writing ``ack``/progress lines to the shared stdout), and the zygote
    answers ``{"pid": N}`` at once and ``{"exit": N, "status": S}`` once the
    grandchild is gone.
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            python_command("zygote"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert self.process.stdout is not None
        self._lines = LineReader(self.process.stdout)
        assert self._read()["ready"] is True

    def _read(self, timeout: float = 60.0) -> dict[str, Any]:
        line = self._readline(timeout)
        return json.loads(line[len("zygote ") :])

    def _readline(self, timeout: float) -> str:
        line = self._lines.readline(timeout)
        if line is None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise RuntimeError(f"zygote died: {err[-2000:]}")
        return line + "\n"

    def start(self, job: str, **arguments: Any) -> tuple[int, list[str]]:
        """Fork a grandchild running ``job``; return its pid and the lines it printed before the pid arrived."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"run": job, **arguments}) + "\n").encode())
        self.process.stdin.flush()
        early: list[str] = []
        while True:
            line = self._readline(60.0)
            if line.startswith("zygote "):
                return json.loads(line[len("zygote ") :])["pid"], early
            early.append(line.rstrip("\n"))

    def lines_until_exit(self, pid: int, *, timeout: float = 60.0) -> tuple[list[str], int]:
        """Lines the grandchild printed until it ended, and its wait status."""
        lines: list[str] = []
        while True:
            line = self._readline(timeout)
            if line.startswith("zygote "):
                message = json.loads(line[len("zygote ") :])
                assert message["exit"] == pid, message
                return lines, message["status"]
            lines.append(line.rstrip("\n"))

    def next_line(self, *, timeout: float = 60.0) -> str:
        return self._readline(timeout).rstrip("\n")

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- crash at every step -----------------------------------------------------------------

#: The scripted writes of the crash test: ``(operation, arguments)``.
CRASH_SCRIPT: list[tuple[str, list[Any]]] = [
    ("append", [0, "agent-a", {"initial_output": "first", "human_feedback": "ok"}]),
    ("append", [1, "agent-a", {"initial_output": "second", "human_feedback": "better"}]),
    ("save_trained_data", ["Writer", {"suggestions": ["be brief"], "quality": 7.5, "final_summary": "s"}]),
    ("batch", [[2, "agent-a", {"loss": 0.5}], [0, "agent-b", {"loss": 0.7}], [3, "agent-a", {"loss": 0.25}]]),
    ("append", [1, "agent-b", {"loss": 0.6, "weights": [1.0, 2.0, 3.0]}]),
    ("save", [{"replaced": {0: {"initial_output": "from save"}}}]),
    ("append", [1, "replaced", {"initial_output": "after save"}]),
    ("clear", []),
    ("append", [0, "agent-c", {"initial_output": "after clear"}]),
]

#: The scripted writes of the tail crash test: tails of each kind, CrewAI's load/save pattern, a compaction.
TAIL_SCRIPT: list[tuple[str, list[Any]]] = []  # filled below, once apply_operation is defined

#: The crash scripts by name (what ``workers.crash_script`` runs).
SCRIPTS: dict[str, list[tuple[str, list[Any]]]] = {"crash": CRASH_SCRIPT, "tails": TAIL_SCRIPT}

#: One of each way of writing a store, as ``(operation, arguments)``: the read-only file tests try them all.
READ_ONLY_WRITES: list[tuple[str, list[Any]]] = [*dict(CRASH_SCRIPT).items(), ("initialize_file", [])]

#: The functions whose k-th call kills the child: a full rewrite writes, fsyncs and replaces; a tail
#: pwrites (the tail, then the one commit byte), may ftruncate and fdatasyncs (see ``store/_tail.py``).
CRASH_FUNCTIONS = ("write", "fsync", "replace", "pwrite", "fdatasync", "ftruncate")


def _tail_script() -> list[tuple[str, list[Any]]]:
    """Writes that are tails on a store big enough for them, then enough appends for a compaction."""
    seed = {f"agent-{a}": {n: {"initial_output": "x" * 100, "n": n} for n in range(6)} for a in range(3)}
    script: list[tuple[str, list[Any]]] = [
        ("save", [seed]),  # a full rewrite; the next write reads the file and takes its memo slots from the load
        ("append", [6, "agent-0", {"initial_output": "a new record"}]),
        ("append", [0, "agent-new", {"initial_output": "a new agent", "shared": "s" * 20}]),
        ("append", [2, "agent-1", {"initial_output": "a replaced record"}]),
        ("save_trained_data", ["agent-2", {"suggestions": ["a replaced entry"], "quality": 8.0}]),
    ]
    # CrewAI's own pattern: load(), change one agent's entry, save(the whole dict).
    state: dict[Any, Any] = copy.deepcopy(seed)
    for operation, arguments in script[1:]:
        state = apply_operation(state, operation, arguments)
    state["agent-0"][7] = {"initial_output": "saved whole", "human_feedback": "by save()"}
    state["agent-0"][0] = {**state["agent-0"][0], "human_feedback": "changed by save()"}
    script.append(("save", [state]))
    # What a writer killed between its tail and the commit leaves; the next tail is shorter: it cuts the rest off.
    script.append(("leave_uncommitted_tail", [3000]))
    # Records big enough that the tails outgrow the compacted file: the rule compacts (an atomic rewrite).
    script += [("append", [10 + n, "agent-1", {"initial_output": "y" * 600, "n": n}]) for n in range(6)]
    script += [("clear", []), ("append", [0, "agent-0", {"initial_output": "after clear"}])]
    return script


def apply_operation(data: dict[Any, Any], operation: str, arguments: list[Any]) -> dict[Any, Any]:
    """The model: what ``operation`` does to a plain dict (a new dict; ``data`` is not changed)."""
    import copy

    result = copy.deepcopy(data)
    if operation == "append":
        iteration, agent, record = arguments
        result.setdefault(agent, {})[iteration] = copy.deepcopy(record)
    elif operation == "save_trained_data":
        agent, value = arguments
        result[agent] = copy.deepcopy(value)
    elif operation == "batch":
        for iteration, agent, record in arguments:
            result.setdefault(agent, {})[iteration] = copy.deepcopy(record)
    elif operation == "save":
        result = copy.deepcopy(arguments[0])
    elif operation in ("clear", "initialize_file"):
        result = {}
    elif operation == "leave_uncommitted_tail":
        pass  # bytes after the pickle that no commit made part of it: the store is unchanged
    else:
        raise ValueError(operation)
    return result


def run_operation(handler: Any, operation: str, arguments: list[Any]) -> None:
    """Do ``operation`` (a :data:`CRASH_SCRIPT` entry) through ``handler``; ``batch`` is one block of appends."""
    if operation == "batch":
        with handler.batch():
            for append_arguments in arguments:
                handler.append(*append_arguments)
    elif operation == "leave_uncommitted_tail":  # through io, not the os calls the crash hooks count
        with open(handler.file_path, "ab") as file:
            file.write(b"1" + b"\xff" * (arguments[0] - 1))
    else:
        getattr(handler, operation)(*arguments)


TAIL_SCRIPT.extend(_tail_script())


def script_states(script: list[tuple[str, list[Any]]] = CRASH_SCRIPT) -> list[dict[Any, Any]]:
    """``states[i]`` is the store before operation ``i``; ``states[-1]`` after the last."""
    states: list[dict[Any, Any]] = [{}]
    for operation, arguments in script:
        states.append(apply_operation(states[-1], operation, arguments))
    return states


@dataclass
class CrashReport:
    """What the crash-at-every-step run found."""

    calls: dict[str, int] = field(default_factory=dict)
    #: How many of the ``pwrite`` calls were a tail's commit byte.
    commits: int = 0
    crash_points: int = 0
    problems: list[str] = field(default_factory=list)


def run_crash_points(
    directory: Path,
    *,
    zygote: Zygote,
    modes: tuple[str, ...] = ("before", "after"),
    limit: int | None = None,
    script: str = "crash",
) -> CrashReport:
    """Kill a child at every call of ``os.write``/``os.fsync``/``os.replace`` the script makes.

    An uncounted run first records the trace of calls: ``(function, operation
    index, replaced-yet)``. Then, for each function, each ``k`` and each mode
    (die just ``before`` the k-th call runs, or just ``after`` it returns),
    a fresh child replays the script in a fresh directory and ``os._exit``\\ s
    there. The file must then equal the state before the interrupted operation
    (if its ``os.replace`` had not happened) or after it, and the next writer
    must leave no temporary file. A tail's commit (its one-byte ``pwrite``)
    counts as the replace. ``script``: ``"crash"`` (:data:`CRASH_SCRIPT`) or
    ``"tails"`` (:data:`TAIL_SCRIPT`).
    """
    from crewtrain_nb import CrewTrainingHandler

    report = CrashReport()
    states = script_states(SCRIPTS[script])
    trace_dir = directory / "trace"
    trace_dir.mkdir()
    pid, early = zygote.start(
        "crash-script", path=str(trace_dir / "store.pkl"), function=None, k=0, mode="before", script=script
    )
    lines, status = zygote.lines_until_exit(pid)
    lines = early + lines
    if status != 0:
        report.problems.append(f"uncounted run failed: status {status}: {lines[-5:]}")
        return report
    trace = [json.loads(line[len("call ") :]) for line in lines if line.startswith("call ")]
    for function in CRASH_FUNCTIONS:
        report.calls[function] = sum(1 for entry in trace if entry["function"] == function)
    report.commits = sum(1 for entry in trace if entry.get("commit"))
    run = 0
    for function in CRASH_FUNCTIONS:
        calls = [entry for entry in trace if entry["function"] == function]
        for k, entry in enumerate(calls, start=1):
            for mode in modes:
                run += 1
                if limit is not None and run > limit:
                    return report
                problem = _crash_once(
                    directory / f"{function}-{k}-{mode}", zygote, function, k, mode, entry, states, script
                )
                report.crash_points += 1
                if problem:
                    report.problems.append(f"{function} #{k} ({mode}): {problem}")
    # The uncounted run's own file is the final state.
    if CrewTrainingHandler(trace_dir / "store.pkl").load() != states[-1]:
        report.problems.append("uncounted run did not end in the final state")
    return report


def _crash_once(
    run_dir: Path,
    zygote: Zygote,
    function: str,
    k: int,
    mode: str,
    entry: dict[str, Any],
    states: list[Any],
    script: str,
) -> str | None:
    from crewtrain_nb import CrewTrainingHandler, StoreError

    run_dir.mkdir()
    path = run_dir / "store.pkl"
    pid, early = zygote.start("crash-script", path=str(path), function=function, k=k, mode=mode, script=script)
    lines, status = zygote.lines_until_exit(pid)
    lines = early + lines
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 77):
        return f"child did not die at the hook (status {status}, last lines {lines[-3:]})"
    started = [int(line.split()[1]) for line in lines if line.startswith("op ")]
    operation = started[-1] if started else 0
    if operation != entry["operation"]:
        return f"died in operation {operation}, the trace said {entry['operation']}"
    # Dying after os.replace returned (or at the directory fsync that follows it) leaves the new file; so does
    # dying after a tail's commit byte was written (or at the sync that follows it).
    replaced = entry["replaced"] or (mode == "after" and (function == "replace" or bool(entry.get("commit"))))
    expected = states[operation + 1] if replaced else states[operation]
    leftovers = temp_files(run_dir)
    if len(leftovers) > 1:
        return f"{len(leftovers)} temporary files after one death"
    try:
        loaded = CrewTrainingHandler(path).load()
    except StoreError as exc:
        return f"file does not load: {exc}"
    if loaded != expected:
        other = "after" if loaded == states[operation + 1] else "before" if loaded == states[operation] else "neither"
        return f"file holds the state {other} operation {operation}, expected {'after' if replaced else 'before'}"
    writer = CrewTrainingHandler(path)
    writer.save(loaded)  # the next writer sweeps what the dead one left
    if temp_files(run_dir):
        return f"temporary files left after the next write: {temp_files(run_dir)}"
    if CrewTrainingHandler(path).load() != expected:
        return "the next write changed the data"
    return None


# -- crash at every step and I/O faults, SQLite: at the system calls SQLite's C code makes ------------------

#: The system calls whose k-th call kills (or fails) a SQLite child: everything SQLite writes goes
#: through ``pwrite64`` and everything it makes durable through ``fdatasync``/``fsync``.
SQLITE_IO_CALLS = ("pwrite64", "fdatasync", "fsync")


def strace_available() -> str | None:
    """Why the system-call tests cannot run here (``None``: they can): they need strace allowed to attach."""
    import shutil

    strace = shutil.which("strace")
    if strace is None:
        return "strace is not installed"
    probe = subprocess.run(
        [strace, "-qq", "-o", "/dev/null", "-e", "trace=getpid", "-e", "inject=getpid:retval=7", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()[-300:]}"
    return None


class Tracer:
    """``strace -p`` attached to a zygote child that waits for a go-file before it does anything.

    SQLite's I/O happens in C, out of reach of Python hooks, so the kill or the
    error is injected by the kernel-level tracer at the k-th system call.
    """

    def __init__(self, pid: int, go: Path, arguments: list[str], output: str = "/dev/null") -> None:
        import shutil

        self.go = go
        self.process = subprocess.Popen(
            [shutil.which("strace") or "strace", "-p", str(pid), "-o", output, *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.process.stderr is not None
        line = LineReader(self.process.stderr).readline(30.0)
        if line is None or "attached" not in line:
            raise RuntimeError(f"strace did not attach to {pid}: {line}")
        go.touch()  # the child starts its writes only now, with the tracer in place

    def wait(self) -> None:
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def traced_run(
    zygote: Zygote, run_dir: Path, strace_arguments: list[str], *, script: str, output: str = "/dev/null"
) -> tuple[list[str], int]:
    """Run ``workers.traced_script`` on ``run_dir/store.db`` under strace; its output lines and wait status."""
    go = run_dir / "go"
    pid, early = zygote.start("traced-script", path=str(store_file("sqlite", run_dir)), go=str(go), script=script)
    tracer = Tracer(pid, go, strace_arguments, output)
    lines, status = zygote.lines_until_exit(pid)
    tracer.wait()
    return early + lines, status


def sqlite_leftovers(directory: Path) -> list[str]:
    """Files beside a closed SQLite store that should not be there: -wal, -shm, journals, temporary files."""
    return sorted(name for name in os.listdir(directory) if name.endswith(("-wal", "-shm", "-journal", TEMP_SUFFIX)))


def check_sqlite_file(path: Path, allowed: list[Any]) -> tuple[str | None, int | None]:
    """Open the store after a death: ``(problem, index in allowed of the state found)``.

    The database must pass SQLite's integrity check, load as one of
    ``allowed``, take the next write, and leave no -wal/-shm once closed.
    """
    import sqlite3

    from crewtrain_nb import StoreError

    handler = make_store("sqlite", path)
    try:
        loaded = handler.load()
    except StoreError as exc:
        return f"does not load: {exc}", None
    finally:
        handler.close()
    if loaded not in allowed:
        return f"holds neither allowed state: {str(loaded)[:200]}", None
    found = allowed.index(loaded)
    if path.exists():
        with contextlib.closing(sqlite3.connect(path)) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            return f"integrity check: {verdict}", found
    writer = make_store("sqlite", path)
    writer.save(loaded)  # the next writer goes on from the survivor
    writer.close()
    reader = make_store("sqlite", path)
    again = reader.load()
    reader.close()
    if again != loaded:
        return "the next write changed the data", found
    if sqlite_leftovers(path.parent):
        return f"files left once closed: {sqlite_leftovers(path.parent)}", found
    return None, found


@dataclass
class SQLiteCrashReport:
    """What the SQLite crash-at-every-system-call run found."""

    calls: dict[str, int] = field(default_factory=dict)
    #: How many of the ``pwrite`` calls were a tail's commit byte.
    commits: int = 0
    crash_points: int = 0
    #: How many deaths left the state before the interrupted operation, and how many the state after it.
    before: int = 0
    after: int = 0
    problems: list[str] = field(default_factory=list)


def _trace_calls(trace_file: Path) -> list[dict[str, Any]]:
    """The I/O calls of a trace, in order, each with the operation that made it (from the ``op N`` markers)."""
    calls: list[dict[str, Any]] = []
    operation = -1
    for line in trace_file.read_text().splitlines():
        name = line.split("(", 1)[0]
        if name == "write" and '"op ' in line:
            operation = int(line.split('"op ', 1)[1].split("\\", 1)[0])
        elif name == "write" and '"outcome ' in line:
            operation += 1  # the write returned: what follows is the handler's close
        elif name in SQLITE_IO_CALLS:
            calls.append({"function": name, "operation": operation})
    return calls


def run_sqlite_crash_points(directory: Path, *, zygote: Zygote, limit: int | None = None) -> SQLiteCrashReport:
    """SIGKILL a child running :data:`CRASH_SCRIPT` on SQLite at each of its ``pwrite64``/``fdatasync``/``fsync``.

    An untouched run under strace records the calls and the operation making
    each. Then, for every function and every ``k``, a fresh child replays the
    script and strace kills it on entering its k-th call of that function
    (the call does not happen; dying just after call k is dying just before
    the next one). The database must then open, pass SQLite's integrity check
    and hold exactly the state before or after the interrupted operation.
    """
    report = SQLiteCrashReport()
    states = script_states()
    trace_dir = directory / "trace"
    trace_dir.mkdir()
    trace_file = directory / "trace.txt"
    traced = ",".join(("write", *SQLITE_IO_CALLS))
    lines, status = traced_run(
        zygote, trace_dir, ["-e", f"trace={traced}", "-e", "signal=none"], script="crash", output=str(trace_file)
    )
    if status != 0:
        report.problems.append(f"untouched run failed: status {status}: {lines[-5:]}")
        return report
    trace = _trace_calls(trace_file)
    problem, _ = check_sqlite_file(store_file("sqlite", trace_dir), [states[-1]])
    if problem:
        report.problems.append(f"untouched run: {problem}")
    for function in SQLITE_IO_CALLS:
        calls = [entry for entry in trace if entry["function"] == function]
        report.calls[function] = len(calls)
        for k, entry in enumerate(calls, start=1):
            if limit is not None and report.crash_points >= limit:
                return report
            run_dir = directory / f"{function}-{k}"
            run_dir.mkdir()
            inject = ["-e", f"trace={function}", "-e", f"inject={function}:signal=KILL:when={k}"]
            lines, status = traced_run(zygote, run_dir, inject, script="crash")
            report.crash_points += 1
            where = f"{function} #{k}"
            if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
                report.problems.append(f"{where}: child not killed at the call (status {status}, {lines[-3:]})")
                continue
            started = [int(line.split()[1]) for line in lines if line.startswith("op ")]
            operation = started[-1] if started else 0
            if operation != entry["operation"]:
                report.problems.append(f"{where}: died in operation {operation}, the trace said {entry['operation']}")
                continue
            problem, found = check_sqlite_file(
                store_file("sqlite", run_dir), [states[operation], states[operation + 1]]
            )
            if found == 0:
                report.before += 1
            elif found == 1:
                report.after += 1
            if problem:
                report.problems.append(f"{where} (operation {operation}): {problem}")
    return report


@dataclass
class SQLiteFaultReport:
    """What injecting I/O errors into SQLite's system calls found: one line per injected fault."""

    faults: int = 0
    #: ``"<outcome> (<phase>)"``: outcome ``StoreWriteError`` or ``done``; phase ``write`` (during the write
    #: call) or ``close`` (the checkpoint when the handler closes, after the write returned).
    outcomes: dict[str, int] = field(default_factory=dict)
    #: Faults during the write that SQLite got past (the write succeeded; the data checked is the new one).
    recovered: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


#: The writes faulted one at a time, by name: ``(operation, arguments)`` as in :data:`CRASH_SCRIPT`.
FAULT_WRITES: dict[str, tuple[str, list[Any]]] = {
    "append": ("append", [77, "agent-x", {"initial_output": "new"}]),
    "save_trained_data": ("save_trained_data", ["Writer", {"quality": 9.0}]),
    "save": ("save", [{"replaced": {0: {"loss": 1.0}}}]),
    "clear": ("clear", []),
    "batch": ("batch", [[0, "agent-y", {"loss": 1.0}], [1, "agent-y", {"loss": 0.5}]]),
}
FAULT_ERRORS = ("EIO", "ENOSPC")


def run_sqlite_faults(directory: Path, *, zygote: Zygote) -> SQLiteFaultReport:
    """Make the k-th ``pwrite64``/``fdatasync`` of one write fail with EIO or ENOSPC, for every k it makes.

    The store holds :func:`crewtrain_nb.demo.make_training_data` data and is
    closed (everything in the main file) before each child. The failing write
    must raise :class:`StoreWriteError` naming the file (or succeed, if SQLite
    recovered by itself), and the database must afterwards hold the state
    before the write, or after it if the write reported success.
    """
    from crewtrain_nb.demo import make_training_data

    report = SQLiteFaultReport()
    original = make_training_data(agents=2, iterations=3, seed=4)
    for name, (operation, arguments) in FAULT_WRITES.items():
        after = apply_operation(original, operation, arguments)
        # The calls this write makes, from an untouched traced run.
        trace_dir = directory / f"{name}-trace"
        trace_dir.mkdir()
        _fill(trace_dir, original)
        trace_file = directory / f"{name}-trace.txt"
        traced = ",".join(("write", *SQLITE_IO_CALLS))
        traced_run(zygote, trace_dir, ["-e", f"trace={traced}"], script=name, output=str(trace_file))
        trace = _trace_calls(trace_file)
        for function in SQLITE_IO_CALLS:
            calls = [entry for entry in trace if entry["function"] == function]
            phases = ["write" if entry["operation"] == 0 else "close" for entry in calls]
            for k, phase in enumerate(phases, start=1):
                for error in FAULT_ERRORS if function == "pwrite64" else ("EIO",):
                    run_dir = directory / f"{name}-{function}-{k}-{error}"
                    run_dir.mkdir()
                    path = _fill(run_dir, original)
                    inject = ["-e", f"trace={function}", "-e", f"inject={function}:error={error}:when={k}"]
                    lines, status = traced_run(zygote, run_dir, inject, script=name)
                    report.faults += 1
                    where = f"{name}: {error} at {function} #{k} ({phase})"
                    outcome = next((line for line in lines if line.startswith("outcome ")), "")
                    kind = outcome.split()[1] if outcome else f"no outcome (status {status})"
                    label = f"{kind} ({phase})"
                    report.outcomes[label] = report.outcomes.get(label, 0) + 1
                    if kind == "done" and phase == "write":
                        report.recovered.append(where)
                    if kind == "done":
                        expected = [after]
                    elif kind == "StoreWriteError" and str(path) in outcome:
                        expected = [original]
                    else:
                        report.problems.append(f"{where}: {outcome or lines[-3:]}")
                        continue
                    problem, _ = check_sqlite_file(path, expected)
                    if problem:
                        report.problems.append(f"{where} ({kind}): {problem}")
    return report


def _fill(run_dir: Path, data: dict[Any, Any]) -> Path:
    path = store_file("sqlite", run_dir)
    handler = make_store("sqlite", path)
    handler.save(data)
    handler.close()
    return path


# -- kill -9 soak ---------------------------------------------------------------------------


@dataclass
class SoakReport:
    kills: int = 0
    acknowledged: int = 0
    lost: int = 0
    problems: list[str] = field(default_factory=list)
    #: The store file's inodes seen after the kills: a full rewrite makes a new one, a tail keeps it.
    inodes: set[int] = field(default_factory=set)


def run_kill_soak(
    directory: Path,
    *,
    zygote: Zygote,
    kills: int,
    seed: int = 2026,
    max_delay: float = 0.05,
    backend: str = "pickle",
) -> SoakReport:
    """SIGKILL an appending child ``kills`` times; after each kill every acknowledged record must load."""
    from crewtrain_nb import StoreError

    def make(path: Path) -> Any:
        return make_store(backend, path)

    rng = random.Random(seed)
    path = store_file(backend, directory, "soak")
    report = SoakReport()
    acknowledged: set[int] = set()
    next_iteration = 0
    for _ in range(kills):
        pid, early = zygote.start(
            "append", path=str(path), agent="agent", start=next_iteration, count=1_000_000, backend=backend
        )
        lines = list(early)
        # Let it be appending, then kill it at a random moment.
        while not any(line.startswith("ack ") for line in lines):
            lines.append(zygote.next_line())
        time.sleep(rng.uniform(0.0, max_delay))
        os.kill(pid, signal.SIGKILL)
        more, status = zygote.lines_until_exit(pid)
        lines += more
        if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
            report.problems.append(f"child {pid} ended with status {status}, not SIGKILL")
        report.kills += 1
        acknowledged.update(int(line.split()[1]) for line in lines if line.startswith("ack "))
        try:
            reader = make(path)
            stored = set(reader.load().get("agent", {}))
            reader.close()
        except StoreError as exc:
            report.problems.append(f"after kill {report.kills}: {exc}")
            break
        with contextlib.suppress(OSError):
            report.inodes.add(os.stat(path).st_ino)
        missing = acknowledged - stored
        if missing:
            report.problems.append(f"after kill {report.kills}: lost {sorted(missing)[:5]}")
        report.lost = max(report.lost, len(missing))
        next_iteration = max(stored | acknowledged) + 1
    report.acknowledged = len(acknowledged)
    writer = make(path)
    writer.append(next_iteration, "agent", {})
    if temp_files(directory):
        report.problems.append(f"temporary files pile up: {temp_files(directory)}")
    return report


# -- hostile pickles --------------------------------------------------------------------------


def audit_hostile_payloads(*, timeout: float = 240.0) -> list[dict[str, Any]]:
    """Load every payload of :mod:`hostile_corpus` in a fresh child with an audit hook; return its findings."""
    with tempfile.TemporaryDirectory() as directory:
        result = subprocess.run(
            python_command("audit-hostile", directory), capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"audit child failed ({result.returncode}): {result.stderr[-3000:]}")
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


# -- fuzzing -------------------------------------------------------------------------------------


def seed_stores() -> list[bytes]:
    """Valid store files to mutate: the demo generators through the handler, plus plain pickles of each protocol."""
    import numpy as np

    stores = _demo_store_files("pickle")
    mixed = {"a": {0: {"x": 1.5, "t": (1, "two"), "s": {3}, "b": b"\x00\x01", "n": None, "big": 2**70}}}
    arrays = {"w": np.arange(4, dtype=np.float32), "o": np.array([1, "x"], dtype=object), "s": np.int64(3)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        stores.append(pickle.dumps(mixed, protocol=protocol))
        stores.append(pickle.dumps(arrays, protocol=protocol))
    return stores


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random mutation: byte flips, truncation, insertion, deletion, splice or a length field blown up."""
    kind = rng.randrange(7)
    buffer = bytearray(data)
    if kind == 0 and buffer:  # flip 1-4 bytes
        for _ in range(rng.randint(1, 4)):
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
    elif kind == 1:  # truncate
        del buffer[rng.randrange(len(buffer) + 1) :]
    elif kind == 2:  # insert random bytes
        at = rng.randrange(len(buffer) + 1)
        buffer[at:at] = rng.randbytes(rng.randint(1, 8))
    elif kind == 3 and buffer:  # delete a span
        at = rng.randrange(len(buffer))
        del buffer[at : at + rng.randint(1, 8)]
    elif kind == 4:  # splice: our head, another place's tail
        cut, other = rng.randrange(len(buffer) + 1), rng.randrange(len(buffer) + 1)
        buffer = buffer[:cut] + buffer[other:]
    elif kind == 5:  # a huge declared length: 0xff bytes after an opcode
        at = rng.randrange(len(buffer) + 1)
        buffer[at:at] = bytes([rng.choice(b"BCTXV\x8d\x8e\x95\x96")]) + b"\xff" * rng.choice((1, 4, 8))
    else:  # random bytes, sometimes behind a protocol header
        head = bytes([0x80, rng.randrange(6)]) if rng.random() < 0.5 else b""
        return head + rng.randbytes(rng.randint(0, 64))
    return bytes(buffer)


def seed_databases() -> list[bytes]:
    """Valid SQLite stores to mutate: the demo generators through the SQLite handler, closed (one file each)."""
    return _demo_store_files("sqlite")


def _demo_store_files(backend: str) -> list[bytes]:
    """The bytes of small demo stores (training data, trained agents, metrics) written by ``backend``'s handler."""
    from crewtrain_nb.demo import make_metrics_data, make_trained_agents_data, make_training_data

    stores: list[bytes] = []
    with tempfile.TemporaryDirectory() as directory:
        for index, data in enumerate(
            (
                make_training_data(agents=2, iterations=3, seed=3),
                make_trained_agents_data(seed=3),
                make_metrics_data(iterations=3, seed=3),
            )
        ):
            path = store_file(backend, directory, f"seed{index}")
            handler = make_store(backend, path)
            handler.save(data)
            handler.append(9, "extra", {"loss": 0.5})
            handler.close()  # SQLite: the last connection checkpoints, so the whole store is in this one file
            stores.append(Path(path).read_bytes())
    return stores


#: SQLite's page size for the stores the handler writes (its default).
SQLITE_PAGE = 4096


def mutate_database(data: bytes, rng: random.Random) -> bytes:
    """One random mutation of a database file: byte flips (anywhere, in the header, in a page's cells),
    truncation, a page zeroed or filled with noise, a page copied over another."""
    if not data:  # truncated to nothing before: start again from random bytes
        return rng.randbytes(rng.randint(0, 200))
    kind = rng.randrange(6)
    buffer = bytearray(data)
    pages = max(1, len(buffer) // SQLITE_PAGE)
    page = rng.randrange(pages) * SQLITE_PAGE
    if kind == 0 and buffer:  # flip 1-8 bytes anywhere
        for _ in range(rng.randint(1, 8)):
            buffer[rng.randrange(len(buffer))] = rng.randrange(256)
    elif kind == 1:  # the 100-byte file header: page size, counts, schema cookie, WAL flags
        for _ in range(rng.randint(1, 3)):
            buffer[rng.randrange(min(100, len(buffer)))] = rng.randrange(256)
    elif kind == 2:  # truncate, at a page boundary or anywhere
        cut = rng.randrange(pages + 1) * SQLITE_PAGE if rng.random() < 0.5 else rng.randrange(len(buffer) + 1)
        del buffer[cut:]
    elif kind == 3:  # a page zeroed or replaced by noise
        noise = bytes(SQLITE_PAGE) if rng.random() < 0.5 else rng.randbytes(SQLITE_PAGE)
        buffer[page : page + SQLITE_PAGE] = noise[: len(buffer[page : page + SQLITE_PAGE])]
    elif kind == 4:  # one page copied over another (a misplaced write)
        source = rng.randrange(pages) * SQLITE_PAGE
        buffer[page : page + SQLITE_PAGE] = bytes(buffer[source : source + SQLITE_PAGE])
    else:  # the cell content area at the end of a page: row lengths, pickled values
        end = min(len(buffer), page + SQLITE_PAGE)
        for _ in range(rng.randint(1, 4)):
            buffer[rng.randrange(max(page, end - 1024), end)] = rng.randrange(256)
    return bytes(buffer)


def fuzz_inputs(count: int, *, seed: int, backend: str = "pickle") -> Iterator[bytes]:
    """``count`` deterministic fuzz inputs: mutated seed stores (one to three mutations each) and random bytes."""
    rng = random.Random(seed)
    seeds, mutation = (seed_stores(), mutate) if backend == "pickle" else (seed_databases(), mutate_database)
    for _ in range(count):
        data = rng.choice(seeds)
        for _ in range(rng.choice((1, 1, 2, 3))):
            data = mutation(data, rng)
        yield data


def load_outcome(path: Path, data: bytes, backend: str = "pickle") -> str:
    """Write ``data`` to ``path`` and load it: ``"ok"``, the ``StoreError`` class name, or ``"ESCAPED ..."``.

    For a store that ``supports_lazy_reads`` (SQLite) the lazy reads (``agents``, ``iterations``, ``get``, ``len``) run
    too, whatever ``load`` did; anything but a StoreError from them escapes.
    """
    from crewtrain_nb import StoreError

    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()  # nothing of the previous input may leak into this one
    path.write_bytes(data)
    # The loader is what is fuzzed: no retrying of a file that does not unpickle (no writer is active here).
    handler = make_store(backend, path, **({"read_retry_timeout": 0} if backend == "pickle" else {}))
    try:
        try:
            handler.load()
        except StoreError as exc:
            outcome = type(exc).__name__
        except BaseException as exc:  # noqa: BLE001 - anything else is the finding
            return f"ESCAPED {type(exc).__name__}: {exc}"
        else:
            outcome = "ok"
        if handler.supports_lazy_reads:  # reads that query the file have their own ways to meet damage
            try:
                for agent in [agent for agent in handler.agents() if isinstance(agent, str)][:3]:
                    iterations = handler.iterations(agent)
                    if iterations:
                        handler.get(agent, iterations[-1])
                len(handler)
            except StoreError:
                pass
            except BaseException as exc:  # noqa: BLE001 - the finding
                return f"ESCAPED from a lazy read {type(exc).__name__}: {exc}"
        return outcome
    finally:
        handler.close()


@dataclass
class FuzzReport:
    inputs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def run_fuzz(
    count: int, *, seed: int = 8, heartbeat_timeout: float = 30.0, chunk: int = 500, backend: str = "pickle"
) -> FuzzReport:
    """Load ``count`` fuzz inputs in a child, under an address-space limit, with a watchdog.

    The child prints a JSON heartbeat every ``chunk`` inputs; silence for
    ``heartbeat_timeout`` seconds means a hang, and the child is killed.
    """
    report = FuzzReport()
    with (
        tempfile.TemporaryDirectory() as progress_dir,
        subprocess.Popen(
            python_command("fuzz", str(count), str(seed), str(chunk), progress_dir, backend),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as child,
    ):
        lines = LineReader(child.stdout)
        while True:
            try:
                line = lines.readline(heartbeat_timeout)
            except TimeoutError:
                child.kill()
                report.problems.append(f"hang: no progress for {heartbeat_timeout} s after {report.inputs} inputs")
                break
            if line is None:
                break
            message = json.loads(line)
            report.inputs = message["done"]
            for outcome, number in message["outcomes"].items():
                report.outcomes[outcome] = report.outcomes.get(outcome, 0) + number
            report.problems.extend(message["escaped"])
        child.wait()
        if child.returncode != 0:
            err = child.stderr.read().decode(errors="replace") if child.stderr else ""
            at = Path(progress_dir, "fuzz-progress").read_bytes().decode().strip()
            report.problems.append(
                f"fuzz child exited with {child.returncode} at input {at} (seed {seed}): {err[-2000:]}"
            )
    return report


#: The one memory bomb safe loading does not stop yet (see test_fuzz_loader.py).
MEMO_INDEX_PAYLOAD = "LONG_BINPUT memo index 2**25"


def huge_length_payloads() -> dict[str, bytes]:
    """Tiny pickles that declare gigantic lengths or sizes (assembled from pickle's opcode constants)."""
    proto4 = pickle.PROTO + bytes([4])
    proto5 = pickle.PROTO + bytes([5])
    terabyte = (2**40).to_bytes(8, "little")
    return {
        "BINBYTES8 of 2**40": proto4 + pickle.BINBYTES8 + terabyte + b"x" * 16 + pickle.STOP,
        "BINUNICODE8 of 2**40": proto4 + pickle.BINUNICODE8 + terabyte + b"x" * 16 + pickle.STOP,
        "BYTEARRAY8 of 2**40": proto5 + pickle.BYTEARRAY8 + terabyte + b"x" * 16 + pickle.STOP,
        "FRAME of 2**40": proto4 + pickle.FRAME + terabyte + pickle.NONE + pickle.STOP,
        "BINBYTES of 2**32-1": proto4 + pickle.BINBYTES + b"\xff" * 4 + b"x" * 16 + pickle.STOP,
        "BINBYTES8 of 2**29 (fits the limit)": proto4 + pickle.BINBYTES8 + (2**29).to_bytes(8, "little") + pickle.STOP,
        "LONG4 of 2**31-1": proto4 + pickle.LONG4 + (2**31 - 1).to_bytes(4, "little") + b"\x01" + pickle.STOP,
        "bytearray(2**29) via REDUCE": proto4
        + pickle.SHORT_BINUNICODE
        + bytes([8])
        + b"builtins"
        + pickle.SHORT_BINUNICODE
        + bytes([9])
        + b"bytearray"
        + pickle.STACK_GLOBAL
        + pickle.BININT
        + (2**29).to_bytes(4, "little")
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.STOP,
        "lists nested 200,000 deep": proto4 + pickle.EMPTY_LIST * 200_000 + pickle.APPEND * 199_999 + pickle.STOP,
        # CPython's C unpickler grows its memo table to 2 x index entries (16 bytes each) and zeroes it.
        MEMO_INDEX_PAYLOAD: proto4 + pickle.NONE + pickle.LONG_BINPUT + (2**25).to_bytes(4, "little") + pickle.STOP,
    }


def check_huge_lengths(*, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Load :func:`huge_length_payloads` in a child under ``RLIMIT_AS``: outcome and memory growth per payload."""
    result = subprocess.run(python_command("huge-lengths"), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"huge-lengths child failed ({result.returncode}): {result.stderr[-3000:]}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


# -- concurrency with a reader ------------------------------------------------------------------


@dataclass
class ConcurrencyReport:
    writers: int
    appends: int
    records: int = 0
    reader_loads: int = 0
    problems: list[str] = field(default_factory=list)


def run_writers_and_reader(
    directory: Path, *, writers: int = 8, appends: int = 200, backend: str = "pickle"
) -> ConcurrencyReport:
    """``writers`` processes append ``appends`` records each while a reader process loads continuously."""
    path = store_file(backend, directory, "shared")
    stop = directory / "stop"
    report = ConcurrencyReport(writers, appends)
    reader = subprocess.Popen(
        python_command("read-loop", str(path), str(stop), backend),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    procs = [
        subprocess.Popen(
            python_command("append", str(path), f"writer-{n}", str(appends), "0", backend),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            report.problems.append(f"writer failed: {err[-1000:]}")
    stop.touch()
    out, err = reader.communicate(timeout=120)
    if reader.returncode != 0:
        report.problems.append(f"reader failed ({reader.returncode}): {err[-2000:]}")
    else:
        summary = json.loads(out.strip().splitlines()[-1])
        report.reader_loads = summary["loads"]
        report.problems.extend(summary["problems"])
    final = make_store(backend, path)
    data = final.load()
    final.close()
    report.records = sum(len(records) for records in data.values())
    for n in range(writers):
        if sorted(data.get(f"writer-{n}", {})) != list(range(appends)):
            report.problems.append(f"writer-{n} has {len(data.get(f'writer-{n}', {}))} of {appends} records")
    if temp_files(directory):
        report.problems.append(f"temporary files left: {temp_files(directory)}")
    return report


@contextlib.contextmanager
def fresh_directory(prefix: str) -> Iterator[Path]:
    """A temporary directory for scripts (tests use ``tmp_path``)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        yield Path(directory)
