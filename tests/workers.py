"""Child processes for the store tests: run as ``python tests/workers.py COMMAND ...``.

Real processes, not threads: the point is to prove cross-process locking and
crash safety on real files.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def append_many(path: str, agent: str, count: int, start: int = 0, backend: str = "pickle") -> None:
    """Append ``count`` records and print ``ack N`` after each one is stored."""
    from reliability_lib import make_store

    handler = make_store(backend, path)
    for iteration in range(start, start + count):
        handler.append(iteration, agent, {"value": iteration, "text": "x" * 200})
        sys.stdout.write(f"ack {iteration}\n")
        sys.stdout.flush()


def hold_lock(path: str, seconds: float) -> None:
    """Hold the store's lock for ``seconds``; print ``locked`` once it is held."""
    from crewtrain_nb import CrewTrainingHandler

    handler = CrewTrainingHandler(path)
    with handler.batch():
        sys.stdout.write("locked\n")
        sys.stdout.flush()
        time.sleep(seconds)


def measure_peak(path: str, operation: str) -> None:
    """Print ``{"peak": bytes}``: the most memory Python held during one read of the store.

    Run in a fresh process so nothing else is cached; the handler is opened (and
    the database connected) before tracing starts.
    """
    import json
    import tracemalloc

    from crewtrain_nb import CrewTrainingHandler

    handler = CrewTrainingHandler(path)
    agent = handler.agents()[0]
    reads = {
        "load": handler.load,
        "get": lambda: handler.get(agent, 5000),
        "agents": handler.agents,
        "len": lambda: len(handler),
        "stats": handler.stats,
        "iterations": lambda: handler.iterations(agent),
        "entry": lambda: handler.entry(agent),
        "records": lambda: sum(1 for _ in handler.records()),
    }
    tracemalloc.start()
    reads[operation]()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sys.stdout.write(json.dumps({"peak": peak}) + "\n")


def crash_script(path: str, function: str | None, k: int, mode: str, script: str = "crash") -> None:
    """Run ``reliability_lib.SCRIPTS[script]``; ``os._exit(77)`` at the ``k``-th call of ``os.<function>``.

    The hooks wrap ``os.write``, ``os.fsync`` and ``os.replace`` in this
    process before the handler is used (the store calls them through the
    ``os`` module). With ``function=None`` nothing dies and every call is
    printed as ``call {json}``: the trace the parent counts.
    """
    from reliability_lib import CRASH_FUNCTIONS, SCRIPTS, run_operation

    from crewtrain_nb import CrewTrainingHandler

    where = {"operation": 0, "replaced": False}
    counts = dict.fromkeys(CRASH_FUNCTIONS, 0)

    def hook(name: str, real: Any) -> Any:
        def hooked(*args: Any) -> Any:
            counts[name] += 1
            hit = name == function and counts[name] == k
            # A tail commits by writing one MARK byte over the old STOP (store/_tail.py).
            commit = name == "pwrite" and bytes(args[1]) == b"("
            if function is None:
                sys.stdout.write("call " + json.dumps({"function": name, "commit": commit, **where}) + "\n")
            if hit and mode == "before":
                sys.stdout.flush()
                os._exit(77)
            result = real(*args)
            if name == "replace" or commit:
                where["replaced"] = True
            if hit and mode == "after":
                sys.stdout.flush()
                os._exit(77)
            return result

        return hooked

    for name in CRASH_FUNCTIONS:
        setattr(os, name, hook(name, getattr(os, name)))
    handler = CrewTrainingHandler(path)
    for index, (operation, arguments) in enumerate(SCRIPTS[script]):
        where.update(operation=index, replaced=False)
        sys.stdout.write(f"op {index}\n")
        sys.stdout.flush()
        run_operation(handler, operation, arguments)


