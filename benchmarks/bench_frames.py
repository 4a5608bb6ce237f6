"""Building DataFrames from a large store: ours vs the obvious pandas way, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_frames.py [--agents 50] [--iterations 4000] [--repeats 3]``

The store: ``agents x iterations`` records, each nested two levels with ten
numeric leaves (one of them an int). A second store is the same but with 10% of
the records missing a key and 1% holding an extra one: the fast path has to
notice that records do not share one shape, and stay correct.

* ``to_frame(layout="wide")`` vs ``pd.json_normalize`` over the records, plus the
  ``agent`` and ``iteration`` columns, sorted the same way.
* ``metrics_frame`` vs ``json_normalize`` + ``melt`` + ``dropna`` + sort.

Times are the best of ``--repeats`` runs. Peak memory is measured in a fresh
process per call (tracing slows Python down, and pyarrow's pool only reports its
all-time maximum): ``tracemalloc`` for Python and numpy allocations plus the
peak of pyarrow's memory pool (pandas 3 keeps ``str`` columns there), counted
from the moment the call starts, so the store itself is not included. Both
peaks are added, an upper bound. Before timing, both ways are checked to give
the same frame.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from crewtrain_nb import metrics_frame, to_frame

try:
    import pyarrow as pa
except ImportError:  # pragma: no cover - the arrow pool is then simply not part of the figure
    pa = None


def make_store(agents: int, iterations: int, *, ragged: bool = False, seed: int = 0) -> dict[str, Any]:
    """``{agent: {iteration: record}}``; each record has 10 numeric leaves, nested two levels."""
    rng = random.Random(seed)
    store: dict[str, Any] = {}
    for a in range(agents):
        records: dict[int, Any] = {}
        for i in range(iterations):
            record: dict[str, Any] = {
                "loss": rng.random(),
                "accuracy": rng.random(),
                "lr": 1e-3 * rng.random(),
                "tokens": rng.randrange(10_000),
                "metrics": {"f1": rng.random(), "precision": rng.random(), "recall": rng.random()},
                "grad": {"norm": rng.random(), "max": rng.random(), "min": -rng.random()},
            }
            if ragged:
                roll = rng.random()
                if roll < 0.10:
                    del record["lr"]
                elif roll < 0.11:
                    record["metrics"]["auc"] = rng.random()
            records[i] = record
        store[f"agent-{a:03d}"] = records
    return store


def naive_wide(store: dict[str, Any]) -> pd.DataFrame:
    """The obvious way: json_normalize over all records, then agent/iteration, then sort."""
    agents, iterations, records = [], [], []
    for agent, entry in store.items():
        for iteration, record in entry.items():
            agents.append(agent)
            iterations.append(iteration)
            records.append(record)
    frame = pd.json_normalize(records)
    frame.insert(0, "agent", agents)
    frame.insert(1, "iteration", np.array(iterations, dtype=np.int64))
    return frame.sort_values(["agent", "iteration"], kind="stable", ignore_index=True)


def naive_metrics(store: dict[str, Any]) -> pd.DataFrame:
    """json_normalize, then melt to (agent, iteration, metric, value), drop missing, sort."""
    wide = naive_wide(store)
    tidy = wide.melt(id_vars=["agent", "iteration"], var_name="metric", value_name="value").dropna(subset=["value"])
    tidy["value"] = tidy["value"].astype(np.float64)
    return tidy.sort_values(["agent", "metric", "iteration"], kind="stable", ignore_index=True)


def best_time(run: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _peak_in_this_process(run: Callable[[], pd.DataFrame]) -> tuple[float, float]:
    gc.collect()
    pool = pa.default_memory_pool() if pa is not None else None
    arrow_start = pool.bytes_allocated() if pool is not None else 0
    tracemalloc.start()
    frame = run()
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrow_peak = max(pool.max_memory() - arrow_start, 0) if pool is not None else 0
    return float(python_peak + arrow_peak), float(frame.memory_usage(deep=True).sum())


def _measure(task: str, way: str, agents: int, iterations: int, ragged: bool) -> tuple[float, float]:
    store = make_store(agents, iterations, ragged=ragged)
    run = {
        ("wide", "ours"): lambda: to_frame(store),
        ("wide", "naive"): lambda: naive_wide(store),
        ("metrics", "ours"): lambda: metrics_frame(store),
        ("metrics", "naive"): lambda: naive_metrics(store),
    }[task, way]
    return _peak_in_this_process(run)


def peak_memory(task: str, way: str, agents: int, iterations: int, ragged: bool) -> tuple[float, float]:
    """``(peak bytes during the call, final frame's memory_usage(deep=True))``, in a fresh process.

    A fresh process because pyarrow's pool only reports its all-time maximum.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(_measure, (task, way, agents, iterations, ragged))


def check_same(ours: pd.DataFrame, theirs: pd.DataFrame, *, columns: bool) -> None:
    if columns:
        theirs = theirs[list(ours.columns)]
    pd.testing.assert_frame_equal(
        ours.reset_index(drop=True), theirs.reset_index(drop=True), check_dtype=False, check_like=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    header = (
        "| store | task | json_normalize way s | ours s | speed-up | json_normalize peak MB | our peak MB "
        "| frame MB | our peak / frame |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [header]
    for label, ragged in (("uniform", False), ("ragged (10% missing a key, 1% extra)", True)):
        store = make_store(args.agents, args.iterations, ragged=ragged)
        records = args.agents * args.iterations
        tasks: list[tuple[str, str, Callable[[], pd.DataFrame], Callable[[], pd.DataFrame], bool]] = [
            ("wide frame", "wide", lambda s=store: to_frame(s), lambda s=store: naive_wide(s), True),
            ("metrics (tidy)", "metrics", lambda s=store: metrics_frame(s), lambda s=store: naive_metrics(s), False),
        ]
        for task, key, ours, theirs, by_columns in tasks:
            check_same(ours(), theirs(), columns=by_columns)
            naive_s = best_time(theirs, args.repeats)
            ours_s = best_time(ours, args.repeats)
            peak, size = peak_memory(key, "ours", args.agents, args.iterations, ragged)
            naive_peak, _ = peak_memory(key, "naive", args.agents, args.iterations, ragged)
            lines.append(
                f"| {label}, {records:,} records | {task} | {naive_s:.2f} | {ours_s:.2f} | {naive_s / ours_s:.1f}x "
                f"| {naive_peak / 1e6:.0f} | {peak / 1e6:.1f} | {size / 1e6:.1f} | {peak / size:.2f} |"
            )
            print(lines[-1], flush=True)
        del store
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
