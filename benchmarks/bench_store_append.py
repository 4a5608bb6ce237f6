"""Cost of one append as the store grows: CrewAI's algorithm vs ``append`` vs ``append`` in ``batch()``.

Run: ``.venv/bin/python benchmarks/bench_store_append.py [--sizes 1000 5000 20000] [--appends 30]``

All three run in one process on the same files, so the table compares ratios on
the same machine at the same moment. CrewAI's algorithm is its handler's code
path: ``pickle.load`` the whole file, change the dict, ``pickle.dump`` it in
``"wb"`` mode (no fsync, no lock). Ours includes the lock, fsync of the file
and of the directory, and the atomic rename.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from crewtrain_nb import CrewTrainingHandler

AGENTS = 10


def make_store(records: int, seed: int = 0) -> dict[str, dict[int, dict[str, str]]]:
    """``records`` CrewAI-shaped records of about 1 KB each, spread over ten agents."""
    rng = random.Random(seed)
    data: dict[str, dict[int, dict[str, str]]] = {f"agent-{a}": {} for a in range(AGENTS)}
    for index in range(records):
        data[f"agent-{index % AGENTS}"][index // AGENTS] = record(rng)
    return data


def record(rng: random.Random) -> dict[str, str]:
    return {
        "initial_output": rng.randbytes(200).hex(),
        "human_feedback": rng.randbytes(50).hex(),
        "improved_output": rng.randbytes(220).hex(),
    }


def crewai_append(path: Path, iteration: int, agent: str, new_data: Any) -> None:
    """CrewAI's ``CrewTrainingHandler.append``: load all, modify, dump all in place."""
    with open(path, "rb") as file:
        data = pickle.load(file)
    data.setdefault(agent, {})[iteration] = new_data
    with open(path, "wb") as file:
        pickle.dump(data, file)


def per_append(run: Any, appends: int) -> float:
    times = []
    for n in range(appends):
        start = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(size: int, appends: int, directory: Path) -> dict[str, float]:
    rng = random.Random(size)
    base = make_store(size)
    new_records = [record(rng) for _ in range(1000)]
    start_iteration = size // AGENTS + 1

    crewai_path = directory / f"crewai-{size}.pkl"
    with open(crewai_path, "wb") as file:
        pickle.dump(base, file)
    crewai = per_append(
        lambda n: crewai_append(crewai_path, start_iteration + n, "agent-0", new_records[n % 1000]), appends
    )

    ours_path = directory / f"ours-{size}.pkl"
    handler = CrewTrainingHandler(ours_path)
    handler.save(base)
    handler.load()  # a notebook or a training loop has usually read the store already
    ours = per_append(lambda n: handler.append(start_iteration + n, "agent-0", new_records[n % 1000]), appends)

    start = time.perf_counter()
    with handler.batch():
        for n in range(1000):
            handler.append(start_iteration + appends + n, "agent-1", new_records[n])
    batch_1000 = time.perf_counter() - start
    assert len(handler.load()["agent-1"]) == len(base["agent-1"]) + 1000
    return {
        "size": size,
        "file_mb": os.path.getsize(ours_path) / 1e6,
        "crewai": crewai,
        "ours": ours,
        "batch_1000": batch_1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--appends", type=int, default=30, help="appends timed per size (median taken)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
        rows = [measure(size, args.appends, Path(tmp)) for size in args.sizes]
    print(
        "| records | file MB | CrewAI append ms | our append ms | ours / CrewAI | 1,000 CrewAI appends s* "
        "| 1,000 appends in batch() s | CrewAI / batch |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        crewai_1000 = row["crewai"] * 1000
        print(
            f"| {row['size']:,} | {row['file_mb']:.1f} | {row['crewai'] * 1e3:.2f} | {row['ours'] * 1e3:.2f} "
            f"| {row['ours'] / row['crewai']:.2f}x | {crewai_1000:.1f} | {row['batch_1000']:.3f} "
            f"| {crewai_1000 / row['batch_1000']:.0f}x |"
        )
    print(
        "\n* 1,000 CrewAI appends = 1,000 x its median per-append time at that size "
        "(running them would take minutes and grow the store as it goes)."
    )


if __name__ == "__main__":
    main()
