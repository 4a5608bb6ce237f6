"""Drawing long training histories: plot_metrics with decimation vs a short history vs no decimation.

Run: ``.venv/bin/python benchmarks/bench_plots.py [--agents 10] [--repeats 5]``

Three cases, side by side in one run, each drawn with :func:`crewtrain_nb.plot_metrics`
and saved to PNG with the Agg backend at the same ``figsize`` and ``dpi``:

* **small**: ``agents x 1,000`` iterations x 2 metrics, default ``max_points=2000``;
* **large**: ``agents x 100,000`` iterations x 2 metrics, default ``max_points=2000``;
* **raw large**: the large history with ``max_points=None`` (every point drawn).

The data is a ``metrics_frame``-shaped DataFrame built with a seeded numpy
generator (a noisy decaying loss with spikes, an accuracy rising to 1), built
once before timing. Only plotting + saving is timed, best of ``--repeats`` runs.
A fourth row draws the raw history with matplotlib's own Agg path
simplification (``path.simplify``, on by default) turned off: what drawing
every point really costs. The script also splits the large case into its stages
(splitting rows into lines, decimating, drawing + saving) so the table says
where the time goes.

Goals: large ≤ 2× small, and large ≤ 1/10 of raw large.
"""

from __future__ import annotations

import argparse
import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from timing import best_of  # noqa: E402

from crewtrain_nb import plot_metrics  # noqa: E402
from crewtrain_nb.plots import _select, decimate_minmax  # noqa: E402

FIGSIZE = (10.0, 4.0)
DPI = 100


def make_frame(agents: int, iterations: int, *, seed: int = 0) -> pd.DataFrame:
    """A ``metrics_frame``-shaped frame: agent, iteration, metric, value; sorted by agent, metric, iteration."""
    rng = np.random.default_rng(seed)
    steps = np.arange(iterations)
    pieces = []
    for index in range(agents):
        agent = f"agent-{index:02d}"
        rate = 5.0 / iterations * (1 + 0.1 * index)
        loss = 2.0 * np.exp(-rate * steps) + 0.1 + rng.normal(0, 0.05, iterations)
        spikes = rng.choice(iterations, size=max(1, iterations // 20_000), replace=False)
        loss[spikes] += 3.0  # rare spikes: the ones decimation must keep
        accuracy = 1 - 0.5 * np.exp(-rate * steps) + rng.normal(0, 0.01, iterations)
        for metric, values in (("accuracy", accuracy), ("loss", loss)):
            pieces.append(
                pd.DataFrame({"agent": agent, "iteration": steps, "metric": metric, "value": values.astype("float64")})
            )
    return pd.concat(pieces, ignore_index=True)


def draw_and_save(frame: pd.DataFrame, max_points: int | None, *, simplify: bool = True) -> int:
    """plot_metrics + savefig to PNG; ``simplify=False`` turns off Agg's own path simplification."""
    with matplotlib.rc_context({"path.simplify": simplify}):
        figure = plot_metrics(frame, max_points=max_points, figsize=FIGSIZE)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
    return len(buffer.getvalue())


def stages(frame: pd.DataFrame, max_points: int, repeats: int) -> dict[str, float]:
    """Best-of times of the steps of the large case: split into lines, decimate, then draw + save."""
    lines: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    def split() -> None:
        lines.update(_select(frame, None, None)[0])

    out = {"split 2M rows into 20 lines (factorize names, find runs)": best_of(repeats, split)}
    out["decimate_minmax, all 20 lines"] = best_of(
        repeats, lambda: [decimate_minmax(x, y, max_points) for x, y in lines.values()]
    )
    out["whole plot_metrics + savefig"] = best_of(repeats, lambda: draw_and_save(frame, max_points))
    out["of which drawing + PNG (the rest)"] = (
        out["whole plot_metrics + savefig"]
        - out["split 2M rows into 20 lines (factorize names, find runs)"]
        - out["decimate_minmax, all 20 lines"]
    )
    return out


def bare_figure(lines: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], *, simplify: bool = True) -> int:
    """The least a matplotlib figure of these lines can do: one Axes per metric, ``ax.plot`` per line, one legend."""
    with matplotlib.rc_context({"path.simplify": simplify}):
        return _bare_figure(lines)


def _bare_figure(lines: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]) -> int:
    from matplotlib.figure import Figure

    metrics = sorted({metric for metric, _ in lines})
    figure = Figure(figsize=FIGSIZE)
    axes = dict(zip(metrics, figure.subplots(1, len(metrics), squeeze=False)[0], strict=True))
    for (metric, agent), (x, y) in lines.items():
        axes[metric].plot(x, y, label=agent)
    axes[metrics[0]].legend(loc="upper right")  # a fixed place: "best" would search every point of every line
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return len(buffer.getvalue())