def traced_script(path: str, go: str, script: str) -> None:
    """Wait until ``go`` exists (strace attaches meanwhile), then write to the SQLite store at ``path``.

    ``script="crash"`` runs :data:`reliability_lib.CRASH_SCRIPT`; any other
    name runs that one of :data:`reliability_lib.FAULT_WRITES` and prints
    ``outcome done`` or ``outcome <StoreError class> <message>``. ``op N`` is
    printed (one ``write`` system call) before operation N, so a trace shows
    which operation made each call.
    """
    from reliability_lib import CRASH_SCRIPT, FAULT_WRITES, make_store, run_operation

    from crewtrain_nb import StoreError

    while not os.path.exists(go):
        time.sleep(0.001)
    handler = make_store("sqlite", path)
    operations = CRASH_SCRIPT if script == "crash" else [FAULT_WRITES[script]]
    for index, (operation, arguments) in enumerate(operations):
        sys.stdout.write(f"op {index}\n")
        sys.stdout.flush()
        if script == "crash":
            run_operation(handler, operation, arguments)
            continue
        try:
            run_operation(handler, operation, arguments)
        except StoreError as exc:
            sys.stdout.write(f"outcome {type(exc).__name__} {exc}\n")
        else:
            sys.stdout.write("outcome done\n")
    sys.stdout.flush()
    handler.close()


ZYGOTE_JOBS = {
    "append": lambda job: append_many(job["path"], job["agent"], job["count"], job["start"], job["backend"]),
    "crash-script": lambda job: crash_script(
        job["path"], job["function"], job["k"], job["mode"], job.get("script", "crash")
    ),
    "traced-script": lambda job: traced_script(job["path"], job["go"], job["script"]),
}


def zygote() -> None:
    """Import the package once, then fork one child per request read from stdin (see ``reliability_lib.Zygote``)."""
    import crewtrain_nb  # noqa: F401 - the import is the point: children start with it done

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write("zygote " + json.dumps(message) + "\n")
        sys.stdout.flush()

    say({"ready": True})
    for line in sys.stdin:
        job = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                ZYGOTE_JOBS[job["run"]](job)
            except BaseException as exc:  # noqa: BLE001 - report and die like a crashed child
                sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
                status = 1
            finally:
                sys.stdout.flush()
                os._exit(status)
        say({"pid": pid})
        _, status = os.waitpid(pid, 0)
        say({"exit": pid, "status": status})


def limit_address_space(extra: int) -> None:
    """Allow this process ``extra`` bytes of address space beyond what it has mapped now."""
    import resource

    with open("/proc/self/status") as status:
        mapped_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = mapped_kb * 1024 + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def audit_hostile(directory: str) -> None:
    """Load every hostile payload under an audit hook; print one JSON finding per payload.

    Audit hooks cannot be removed, hence a process of its own. Only events
    while ``load()`` runs are recorded; reading the store itself (``open`` of
    that path or of its descriptor) is the one thing loading may do, besides
    taking CrewAI's lock for that path (``open`` and ``flock`` of its lock file
    in the temporary directory, before the bytes are read).
    """
    import pickle

    import numpy  # noqa: F401 - imported before the hook, as a notebook would have
    from hostile_corpus import hostile_payloads, register_extension_codes

    from crewtrain_nb import CrewTrainingHandler, StoreError

    register_extension_codes()
    limit_address_space(2 << 30)
    marker = os.path.join(directory, "pwned")
    # Warm up both unpicklers on every protocol, so lazy stdlib imports (codecs) happen before recording.
    warm = os.path.join(directory, "warm.pkl")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for value in ({"a": [1, "x", b"y", {2.5}]}, {"n": numpy.arange(2), "o": numpy.array([1], dtype=object)}):
            with open(warm, "wb") as file:
                pickle.dump(value, file, protocol=protocol)
            CrewTrainingHandler(warm).load()

    recording: list[tuple[str, tuple[Any, ...]]] = []
    active = [False]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if active[0]:
            recording.append((event, args))

    sys.addaudithook(hook)

    def crewai_lock_file(path: str) -> str:
        import hashlib
        import tempfile

        name = f"file:{os.path.realpath(path)}"
        return os.path.join(tempfile.gettempdir(), "crewai:" + hashlib.md5(name.encode()).hexdigest() + ".lock")

    def allowed(event: str, args: tuple[Any, ...], path: str) -> bool:
        if event == "open":
            # The store, its descriptor, or CrewAI's lock file for it.
            return args[0] in (path, crewai_lock_file(path)) or isinstance(args[0], int)
        return event in {"builtins.id", "fcntl.flock"}

    def load_recorded(handler: Any) -> tuple[str, str, str, list[tuple[str, tuple[Any, ...]]]]:
        recording.clear()
        active[0] = True
        try:
            handler.load()
            outcome, message, global_name = "loaded", "", ""
        except StoreError as exc:
            outcome, message, global_name = type(exc).__name__, str(exc), getattr(exc, "global_name", "")
        except BaseException as exc:  # noqa: BLE001 - the finding
            outcome, message, global_name = f"ESCAPED {type(exc).__name__}", str(exc), ""
        finally:
            active[0] = False
        return outcome, message, global_name, list(recording)

    # Positive control: a trusted load of the same kind of payload is seen by the hook.
    control = os.path.join(directory, "control.pkl")
    with open(control, "wb") as file:
        file.write(b"cbuiltins\neval\n(V1 + 1\ntR.")  # protocol 0: GLOBAL, MARK, UNICODE, TUPLE, REDUCE, STOP
    outcome, _, _, events = load_recorded(CrewTrainingHandler(control, trusted=True, add_suffix=False))
    print(json.dumps({"control": True, "outcome": outcome, "events": sorted({event for event, _ in events})}))

    for index, payload in enumerate(hostile_payloads(marker)):
        path = os.path.join(directory, f"payload-{index}.pkl")
        with open(path, "wb") as file:
            file.write(payload.data)
        # The loader is audited, not the retry: a corrupt file is re-read after short sleeps (read_retry_timeout),
        # and which payloads count as corrupt rather than unsafe differs between CPython versions.
        loader = CrewTrainingHandler(path, add_suffix=False, read_retry_timeout=0)
        outcome, message, global_name, events = load_recorded(loader)
        violations = [f"{event} {args!r}"[:300] for event, args in events if not allowed(event, args, path)]
        try:
            CrewTrainingHandler(path, add_suffix=False).append(1, "agent", {})
            append_outcome = "appended"
        except StoreError as exc:
            append_outcome = type(exc).__name__
        with open(path, "rb") as file:
            unchanged = file.read() == payload.data
        print(
            json.dumps(
                {
                    "index": index,
                    "name": payload.name,
                    "protocol": payload.protocol,
                    "expected": payload.expected,
                    "outcome": outcome,
                    "message": message,
                    "global_name": global_name,
                    "path": path,
                    "violations": violations,
                    "append_outcome": append_outcome,
                    "unchanged": unchanged,
                    "marker": os.path.exists(marker),
                }
            ),
            flush=True,
        )


