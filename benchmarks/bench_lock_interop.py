"""What holding CrewAI's lock costs: ``append``, a ``load()`` of a changed file, a cached ``load()``; interop on vs off.

Run: ``.venv/bin/python benchmarks/bench_lock_interop.py [--sizes 100 1000 5000] [--repeats 200]``

Both handlers work on the same file in one process, alternating call by call,
so the two columns see the same machine at the same moment. "on" is the
default (``crewai_lock=True``): ``flock`` on CrewAI's lock file, or
``crewai_core.lock_store`` when crewai is installed in this environment (the
table says which); "off" is ``crewai_lock=False`` (only ``<file>.lock``).
A changed file is made by bumping its modification time between calls (not timed).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_store_append import make_store, record  # noqa: E402

from crewtrain_nb import CrewTrainingHandler  # noqa: E402


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def bump(path: str, counter: list[int]) -> None:
    """Change the file's identity (mtime) without changing its bytes: the next load() reads it again."""
    counter[0] += 1
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + counter[0] * 1000))


def measure(records: int, repeats: int, directory: Path) -> dict[str, tuple[float, float]]:
    import random

    path = str(directory / f"store-{records}.pkl")
    CrewTrainingHandler(path).save(make_store(records))
    handlers = {"on": CrewTrainingHandler(path), "off": CrewTrainingHandler(path, crewai_lock=False)}
    samples: dict[str, dict[str, list[float]]] = {
        operation: {"on": [], "off": []} for operation in ("append", "changed load", "cached load")
    }
    rng = random.Random(1)
    counter = [0]
    for handler in handlers.values():
        handler.load()
    for step in range(repeats):
        for mode in ("on", "off") if step % 2 == 0 else ("off", "on"):
            handler = handlers[mode]
            handler.load()  # warm: the append below re-pickles one agent, as in a training loop
            new = record(rng)
            samples["append"][mode].append(timed(functools.partial(handler.append, 10_000 + step, "agent-0", new)))
            bump(path, counter)
            samples["changed load"][mode].append(timed(handler.load))
            samples["cached load"][mode].append(timed(handler.load))
    return {operation: (median_ms(by["off"]), median_ms(by["on"])) for operation, by in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=200)
    arguments = parser.parse_args()
    backend = "crewai_core.lock_store" if importlib.util.find_spec("crewai_core") else "flock on CrewAI's lock file"
    print(f"CrewAI's lock taken through: {backend}; median of {arguments.repeats} calls each\n")
    print("| records | operation | interop off ms | interop on ms | on / off |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        for records in arguments.sizes:
            for operation, (off, on) in measure(records, arguments.repeats, Path(directory)).items():
                print(f"| {records:,} | {operation} | {off:.3f} | {on:.3f} | {on / off:.2f}x |")


if __name__ == "__main__":
    main()