def floor(frame: pd.DataFrame, max_points: int, repeats: int) -> tuple[float, float, float, float]:
    """Bare figures: lines decimated beforehand (not timed), 2-point lines, raw lines, raw without simplification."""
    raw = dict(_select(frame, None, None)[0])  # keys: (metric, agent)
    decimated = {key: decimate_minmax(x, y, max_points) for key, (x, y) in raw.items()}
    stubs = {key: (x[:2], y[:2]) for key, (x, y) in raw.items()}
    bare_figure(decimated)
    return (
        best_of(repeats, lambda: bare_figure(decimated)),
        best_of(repeats, lambda: bare_figure(stubs)),
        best_of(max(2, repeats // 2), lambda: bare_figure(raw)),
        best_of(max(2, repeats // 2), lambda: bare_figure(raw, simplify=False)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    small = make_frame(args.agents, args.small)
    large = make_frame(args.agents, args.large, seed=1)
    # warm up matplotlib (font cache, first figure) so no case pays for it
    draw_and_save(small, 2000)

    cases = [
        (f"small: {args.agents} × {args.small:,} × 2", small, 2000, True),
        (f"large: {args.agents} × {args.large:,} × 2", large, 2000, True),
        (f"raw large (max_points=None): {args.agents} × {args.large:,} × 2", large, None, True),
        (f"raw large, Agg path.simplify off: {args.agents} × {args.large:,} × 2", large, None, False),
    ]
    results = {}
    for label, frame, max_points, simplify in cases:
        repeats = args.repeats if max_points is not None else max(2, args.repeats // 2)
        results[label] = (
            len(frame),
            max_points,
            best_of(repeats, lambda f=frame, m=max_points, s=simplify: draw_and_save(f, m, simplify=s)),
        )

    small_s = results[cases[0][0]][2]
    large_s = results[cases[1][0]][2]
    raw_s = results[cases[2][0]][2]
    raw_unsimplified_s = results[cases[3][0]][2]
    print(f"figsize={FIGSIZE}, dpi={DPI}, Agg; best of {args.repeats} (raw: best of {max(2, args.repeats // 2)})")
    print("time = plot_metrics(frame) + savefig(PNG); building the frame is not timed\n")
    print("| case | rows | max_points | plot + save s | vs small | vs raw large |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, (rows, max_points, seconds) in results.items():
        print(
            f"| {label} | {rows:,} | {max_points if max_points is not None else 'None'} | {seconds:.3f} "
            f"| {seconds / small_s:.2f}x | {seconds / raw_s:.3f}x |"
        )
    print()
    print(f"goal large ≤ 2× small: {large_s / small_s:.2f}x -> {'met' if large_s <= 2 * small_s else 'NOT met'}")
    print(f"goal large ≤ 1/10 raw: {large_s / raw_s:.3f}x -> {'met' if large_s <= raw_s / 10 else 'NOT met'}")
    print(
        f"(vs raw with path.simplify off: {large_s / raw_unsimplified_s:.3f}x; "
        f"a figure's fixed cost is the small case, {small_s:.3f} s = {small_s / raw_s:.2f}x raw)"
    )
    floor_decimated, floor_stubs, floor_raw, floor_unsimplified = floor(large, 2000, args.repeats)
    print(
        "\nthe floor: a bare matplotlib figure of the large case's lines (no layout engine, no titles, one "
        "legend), decimated beforehand (decimation not timed) vs raw:\n"
    )
    print("| bare figure | plot + save s | decimated / raw |")
    print("|---|---:|---:|")
    print(f"| 20 lines decimated to 2,000 points | {floor_decimated:.3f} | {floor_decimated / floor_raw:.3f}x |")
    print(f"| 20 lines of 2 points (next to no data) | {floor_stubs:.3f} | {floor_stubs / floor_raw:.3f}x |")
    print(f"| 20 raw lines of {args.large:,} points | {floor_raw:.3f} | 1.000x |")
    print(
        f"| 20 raw lines, path.simplify off | {floor_unsimplified:.3f} | {floor_unsimplified / floor_raw:.3f}x "
        f"(decimated / this: {floor_decimated / floor_unsimplified:.3f}x) |"
    )
    print("\nwhere the large case's time goes:\n")
    print("| stage | s |")
    print("|---|---:|")
    for stage, seconds in stages(large, 2000, args.repeats).items():
        print(f"| {stage} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
