"""What versions, audit, compression, encryption and fsspec cost per append, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_lifecycle.py [--agents 4] [--iterations 500] [--appends 100]``

A plain ``.pkl`` append is a tail (``store/_tail.py``); the other rows are full
rewrites, as ``tails=False`` shows. The store holds ``agents x iterations`` CrewAI-shaped records (about 370 bytes
each) from the seeded demo generator. Each row appends ``--appends`` records of
about 500 bytes, one locked, fsynced, atomic write each, and reports the mean
cost and the ratio to the plain ``.pkl`` store in the same run, plus the file
size. The variants take turns for ``--rounds`` rounds and the best round counts,
so a noisy neighbour on a shared machine skews no single row. CrewAI's own
algorithm (load, modify, ``pickle.dump`` in ``"wb"``) is the reference line a
user knows.
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from crewtrain_nb import CrewTrainingHandler, RemoteStoreWarning
from crewtrain_nb.demo import make_training_data


def crewai_append(path: str) -> Callable[[int, str, Any], None]:
    """CrewAI's ``CrewTrainingHandler.append``: load the whole file, change it, dump the whole file."""

    def append(iteration: int, agent: str, record: Any) -> None:
        with open(path, "rb") as file:
            data = pickle.load(file)
        data.setdefault(agent, {})[iteration] = record
        with open(path, "wb") as file:
            pickle.dump(data, file)

    return append


def measure(append: Callable[[int, str, Any], None], count: int) -> float:
    """Mean seconds per append over ``count`` appends."""
    record = {"initial_output": "x" * 500, "human_feedback": "looks good"}
    start = time.perf_counter()
    for number in range(count):
        append(100_000 + number, "bench-agent", record)
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--appends", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    data = make_training_data(agents=options.agents, iterations=options.iterations, seed=1)
    records = sum(len(items) for items in data.values())
    key = os.urandom(32)
    variants: list[tuple[str, str, dict[str, Any]]] = [
        ("plain `.pkl`", "t.pkl", {}),
        ("plain `.pkl`, `tails=False` (a full rewrite per append)", "t.pkl", {"tails": False}),
        ("`backups=5`", "t.pkl", {"backups": 5}),
        ("`audit=True`", "t.pkl", {"audit": True}),
        ("`.pkl.gz`", "t.pkl.gz", {}),
        ("`.pkl.bz2`", "t.pkl.bz2", {}),
        ("`.pkl.xz`", "t.pkl.xz", {}),
        ("`key=` (AES-GCM)", "t.pkl", {"key": key}),
        ("`.pkl.gz` + `key=` + `backups=5` + `audit=True`", "t.pkl.gz", {"key": key, "backups": 5, "audit": True}),
        ("`memory://` (fsspec)", "memory", {}),
    ]
    best: dict[str, float] = {}
    sizes: dict[str, int | None] = {}
    with tempfile.TemporaryDirectory() as folder:
        crewai_path = os.path.join(folder, "crewai.pkl")
        handlers: dict[str, Any] = {}
        for number, (label, name, kwargs) in enumerate(variants):
            if name == "memory":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RemoteStoreWarning)
                    handler = CrewTrainingHandler(f"memory://bench-{uuid.uuid4().hex}/t.pkl", **kwargs)
            else:
                handler = CrewTrainingHandler(os.path.join(folder, f"{number}-{name}"), **kwargs)
            handlers[label] = handler
        for _ in range(options.rounds):
            with open(crewai_path, "wb") as file:
                pickle.dump(data, file)
            cost = measure(crewai_append(crewai_path), options.appends)
            best["crewai"] = min(cost, best.get("crewai", cost))
            for label, handler in handlers.items():
                handler.save(data)
                cost = measure(handler.append, options.appends)
                best[label] = min(cost, best.get(label, cost))
                sizes[label] = None if handler.file_path.startswith("memory://") else os.path.getsize(handler.file_path)
        for handler in handlers.values():
            handler.close()
    crewai_cost = best.pop("crewai")
    rows = [(label, best[label], sizes[label]) for label in handlers]
    plain = rows[0][1]
    print(f"Store of {records} records; {options.appends} appends per round, best of {options.rounds} rounds.\n")
    print("| store | ms per append | × plain `.pkl` | file size (bytes) |")
    print("|---|---:|---:|---:|")
    print(
        f"| CrewAI's algorithm (reference, no fsync, no lock) | {crewai_cost * 1e3:.2f} | {crewai_cost / plain:.2f} | |"
    )
    for label, cost, size in rows:
        print(f"| {label} | {cost * 1e3:.2f} | {cost / plain:.2f} | {size if size is not None else '—'} |")


if __name__ == "__main__":
    main()
