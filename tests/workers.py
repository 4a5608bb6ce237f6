"""Child processes for the store tests: run as ``python tests/workers.py COMMAND ...``.

Real processes, not threads: the point is to prove cross-process locking and
crash safety on real files.
"""

from __future__ import annotations

import sys
import time


def append_many(path: str, agent: str, count: int, start: int = 0) -> None:
    """Append ``count`` records and print ``ack N`` after each one is stored."""
    from crewtrain_nb import CrewTrainingHandler

    handler = CrewTrainingHandler(path)
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


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "append":
        path, agent, count, *rest = arguments
        append_many(path, agent, int(count), int(rest[0]) if rest else 0)
    elif command == "peak":
        measure_peak(arguments[0], arguments[1])
    elif command == "hold-lock":
        hold_lock(arguments[0], float(arguments[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")