def fuzz(count: int, seed: int, chunk: int, progress_dir: str, backend: str = "pickle") -> None:
    """Load ``count`` deterministic fuzz inputs; print a JSON heartbeat every ``chunk`` inputs."""
    import tempfile
    import warnings

    from reliability_lib import fuzz_inputs, load_outcome, store_file

    warnings.simplefilter("error")  # as under pytest: a warning escaping load() is a finding
    limit_address_space(1 << 30)
    outcomes: dict[str, int] = {}
    escaped: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        path = store_file(backend, directory, "fuzz")
        # The input being loaded, for the parent to name if this process crashes.
        progress = os.open(os.path.join(progress_dir, "fuzz-progress"), os.O_WRONLY | os.O_CREAT, 0o600)
        done = 0
        for done, data in enumerate(fuzz_inputs(count, seed=seed, backend=backend), start=1):
            os.pwrite(progress, b"%12d" % (done - 1), 0)
            outcome = load_outcome(path, data, backend)
            if outcome.startswith("ESCAPED"):
                escaped.append(f"input {done - 1} (seed {seed}): {outcome[:200]}: {data[:300].hex()}")
                outcome = "escaped"
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if done % chunk == 0 or done == count:
                print(json.dumps({"done": done, "outcomes": outcomes, "escaped": escaped[:20]}), flush=True)
                outcomes, escaped = {}, []


def huge_lengths() -> None:
    """Load each tiny pickle that declares a huge length under ``RLIMIT_AS``; print outcome and peak RSS growth."""
    import resource
    import tempfile
    import warnings
    from pathlib import Path

    from reliability_lib import huge_length_payloads

    from crewtrain_nb import CrewTrainingHandler, StoreError

    warnings.simplefilter("error")
    limit_address_space(1 << 30)
    with tempfile.TemporaryDirectory() as directory:
        for name, data in huge_length_payloads().items():
            path = Path(directory) / "huge.pkl"
            path.write_bytes(data)
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            cause = ""
            try:
                CrewTrainingHandler(path).load()
                outcome = "loaded"
            except StoreError as exc:
                outcome = type(exc).__name__
                cause = type(exc.__cause__).__name__ if exc.__cause__ else ""
            except BaseException as exc:  # noqa: BLE001 - the finding
                outcome = f"ESCAPED {type(exc).__name__}"
            growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            seconds = time.perf_counter() - started
            print(
                json.dumps(
                    {
                        "name": name,
                        "outcome": outcome,
                        "cause": cause,
                        "rss_growth_mb": growth_kb / 1024,
                        "seconds": seconds,
                    }
                ),
                flush=True,
            )


