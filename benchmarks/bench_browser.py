"""How fast the notebook browser follows a click on a 100k-record store, vs the naive way, in one run.

Run: ``.venv/bin/python benchmarks/bench_browser.py [--agents 20] [--iterations 5000] [--clicks 60]``

Two stores of ``agents x iterations`` records (100,000 by default), built with the
seeded generators of :mod:`crewtrain_nb.demo`: an ML-style log (loss, accuracy,
nested metrics, an 8-number weights list) and a CrewAI ``training_data.pkl``
(texts; the curves are output lengths and similarity).

:class:`crewtrain_nb.TrainingBrowser` is built once (timed separately), then driven
the way a user does, by setting the widgets' ``.value`` / clicking:

* **iteration**: set the slider to a random iteration of the current agent;
* **next**: click the ▶ button;
* **agent**: switch to another agent (its first view of that agent, then cached).

Each change is timed from setting the value until every observer has returned
(record pane HTML updated, and the curve PNG when the agent's curves are drawn).
An agent's first visit draws its curves in a background thread: that is timed
separately, until :meth:`~crewtrain_nb.TrainingBrowser.wait_for_curves` returns.
There is no kernel, so the time to send the new state to the front end is not
included. Median and p95 over ``--clicks`` changes.

The naive way, timed per click in the same run: flatten the whole store again
with ``to_frame``, take the agent's rows, melt the numeric columns into a tidy
frame, ``plot_metrics`` it, add an ``axvline`` at the iteration and save the PNG,
and render the record from the frame's row.

Goal: a selection change (iteration or agent) on the 100k-record store under 50 ms.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from crewtrain_nb import TrainingBrowser, plot_metrics, to_frame  # noqa: E402
from crewtrain_nb.demo import make_metrics_data, make_training_data  # noqa: E402
from crewtrain_nb.render import record_html  # noqa: E402

GOAL_MS = 50.0


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def summary(times: list[float]) -> tuple[float, float]:
    """Median and p95 (nearest rank) in ms."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def naive_click(store: dict[str, Any], agent: str, iteration: int) -> bytes:
    """Everything again from the store: the way a notebook cell re-run per selection does it."""
    wide = to_frame(store)
    mine = wide[wide["agent"] == agent]
    row = mine[mine["iteration"] == iteration].iloc[0]
    record_html({key: value for key, value in row.items() if key not in ("agent", "iteration")})
    numeric = [
        column
        for column in mine.columns
        if column not in ("agent", "iteration") and pd.api.types.is_numeric_dtype(mine[column])
    ]
    if not numeric:  # CrewAI texts: plot their lengths, as the browser does
        mine = mine.assign(
            initial_chars=mine["initial_output"].str.len(),
            improved_chars=mine["improved_output"].str.len(),
        )
        numeric = ["initial_chars", "improved_chars"]
    tidy = mine.melt(id_vars=["agent", "iteration"], value_vars=numeric, var_name="metric").dropna(subset=["value"])
    tidy["value"] = tidy["value"].astype("float64")
    figure = plot_metrics(tidy, figsize=(9, 2.6 * ((len(numeric) + 2) // 3)))
    for ax in figure.axes:
        ax.axvline(iteration, color="black", linestyle="--")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72)
    return buffer.getvalue()


def bench_store(name: str, store: dict[str, Any], clicks: int, naive_clicks: int, rng: random.Random) -> list[str]:
    records = sum(len(entry) for entry in store.values())
    agents = list(store)
    build_ms = timed(lambda: TrainingBrowser(store))
    browser = TrainingBrowser(store)
    rows = [f"| {name} | build the browser (once) | {build_ms:.0f} | | | | |"]

    # agent changes first: an agent's first visit draws its curves in the background (then cached):
    # the click returns with the record pane updated; the curves follow. Both are timed, the second
    # until wait_for_curves() returns, and the next click waits for it (no overlap with drawing).
    browser.wait_for_curves()
    first_visit_times, curves_shown_times = [], []
    for agent in agents[1:]:
        start = time.perf_counter()
        browser.agent.value = agent
        first_visit_times.append((time.perf_counter() - start) * 1000)
        browser.wait_for_curves()
        curves_shown_times.append((time.perf_counter() - start) * 1000)
    revisit_times = []
    for _ in range(clicks):
        agent = rng.choice([a for a in agents if a != browser.agent.value])
        revisit_times.append(timed(lambda a=agent: setattr(browser.agent, "value", a)))
    options = browser.iterations
    targets = [rng.choice(options) for _ in range(clicks)]
    iteration_times = [timed(lambda i=target: setattr(browser.iteration, "value", i)) for target in targets]
    assert browser.selected_iteration == targets[-1]
    browser.iteration.value = options[0]
    next_times = [timed(browser.next_button.click) for _ in range(clicks)]
    assert browser.selected_iteration == options[clicks]  # the clicks really moved the selection
    browser.close()

    naive_times = []
    for _ in range(naive_clicks):
        agent = rng.choice(agents)
        iteration = rng.choice(list(store[agent]))
        naive_times.append(timed(lambda a=agent, i=iteration: naive_click(store, a, i)))
    naive_median, naive_p95 = summary(naive_times)

    changes = (
        ("iteration slider", iteration_times),
        ("next button", next_times),
        ("agent, visited before", revisit_times),
        ("agent, first visit: click returns", first_visit_times),
        ("agent, first visit: its curves shown (background)", curves_shown_times),
    )
    for change, times in changes:
        median, p95 = summary(times)
        goal = "(no goal)" if "curves shown" in change else ("met" if p95 < GOAL_MS else "NOT met")
        rows.append(
            f"| {name} | {change} | {median:.1f} | {p95:.1f} | {naive_median:.0f} | "
            f"{naive_median / median:.0f}x | {goal} |"
        )
    del naive_p95
    print(f"{name}: {records:,} records, {len(agents)} agents; {clicks} clicks each, naive {naive_clicks} clicks")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=5_000)
    parser.add_argument("--clicks", type=int, default=60)
    parser.add_argument("--naive-clicks", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(0)
    np.random.seed(0)

    names = tuple(f"agent-{n:02d}" for n in range(args.agents))
    stores = {
        "ML log": make_metrics_data(agents=names, iterations=args.iterations, seed=1),
        "CrewAI training_data": make_training_data(agents=args.agents, iterations=args.iterations, seed=1),
    }
    rows = []
    for name, store in stores.items():
        rows.extend(bench_store(name, store, args.clicks, args.naive_clicks, rng))
    print()
    print(
        "| store | change | browser median ms | browser p95 ms | naive median ms | naive / browser | "
        f"goal p95 < {GOAL_MS:.0f} ms |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
