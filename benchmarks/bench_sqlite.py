"""Cost of one append at 1k, 10k and 100k records: CrewAI's algorithm vs the pickle handler vs SQLite.

Run: ``.venv/bin/python benchmarks/bench_sqlite.py [--sizes 1000 10000 100000] [--runs 3]``

All ways run in one process on the same machine, on stores built by
``bench_store_append.make_store`` (~1 KB CrewAI-shaped records over ten
agents). CrewAI's algorithm is its handler's code path (load the whole pickle,
change the dict, dump it back in ``"wb"`` mode; no fsync, no lock). The pickle
handler includes its lock, fsyncs and atomic rename. The SQLite backend is
durable: every append is its own committed transaction, the write-ahead log
fsynced (``synchronous=FULL``). *bare commit* is a plain ``sqlite3`` insert +
commit with the same settings: what one durable commit costs on this disk.

Each way is timed in tight loops (bursts), and the bursts take turns over five
rounds, so that the shared disk's slow phases fall on every way alike. The
whole-file algorithms are timed fewer times at larger sizes (each of their
appends rewrites the store); the table says how many. ``get`` is timed on the
largest SQLite store with a fresh handler. Goals are judged run by run.

A last table times appends one at a time, as a training run makes them: stores
just opened, 20 ms idle before each append.
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


def repeats_for(size: int) -> int:
    """Whole-file appends timed per size: each rewrites the store, so fewer at 100k."""
    return 50 if size <= 1_000 else 20 if size <= 10_000 else 5


ROUNDS = 5


def measure(size: int, directory: Path, sqlite_repeats: int) -> dict[str, Any]:
    """Time the four ways in rounds, each way in a tight loop within a round.

    Every way runs back to back within its burst (the usual way to time a cost
    per call), and the bursts take turns over ``ROUNDS`` rounds, so that a slow
    phase of the shared disk (fsync latency here swings between ~0.15 ms and
    several ms) falls on all four instead of on whichever ran at that moment.
    """
    rng = random.Random(size)
    base = make_store(size)
    new_records = [record(rng) for _ in range(1000)]
    start_iteration = size // AGENTS + 1
    whole_per_round = max(1, repeats_for(size) // ROUNDS)
    sqlite_per_round = max(1, sqlite_repeats // ROUNDS)

    crewai_path = directory / f"crewai-{size}.pkl"
    with open(crewai_path, "wb") as file:
        pickle.dump(base, file)
    pickle_handler = CrewTrainingHandler(directory / f"ours-{size}.pkl")
    pickle_handler.save(base)
    pickle_handler.load()  # as in bench_store_append: the store has usually been read already
    sqlite_path = directory / f"ours-{size}.db"
    sqlite_handler = CrewTrainingHandler(sqlite_path)
    sqlite_handler.save(base)
    floor = BareCommit(directory / f"floor-{size}.db")

    crewai: list[float] = []
    ours: list[float] = []
    sqlite: list[float] = []
    bare: list[float] = []
    whole = appended = 0
    for _ in range(ROUNDS):
        burst = range(whole, whole + whole_per_round)
        for n in burst:
            crewai.append(timed_once(crewai_append, crewai_path, start_iteration + n, "agent-0", new_records[n % 1000]))
        for n in burst:
            ours.append(timed_once(pickle_handler.append, start_iteration + n, "agent-0", new_records[n % 1000]))
        whole += whole_per_round
        for _ in range(sqlite_per_round):
            agent, new_data = f"agent-{appended % AGENTS}", new_records[appended % 1000]
            sqlite.append(timed_once(sqlite_handler.append, start_iteration + appended, agent, new_data))
            appended += 1
        bare.extend(timed_once(floor.commit) for _ in range(sqlite_per_round))
    assert len(sqlite_handler) == size + appended
    sqlite_handler.close()
    floor.close()
    return {
        "size": size,
        "pickle_mb": os.path.getsize(crewai_path) / 1e6,
        "db_mb": os.path.getsize(sqlite_path) / 1e6,
        "whole_repeats": whole,
        "sqlite_repeats": appended,
        "crewai": statistics.median(crewai),
        "pickle": statistics.median(ours),
        "sqlite": statistics.median(sqlite),
        "sqlite_mean": statistics.fmean(sqlite),
        "floor": statistics.median(bare),
        "db": sqlite_path,
    }


def timed_once(run: Any, *args: Any) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


class BareCommit:
    """One bare ``sqlite3`` insert + commit with the same settings: the cost of a durable commit itself."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, blob BLOB)")
        self.payload = os.urandom(1000)
        # One big first transaction, as the store's save() of the base records: the write-ahead log grows
        # past the checkpoint size once, and later commits rewrite it in place, as the store's appends do.
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO t (blob) VALUES (?)", ((self.payload,) for _ in range(4000)))
        self.conn.execute("COMMIT")

    def commit(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT INTO t (blob) VALUES (?)", (self.payload,))
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def measure_isolated(size: int, directory: Path, appends: int = 40, idle: float = 0.02) -> dict[str, float]:
    """Appends one at a time, as in a training run: ``idle`` seconds before each, stores just opened.

    Between two appends a real run waits for a model and a person, and a
    process opens its store anew (SQLite deletes the write-ahead log when the
    last connection closes, so a new process's first appends grow it again).
    Both make a durable commit cost more than in a tight loop: the disk's
    flush is waited for by an idle CPU, and a growing log changes the file's
    size, which costs a journal commit of the file system.
    """
    rng = random.Random(size + 1)
    base = make_store(size)
    new_records = [record(rng) for _ in range(appends)]
    start_iteration = size // AGENTS + 1
    crewai_path = directory / f"isolated-{size}.pkl"
    with open(crewai_path, "wb") as file:
        pickle.dump(base, file)
    sqlite_path = directory / f"isolated-{size}.db"
    with CrewTrainingHandler(sqlite_path) as writer:
        writer.save(base)
    sqlite_handler = CrewTrainingHandler(sqlite_path)
    crewai: list[float] = []
    sqlite: list[float] = []
    for n in range(appends):
        time.sleep(idle)
        crewai.append(timed_once(crewai_append, crewai_path, start_iteration + n, "agent-0", new_records[n]))
        time.sleep(idle)
        sqlite.append(timed_once(sqlite_handler.append, start_iteration + n, f"agent-{n % AGENTS}", new_records[n]))
    sqlite_handler.close()
    return {"size": size, "n": appends, "crewai": statistics.median(crewai), "sqlite": statistics.median(sqlite)}


def measure_get(path: Path, size: int, lookups: int = 2000) -> tuple[float, float]:
    """Median and 99th percentile of ``get(agent, iteration)`` with a fresh handler."""
    rng = random.Random(1)
    handler = CrewTrainingHandler(path)
    handler.get("agent-0", 0)  # connect once; a reader keeps its handler
    per_agent = size // AGENTS
    times = [
        timed_once(handler.get, f"agent-{rng.randrange(AGENTS)}", rng.randrange(per_agent)) for _ in range(lookups)
    ]
    handler.close()
    return statistics.median(times), statistics.quantiles(times, n=100)[98]


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--appends", type=int, default=1000, help="SQLite appends timed per size (median taken)")
    parser.add_argument("--runs", type=int, default=3, help="whole runs, each on new stores; goals judged per run")
    parser.add_argument("--isolated-size", type=int, default=10_000, help="store size for the one-at-a-time table")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = []
    isolated: list[dict[str, float]] = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
            rows = [measure(size, Path(tmp), args.appends) for size in args.sizes]
            runs.append((rows, measure_get(rows[-1]["db"], rows[-1]["size"])))
            isolated.append(measure_isolated(args.isolated_size, Path(tmp)))
    print(
        "| run | records | pickle MB | SQLite MB | CrewAI append ms | pickle handler append ms | SQLite append ms "
        "(mean) | bare commit ms | SQLite / bare | CrewAI / SQLite | pickle handler / SQLite |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for number, (rows, _) in enumerate(runs, 1):
        for row in rows:
            print(
                f"| {number} | {row['size']:,} | {row['pickle_mb']:.1f} | {row['db_mb']:.1f} "
                f"| {row['crewai'] * 1e3:.1f} (n={row['whole_repeats']}) | {row['pickle'] * 1e3:.1f} "
                f"(n={row['whole_repeats']}) | {row['sqlite'] * 1e3:.3f} ({row['sqlite_mean'] * 1e3:.3f}, "
                f"n={row['sqlite_repeats']}) | {row['floor'] * 1e3:.3f} "
                f"| {row['sqlite'] / row['floor']:.2f}x | {row['crewai'] / row['sqlite']:.0f}x "
                f"| {row['pickle'] / row['sqlite']:.0f}x |"
            )
    growths, gains, gets = [], [], []
    for rows, (get_median, get_p99) in runs:
        by_size = {row["size"]: row for row in rows}
        if 1_000 in by_size and 100_000 in by_size:
            growths.append(by_size[100_000]["sqlite"] / by_size[1_000]["sqlite"])
        if 10_000 in by_size:
            gains.append(by_size[10_000]["crewai"] / by_size[10_000]["sqlite"])
        gets.append((get_median, get_p99))
    print()
    print("| goal | measured, run by run | verdict |")
    print("|---|---:|---|")
    if growths:
        met = sum(growth <= 1.5 for growth in growths)
        print(
            f"| SQLite append at 100k within 1.5x of at 1k | {', '.join(f'{g:.2f}x' for g in growths)} "
            f"| {verdict(met == len(growths))} ({met} of {len(growths)} runs) |"
        )
    if gains:
        met = sum(gain >= 100 for gain in gains)
        print(
            f"| SQLite append at 10k >= 100x cheaper than CrewAI's | {', '.join(f'{g:.0f}x' for g in gains)} "
            f"| {verdict(met == len(gains))} ({met} of {len(gains)} runs) |"
        )
    met = sum(median < 0.005 for median, _ in gets)
    print(
        f"| get(agent, iteration) under 5 ms at {runs[-1][0][-1]['size']:,} records "
        f"| {', '.join(f'{m * 1e3:.3f} ms (p99 {p * 1e3:.3f})' for m, p in gets)} "
        f"| {verdict(met == len(gets))} ({met} of {len(gets)} runs) |"
    )
    print(
        "\nbare commit = a bare sqlite3 insert + commit (WAL, synchronous=FULL, 1 KB blob), timed in the same "
        "rounds as the SQLite appends: the cost of a durable commit on this disk at that moment (the fsync "
        "of the write-ahead log, which CrewAI's algorithm never pays)."
    )
    print()
    print(
        f"One append at a time (20 ms idle before each, stores just opened; n={isolated[0]['n']} per way), "
        f"{isolated[0]['size']:,} records:"
    )
    print()
    print("| run | CrewAI append ms | SQLite append ms | CrewAI / SQLite |")
    print("|---:|---:|---:|---:|")
    for number, row in enumerate(isolated, 1):
        print(
            f"| {number} | {row['crewai'] * 1e3:.1f} | {row['sqlite'] * 1e3:.3f} "
            f"| {row['crewai'] / row['sqlite']:.0f}x |"
        )
    print(f"\nTotal run: {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
