"""Cost of one append as the store grows: CrewAI's algorithm, a full rewrite, a tail, CrewAI's pattern, the floor.

Run from the repository root:
``PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_store_append.py [--sizes 1000 20000 100000] [--appends 15]``

Everything runs in one process on files of the same store, interleaved append
by append, so the table compares ratios at the same moment of a shared disk.
CrewAI's algorithm is its handler's code path: ``pickle.load`` the whole file,
change the dict, ``pickle.dump`` it in ``"wb"`` mode (no fsync, no lock). The
full rewrite (``tails=False``) adds the locks, an fsync of the file and of the
directory and the atomic rename; the tail append writes one record after the
pickle and commits it (two ``fdatasync`` calls, see ``store/_tail.py``). The floor
is a bare ``pwrite`` of a tail's bytes and of one byte, each followed by an
``fdatasync``: what any durable append costs on this disk. CrewAI's pattern is
its training step through our handler: ``load()`` (a copy of the whole store),
change one agent's entry, ``save(the whole dict)`` (compared with the
snapshot, written as a tail). Then ``load()`` of a store after 10,000 tail
appends against the same store compacted (written where syncs are cheap, in
``/dev/shm``: only the load is timed).
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

from timing import best_of

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


def floor_append(fd: int, end: int, payload: bytes) -> None:
    """The physical limit of a durable append: write the bytes, sync, write one byte, sync (as a tail does)."""
    os.pwrite(fd, payload, end)
    os.fdatasync(fd)
    os.pwrite(fd, b"(", end - 1)
    os.fdatasync(fd)


def crewai_pattern(handler: CrewTrainingHandler, iteration: int, agent: str, new_data: Any) -> tuple[float, float]:
    """CrewAI 1.x's training step through our handler: ``load()``, change one agent's entry, ``save(whole dict)``.

    Returns the seconds of the ``load()`` (a copy of the whole store) and of the ``save`` (a diff and a tail).
    """
    start = time.perf_counter()
    data = handler.load()
    loaded = time.perf_counter()
    data[agent][iteration] = new_data
    handler.save(data)
    return loaded - start, time.perf_counter() - loaded


def measure(size: int, appends: int, directory: Path) -> dict[str, float]:
    rng = random.Random(size)
    base = make_store(size)
    new_records = [record(rng) for _ in range(1000)]
    start_iteration = size // AGENTS + 1

    crewai_path = directory / f"crewai-{size}.pkl"
    with open(crewai_path, "wb") as file:
        pickle.dump(base, file)
    rewrite = CrewTrainingHandler(directory / f"rewrite-{size}.pkl", tails=False)
    rewrite.save(base)
    rewrite.load()  # a notebook or a training loop has usually read the store already
    tails = CrewTrainingHandler(directory / f"tails-{size}.pkl")
    tails.save(base)
    tails.load()
    pattern = CrewTrainingHandler(directory / f"pattern-{size}.pkl")
    pattern.save(base)
    pattern.load()
    floor_path = directory / f"floor-{size}.bin"
    floor_path.write_bytes(pickle.dumps(base, protocol=4))
    floor_fd = os.open(floor_path, os.O_RDWR)
    floor_end = os.path.getsize(floor_path)
    tail_bytes = len(pickle.dumps(new_records[0], protocol=3)) + 20  # a record and a tail's own ops

    times: dict[str, list[float]] = {name: [] for name in ("crewai", "rewrite", "tail", "floor", "load", "save")}
    tails_size = os.path.getsize(tails.file_path)
    for n in range(appends):  # interleaved: every method meets the same moment of a shared disk
        iteration = start_iteration + n
        record_n = new_records[n % 1000]
        for name, run in (
            ("crewai", lambda i=iteration, r=record_n: crewai_append(crewai_path, i, "agent-0", r)),
            ("rewrite", lambda i=iteration, r=record_n: rewrite.append(i, "agent-0", r)),
            ("tail", lambda i=iteration, r=record_n: tails.append(i, "agent-0", r)),
            ("floor", lambda at=floor_end + n * tail_bytes: floor_append(floor_fd, at, b"x" * tail_bytes)),
        ):
            begin = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - begin)
        load_s, save_s = crewai_pattern(pattern, iteration, "agent-0", record_n)
        times["load"].append(load_s)
        times["save"].append(save_s)
    os.close(floor_fd)
    grew = (os.path.getsize(tails.file_path) - tails_size) / appends

    begin = time.perf_counter()
    with rewrite.batch():
        for n in range(1000):
            rewrite.append(start_iteration + appends + n, "agent-1", new_records[n])
    batch_1000 = time.perf_counter() - begin
    assert len(rewrite.load()["agent-1"]) == len(base["agent-1"]) + 1000
    assert tails.load()["agent-0"] == rewrite.load()["agent-0"] == pattern.load()["agent-0"]
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "size": size,
        "file_mb": os.path.getsize(crewai_path) / 1e6,
        "tail_grew": grew,
        "batch_1000": batch_1000,
        **median,
    }


def measure_load_after_tails(records: int, tails: int, directory: Path) -> dict[str, float]:
    """``load()`` of a store after ``tails`` tail appends vs the same store compacted, and their sizes."""
    rng = random.Random(7)
    path = directory / "after-tails.pkl"
    handler = CrewTrainingHandler(path)
    handler.save(make_store(records))
    inode = os.stat(path).st_ino
    start_iteration = records // AGENTS + 1
    for n in range(tails):
        handler.append(start_iteration + n // AGENTS, f"agent-{n % AGENTS}", record(rng))
    assert os.stat(path).st_ino == inode, "a compaction ran: use fewer tails or a bigger store"
    compacted = directory / "compacted.pkl"
    CrewTrainingHandler(compacted).save(handler.load())
    assert CrewTrainingHandler(compacted).load() == CrewTrainingHandler(path).load()
    return {
        "records": records,
        "tails": tails,
        "tails_load": best_of(3, lambda: CrewTrainingHandler(path).load()),
        "compacted_load": best_of(3, lambda: CrewTrainingHandler(compacted).load()),
        "tails_pickle": best_of(3, lambda: pickle.loads(path.read_bytes())),
        "compacted_pickle": best_of(3, lambda: pickle.loads(compacted.read_bytes())),
        "tails_mb": os.path.getsize(path) / 1e6,
        "compacted_mb": os.path.getsize(compacted) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000, 100000])
    parser.add_argument("--appends", type=int, default=15, help="appends timed per size and method (median taken)")
    parser.add_argument("--tails", type=int, default=10000, help="tail appends before the load comparison")
    parser.add_argument("--tails-store", type=int, default=20000, help="records of the store they are appended to")
    parser.add_argument(
        "--load-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None, help="where the load test writes"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as tmp:
        rows = [measure(size, args.appends, Path(tmp)) for size in args.sizes]
    with tempfile.TemporaryDirectory(dir=args.load_dir) as tmp:
        loads = measure_load_after_tails(args.tails_store, args.tails, Path(tmp))
    first = rows[0]
    print(
        "| records | file MB | CrewAI append ms | full rewrite ms | tail append ms | floor ms (write + 2 syncs) "
        "| tail / floor | tail / tail at first size | CrewAI / tail | CrewAI's pattern: load() ms + save() ms "
        "| 1,000 appends in batch() s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['size']:,} | {row['file_mb']:.1f} | {row['crewai'] * 1e3:.2f} | {row['rewrite'] * 1e3:.2f} "
            f"| {row['tail'] * 1e3:.2f} | {row['floor'] * 1e3:.2f} | {row['tail'] / row['floor']:.2f}x "
            f"| {row['tail'] / first['tail']:.2f}x | {row['crewai'] / row['tail']:.0f}x "
            f"| {row['load'] * 1e3:.1f} + {row['save'] * 1e3:.1f} | {row['batch_1000']:.3f} |"
        )
    print(f"\nA tail append grew the file by {rows[-1]['tail_grew']:.0f} bytes per ~1 KB record.")
    print(
        f"\n| store | load() ms | pickle.loads ms | file MB |\n|---|---:|---:|---:|\n"
        f"| {loads['records']:,} records + {loads['tails']:,} tail appends | {loads['tails_load'] * 1e3:.0f} "
        f"| {loads['tails_pickle'] * 1e3:.0f} | {loads['tails_mb']:.1f} |\n"
        f"| the same, compacted | {loads['compacted_load'] * 1e3:.0f} | {loads['compacted_pickle'] * 1e3:.0f} "
        f"| {loads['compacted_mb']:.1f} |\n"
        f"| tails / compacted | {loads['tails_load'] / loads['compacted_load']:.2f}x "
        f"| {loads['tails_pickle'] / loads['compacted_pickle']:.2f}x "
        f"| {loads['tails_mb'] / loads['compacted_mb']:.2f}x |"
    )


if __name__ == "__main__":
    main()
