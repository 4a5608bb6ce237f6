"""Cost of one append at 1k, 10k and 100k records: CrewAI's algorithm vs the pickle handler vs SQLite.

Run: ``.venv/bin/python benchmarks/bench_sqlite.py [--sizes 1000 10000 100000]``

All three run in one process on the same machine at the same moment, on
stores built by ``bench_store_append.make_store`` (~1 KB CrewAI-shaped records
over ten agents). CrewAI's algorithm is its handler's code path (load the whole
pickle, change the dict, dump it back in ``"wb"`` mode; no fsync, no lock). The
pickle handler includes its lock, fsyncs and atomic rename. The SQLite backend
is durable: every append is its own committed transaction, the write-ahead log
fsynced (``synchronous=FULL``). The whole-file algorithms are timed fewer times
at larger sizes (each of their appends rewrites the store); the table says how
many. ``get`` is timed on the largest SQLite store with a fresh handler.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_store_append import AGENTS, crewai_append, make_store, record

from crewtrain_nb import CrewTrainingHandler


def timed(run: Any, repeats: int) -> list[float]:
    times = []
    for n in range(repeats):
        start = time.perf_counter()
        run(n)
        times.append(time.perf_counter() - start)
    return times


def repeats_for(size: int) -> int:
    """Whole-file appends timed per size: each rewrites the store, so fewer at 100k."""
    return 50 if size <= 1_000 else 20 if size <= 10_000 else 5


def measure(size: int, directory: Path, sqlite_repeats: int) -> dict[str, Any]:
    rng = random.Random(size)
    base = make_store(size)
    new_records = [record(rng) for _ in range(1000)]
    start_iteration = size // AGENTS + 1
    whole_repeats = repeats_for(size)

    crewai_path = directory / f"crewai-{size}.pkl"
    with open(crewai_path, "wb") as file:
        pickle.dump(base, file)
    crewai = timed(
        lambda n: crewai_append(crewai_path, start_iteration + n, "agent-0", new_records[n % 1000]), whole_repeats
    )

    pickle_handler = CrewTrainingHandler(directory / f"ours-{size}.pkl")
    pickle_handler.save(base)
    pickle_handler.load()  # as in bench_store_append: the store has usually been read already
    ours = timed(lambda n: pickle_handler.append(start_iteration + n, "agent-0", new_records[n % 1000]), whole_repeats)

    sqlite_path = directory / f"ours-{size}.db"
    sqlite_handler = CrewTrainingHandler(sqlite_path)
    sqlite_handler.save(base)
    sqlite = timed(
        lambda n: sqlite_handler.append(start_iteration + n, f"agent-{n % AGENTS}", new_records[n % 1000]),
        sqlite_repeats,
    )
    assert len(sqlite_handler) == size + sqlite_repeats
    sqlite_handler.close()
    floor = measure_floor(directory / f"floor-{size}.db", sqlite_repeats)
    return {
        "size": size,
        "pickle_mb": os.path.getsize(crewai_path) / 1e6,
        "db_mb": os.path.getsize(sqlite_path) / 1e6,
        "whole_repeats": whole_repeats,
        "sqlite_repeats": sqlite_repeats,
        "crewai": statistics.median(crewai),
        "pickle": statistics.median(ours),
        "sqlite": statistics.median(sqlite),
        "sqlite_mean": statistics.fmean(sqlite),
        "floor": floor,
        "db": sqlite_path,
    }


def measure_floor(path: Path, repeats: int) -> float:
    """Median of one bare ``sqlite3`` insert + commit with the same settings: the cost of a durable commit itself."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, blob BLOB)")
    payload = os.urandom(1000)

    def commit(_: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (blob) VALUES (?)", (payload,))
        conn.execute("COMMIT")

    median = statistics.median(timed(commit, repeats))
    conn.close()
    return median


def measure_get(path: Path, size: int, lookups: int = 2000) -> tuple[float, float]:
    """Median and 99th percentile of ``get(agent, iteration)`` with a fresh handler."""
    rng = random.Random(1)
    handler = CrewTrainingHandler(path)
    handler.get("agent-0", 0)  # connect once; a reader keeps its handler
    per_agent = size // AGENTS
    times = timed(lambda n: handler.get(f"agent-{rng.randrange(AGENTS)}", rng.randrange(per_agent)), lookups)
    handler.close()
    return statistics.median(times), statistics.quantiles(times, n=100)[98]


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--appends", type=int, default=1000, help="SQLite appends timed per size (median taken)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
        rows = [measure(size, Path(tmp), args.appends) for size in args.sizes]
        get_median, get_p99 = measure_get(rows[-1]["db"], rows[-1]["size"])
    print(
        "| records | pickle MB | SQLite MB | CrewAI append ms | pickle handler append ms | SQLite append ms "
        "(mean) | bare commit ms | SQLite / bare | CrewAI / SQLite | pickle handler / SQLite |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['size']:,} | {row['pickle_mb']:.1f} | {row['db_mb']:.1f} "
            f"| {row['crewai'] * 1e3:.1f} (n={row['whole_repeats']}) | {row['pickle'] * 1e3:.1f} "
            f"(n={row['whole_repeats']}) | {row['sqlite'] * 1e3:.2f} ({row['sqlite_mean'] * 1e3:.2f}, "
            f"n={row['sqlite_repeats']}) | {row['floor'] * 1e3:.2f} "
            f"| {row['sqlite'] / row['floor']:.2f}x | {row['crewai'] / row['sqlite']:.0f}x "
            f"| {row['pickle'] / row['sqlite']:.0f}x |"
        )
    by_size = {row["size"]: row for row in rows}
    print()
    print("| goal | measured | verdict |")
    print("|---|---:|---|")
    if 1_000 in by_size and 100_000 in by_size:
        growth = by_size[100_000]["sqlite"] / by_size[1_000]["sqlite"]
        print(f"| SQLite append at 100k within 1.5x of at 1k | {growth:.2f}x | {verdict(growth <= 1.5)} |")
    if 10_000 in by_size:
        gain = by_size[10_000]["crewai"] / by_size[10_000]["sqlite"]
        print(f"| SQLite append at 10k >= 100x cheaper than CrewAI's | {gain:.0f}x | {verdict(gain >= 100)} |")
    print(
        f"| get(agent, iteration) under 5 ms at {rows[-1]['size']:,} records | median {get_median * 1e3:.3f} ms, "
        f"p99 {get_p99 * 1e3:.3f} ms | {verdict(get_median < 0.005)} |"
    )
    print(
        "\nbare commit = a bare sqlite3 insert + commit (WAL, synchronous=FULL, 1 KB blob), timed right after "
        "the SQLite appends of that size: the cost of a durable commit on this disk at that moment (the fsync "
        "of the write-ahead log, which CrewAI's algorithm never pays)."
    )
    print(f"Total run: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