def read_loop(path: str, stop: str, backend: str = "pickle") -> None:
    """Load ``path`` until ``stop`` exists; every load must succeed and no record may ever disappear."""
    from reliability_lib import make_store

    handler = make_store(backend, path)
    seen: set[tuple[str, int]] = set()
    loads = changes = 0
    problems: list[str] = []
    finishing = False
    while True:
        finishing = os.path.exists(stop)
        # Alternate the long-lived handler (cache) with a fresh one (a full read every time).
        reader = handler if loads % 2 else make_store(backend, path)
        try:
            data = reader.load()
        except Exception as exc:  # noqa: BLE001 - any error is the finding
            problems.append(f"load {loads}: {type(exc).__name__}: {exc}")
            data = None
        if reader is not handler:
            reader.close()
        loads += 1
        if data is not None:
            records = {(agent, iteration) for agent, iterations in data.items() for iteration in iterations}
            if not seen <= records:
                problems.append(f"load {loads}: {len(seen - records)} records disappeared")
            changes += records != seen
            seen = records
        if finishing:
            break
    print(json.dumps({"loads": loads, "changes": changes, "records": len(seen), "problems": problems[:20]}))


def raw_read_loop(path: str, stop: str) -> None:
    """Read ``path`` without any lock until ``stop`` exists, as a script or CrewAI 0.x would, and check each state.

    Odd reads are plain ``pickle.loads`` of the bytes; even ones a handler taking no lock
    (``crewai_lock=False``) with no retries. Every read must load, every agent's iterations must be
    ``0..k`` (the writers append in order), and no agent may ever lose records. Also counts the reads
    that found bytes after the pickle (a tail written but not yet committed).
    """
    import io
    import pickle

    from crewtrain_nb import CrewTrainingHandler

    handler = CrewTrainingHandler(path, crewai_lock=False, read_retry_timeout=0)
    counts: dict[str, int] = {}
    loads = pending = 0
    problems: list[str] = []
    while True:
        finishing = os.path.exists(stop)
        try:
            if loads % 2:
                with open(path, "rb") as file:
                    blob = file.read()
                buffer = io.BytesIO(blob)
                data = pickle.Unpickler(buffer).load() if blob else {}
                pending += buffer.tell() < len(blob)
            else:
                data = handler.load()
        except FileNotFoundError:
            data = {}
        except Exception as exc:  # noqa: BLE001 - any error is the finding
            problems.append(f"load {loads}: {type(exc).__name__}: {exc}")
            data = None
        loads += 1
        if data is not None:
            for agent, iterations in data.items():
                if list(iterations) != list(range(len(iterations))):
                    problems.append(f"load {loads}: {agent} has iterations {list(iterations)[:5]}... not 0..k")
                if len(iterations) < counts.get(agent, 0):
                    problems.append(f"load {loads}: {agent} went from {counts[agent]} to {len(iterations)} records")
                counts[agent] = len(iterations)
        if finishing:
            break
    print(json.dumps({"loads": loads, "pending": pending, "counts": counts, "problems": problems[:20]}))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "raw-read-loop":
        raw_read_loop(arguments[0], arguments[1])
    elif command == "append":
        path, agent, count, *rest = arguments
        append_many(path, agent, int(count), int(rest[0]) if rest else 0, *rest[1:2])
    elif command == "peak":
        measure_peak(arguments[0], arguments[1])
    elif command == "hold-lock":
        hold_lock(arguments[0], float(arguments[1]))
    elif command == "zygote":
        zygote()
    elif command == "audit-hostile":
        audit_hostile(arguments[0])
    elif command == "fuzz":
        fuzz(int(arguments[0]), int(arguments[1]), int(arguments[2]), *arguments[3:])
    elif command == "huge-lengths":
        huge_lengths()
    elif command == "read-loop":
        read_loop(*arguments)
    else:
        raise SystemExit(f"unknown command {command!r}")
