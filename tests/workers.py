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


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "append":
        path, agent, count, *rest = arguments
        append_many(path, agent, int(count), int(rest[0]) if rest else 0)
    elif command == "hold-lock":
        hold_lock(arguments[0], float(arguments[1]))
    else:
        raise SystemExit(f"unknown command {command!r}")
