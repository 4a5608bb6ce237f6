"""Matplotlib pictures of training stores: curves per metric and agent, CrewAI feedback and quality.

Figures are built with :class:`matplotlib.figure.Figure`, not pyplot, so
nothing leaks into global state; every function returns its Figure or Axes and
never calls ``plt.show()``. The numeric helpers (:func:`ema`,
:func:`decimate_minmax`, :func:`best_point`, :func:`agent_colors`) are pure and
tested on their own.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .frames import feedback_frame, metrics_frame, trained_agents_frame

__all__ = [
    "MarkedFigure",
    "agent_colors",
    "best_point",
    "decimate_minmax",
    "ema",
    "mark_iteration",
    "move_marker",
    "plot_feedback",
    "plot_metric",
    "plot_metrics",
    "plot_quality",
]

Best = Literal["min", "max"] | None
_METRIC_COLUMNS = ("agent", "iteration", "metric", "value")


# -- pure helpers ------------------------------------------------------------------------


def ema(values: Sequence[float] | np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's debiased exponential moving average.

    Equal to ``pandas.Series(values).ewm(alpha=1 - weight, adjust=True, ignore_na=True).mean()``.

    Parameters
    ----------
    values
        The raw series.
    weight
        Smoothing weight in ``[0, 1)``; 0 returns the values unchanged.

    Examples
    --------
    >>> ema([1.0, 0.0], 0.5).round(4).tolist()
    [1.0, 0.3333]
    """
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {weight!r}")
    array = np.asarray(values, dtype=np.float64)
    if weight == 0 or array.size == 0:
        return array.copy()
    return pd.Series(array).ewm(alpha=1 - weight, adjust=True, ignore_na=True).mean().to_numpy()


def decimate_minmax(x: np.ndarray, y: np.ndarray, max_points: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Thin a line to about ``max_points`` points, keeping each bucket's min and max.

    The first and last points and the global min and max always survive, so
    spikes stay visible. Vectorised: a million points take milliseconds.
    ``max_points=None`` returns the line unchanged (no decimation).

    Examples
    --------
    >>> x = np.arange(10_000.0)
    >>> y = np.zeros(10_000); y[4321] = 9.0
    >>> dx, dy = decimate_minmax(x, y, 100)
    >>> len(dx) <= 100, 4321.0 in dx, float(dy.max())
    (True, True, 9.0)
    """
    x = np.asarray(x)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if max_points is None:
        return x, y
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    if n <= max_points:
        return x, y
    buckets = max(1, (max_points - 2) // 2)
    size = math.ceil(n / buckets)
    padded = buckets * size
    low = np.where(np.isnan(y), np.inf, y)
    high = np.where(np.isnan(y), -np.inf, y)
    low = np.concatenate([low, np.full(padded - n, np.inf)]).reshape(buckets, size)
    high = np.concatenate([high, np.full(padded - n, -np.inf)]).reshape(buckets, size)
    offsets = np.arange(buckets) * size
    keep = np.concatenate([[0, n - 1], offsets + low.argmin(axis=1), offsets + high.argmax(axis=1)])
    keep = np.unique(keep[keep < n])  # sorted: the line keeps its x order
    return x[keep], y[keep]


def best_point(x: np.ndarray, y: np.ndarray, mode: Literal["min", "max"]) -> tuple[Any, float] | None:
    """``(x, y)`` of the lowest (``"min"``) or highest (``"max"``) finite value, or ``None``.

    Examples
    --------
    >>> best_point(np.array([0, 1, 2]), np.array([3.0, 1.0, 2.0]), "min")
    (1, 1.0)
    """
    if mode not in ("min", "max"):
        raise ValueError(f"best must be 'min', 'max' or None, got {mode!r}")
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(y)
    if not finite.any():
        return None
    candidates = np.where(finite, y, np.inf if mode == "min" else -np.inf)
    index = int(candidates.argmin() if mode == "min" else candidates.argmax())
    return np.asarray(x)[index].item(), float(y[index])


def agent_colors(agents: Iterable[str]) -> dict[str, Any]:
    """One colour per agent, stable across panels (tab10, then tab20 for more agents)."""
    names = list(dict.fromkeys(agents))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {agent: cmap(index % cmap.N) for index, agent in enumerate(names)}


# -- input ----------------------------------------------------------------------------------


def _metrics_data(source: Any, agents: str | Sequence[str] | None = None) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        missing = [column for column in _METRIC_COLUMNS if column not in source.columns]
        if missing:
            raise ValueError(
                f"a DataFrame source needs the columns of metrics_frame() {list(_METRIC_COLUMNS)}; missing {missing}"
            )
        return source
    # Asking for the agents up front lets a SQLite store read only their rows.
    return metrics_frame(source, agents=agents)


Line = tuple[np.ndarray, np.ndarray]


def _select(
    frame: pd.DataFrame, metrics: str | Sequence[str] | None, agents: str | Sequence[str] | None
) -> tuple[dict[tuple[str, str], Line], list[str], list[str]]:
    """Check the names and split the chosen rows into ``{(metric, agent): (iterations, values)}``.

    One pass over the frame: names are factorized once (``dict.fromkeys`` over a
    2-million-row string column took seconds), rows of each line are found by
    their combined code, and lines are sorted by iteration only when they are not
    sorted already (``metrics_frame`` output is).
    """
    if frame.empty:
        raise ValueError(
            "the store has no numeric metrics to plot (its records hold no int/float leaves); "
            "for CrewAI feedback use plot_feedback(), for trained agents plot_quality()"
        )
    metric_codes, metric_names = pd.factorize(frame["metric"])  # order of first appearance
    agent_codes, agent_names = pd.factorize(frame["agent"])
    available_metrics = [str(name) for name in metric_names]
    available_agents = [str(name) for name in agent_names]
    wanted_metrics = [metrics] if isinstance(metrics, str) else list(metrics or available_metrics)
    wanted_agents = [agents] if isinstance(agents, str) else list(agents or available_agents)
    unknown = [m for m in wanted_metrics if m not in available_metrics]
    if unknown:
        raise ValueError(
            f"unknown metric {', '.join(map(repr, unknown))}; the store has: {', '.join(available_metrics)}"
        )
    unknown = [a for a in wanted_agents if a not in available_agents]
    if unknown:
        raise ValueError(f"unknown agent {', '.join(map(repr, unknown))}; the store has: {', '.join(available_agents)}")
    iterations = frame["iteration"].to_numpy()
    values = frame["value"].to_numpy(dtype=np.float64, na_value=np.nan)
    keys = metric_codes.astype(np.int64) * len(available_agents) + agent_codes
    named = (metric_codes >= 0) & (agent_codes >= 0)  # a missing name is -1: such rows belong to no line
    if not named.all():
        keys, iterations, values = keys[named], iterations[named], values[named]
    # A run is a stretch of rows of one line; metrics_frame gives one run per line, so no sort is needed.
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    if len(np.unique(keys[starts])) != len(starts):
        order = np.argsort(keys, kind="stable")
        keys, iterations, values = keys[order], iterations[order], values[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    stops = np.append(starts[1:], len(keys))
    wanted = {(m, a) for m in wanted_metrics for a in wanted_agents}
    lines: dict[tuple[str, str], Line] = {}
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        key = int(keys[start])
        name = (available_metrics[key // len(available_agents)], available_agents[key % len(available_agents)])
        if name not in wanted:
            continue
        x, y = iterations[start:stop], values[start:stop]
        if len(x) > 1 and not (x[1:] >= x[:-1]).all():
            by_iteration = np.argsort(x, kind="stable")
            x, y = x[by_iteration], y[by_iteration]
        lines[name] = (x, y)
    return lines, wanted_metrics, wanted_agents


# -- drawing ----------------------------------------------------------------------------------


def _iteration_axis(ax: Axes) -> None:
    # Iterations are whole numbers: never tick 0.5 on a short run.
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def _widen_single_iteration(ax: Axes) -> None:
    # Call once everything is drawn (the x axis may be shared): with one iteration
    # only, autoscaling gives ±0.05 and ticks like -0.045; show its neighbours instead.
    low, high = ax.get_xlim()
    if high - low < 2:
        middle = round((low + high) / 2)
        ax.set_xlim(middle - 1, middle + 1)


def _labels(agent_names: Mapping[str, str] | None) -> Mapping[str, str]:
    if agent_names is not None and not isinstance(agent_names, Mapping):
        raise TypeError(f"agent_names must be a mapping of agent id to label, got {type(agent_names).__name__}")
    return {str(agent): str(name) for agent, name in (agent_names or {}).items()}


def _draw_metric(
    ax: Axes,
    lines: dict[tuple[str, str], Line],
    metric: str,
    agents: Sequence[str],
    colors: dict[str, Any],
    *,
    smoothing: float,
    logy: bool,
    best: Best,
    max_points: int | None,
    labels: Mapping[str, str],
) -> None:
    for agent in agents:
        if (metric, agent) not in lines:
            continue
        x, y = lines[metric, agent]
        label = labels.get(agent, agent)
        # A line of one point draws nothing: show that point as a dot.
        dot = {"marker": "o", "markersize": 4} if len(x) == 1 else {}
        if logy and (y <= 0).any():
            warnings.warn(
                f"metric {metric!r} of agent {agent!r} has {(y <= 0).sum()} values <= 0; "
                "they are left out of the log-scale plot",
                UserWarning,
                stacklevel=4,
            )
            y = np.where(y > 0, y, np.nan)
        color = colors[agent]
        if smoothing > 0:
            raw_x, raw_y = decimate_minmax(x, y, max_points)
            ax.plot(raw_x, raw_y, color=color, alpha=0.25, linewidth=1.0, label=f"_{label} (raw)")
            shown_y = ema(y, smoothing)
            smooth_x, smooth_y = decimate_minmax(x, shown_y, max_points)
            ax.plot(smooth_x, smooth_y, color=color, linewidth=1.6, label=label, **dot)
        else:
            line_x, line_y = decimate_minmax(x, y, max_points)
            ax.plot(line_x, line_y, color=color, linewidth=1.4, label=label, **dot)
            shown_y = y
        if best is not None:
            point = best_point(x, shown_y, best)
            if point is not None:
                ax.plot(
                    [point[0]],
                    [point[1]],
                    marker="*",
                    markersize=11,
                    color=color,
                    linestyle="none",
                    markeredgecolor="black",
                    markeredgewidth=0.5,
                    label=f"_best {label}",
                )
                ax.annotate(
                    f"{point[1]:.4g} @ {point[0]}",
                    point,
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                    color=color,
                )
    ax.set_title(metric)
    _iteration_axis(ax)
    if logy:
        ax.set_yscale("log")


def plot_metric(
    source: Any,
    metric: str,
    *,
    ax: Axes | None = None,
    agents: str | Sequence[str] | None = None,
    smoothing: float = 0.0,
    logy: bool = False,
    best: Best = None,
    max_points: int | None = 2000,
    agent_names: Mapping[str, str] | None = None,
) -> Axes:
    """Draw one metric, one line per agent, on ``ax`` (a new Figure's Axes when ``None``).

    Parameters
    ----------
    source
        A handler, store path, store dict, or a DataFrame from :func:`~crewtrain_nb.metrics_frame`.
    metric
        Metric name (nested keys joined with ``"."``, e.g. ``"metrics.f1"``).
    ax, agents, smoothing, logy, best, max_points, agent_names
        As in :func:`plot_metrics`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ema([], smoothing)  # validates the weight before any drawing
    lines, _, chosen_agents = _select(_metrics_data(source, agents), [metric], agents)
    if ax is None:
        ax = Figure(figsize=(6, 3.5), layout="constrained").add_subplot()
    _draw_metric(
        ax,
        lines,
        metric,
        chosen_agents,
        agent_colors(chosen_agents),
        smoothing=smoothing,
        logy=logy,
        best=best,
        max_points=max_points,
        labels=_labels(agent_names),
    )
    _widen_single_iteration(ax)
    if len(chosen_agents) > 1:
        ax.legend(fontsize=8)
    return ax


def plot_metrics(
    source: Any,
    metrics: str | Sequence[str] | None = None,
    *,
    agents: str | Sequence[str] | None = None,
    smoothing: float = 0.0,
    logy: bool = False,
    best: Best = None,
    max_points: int | None = 2000,
    figsize: tuple[float, float] | None = None,
    agent_names: Mapping[str, str] | None = None,
) -> Figure:
    """Small multiples: one panel per metric, one line per agent, one shared legend.

    Parameters
    ----------
    source
        A handler, store path, store dict, or a DataFrame from :func:`~crewtrain_nb.metrics_frame`.
    metrics
        Metric names; all numeric metrics when ``None``.
    agents
        Agents to draw; all when ``None``. Colours stay the same across panels.
    smoothing
        TensorBoard's debiased EMA weight in ``[0, 1)``; when > 0 the raw curve
        stays visible, faint, behind the smoothed one.
    logy
        Log-scale y axes; values <= 0 are left out with a warning.
    best
        ``"min"`` or ``"max"``: mark and annotate each line's best point.
    max_points
        Lines longer than this are thinned by :func:`decimate_minmax` (each
        bucket keeps its min and max); ``None`` draws every point.
    figsize
        Figure size in inches; chosen from the grid when ``None``.
    agent_names
        Legend labels by agent id, e.g. ``{uuid: "Writer"}`` (CrewAI's ids are
        uuids); agents not in it are labelled with their id.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Unknown metric or agent (listing the ones there are), or no numeric metrics.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> figure = plot_metrics(make_metrics_data(iterations=20), ["loss", "accuracy"], smoothing=0.5)
    >>> [ax.get_title() for ax in figure.axes]
    ['loss', 'accuracy']
    """
    ema([], smoothing)
    lines, chosen_metrics, chosen_agents = _select(_metrics_data(source, agents), metrics, agents)
    columns = min(3, len(chosen_metrics))
    rows = math.ceil(len(chosen_metrics) / columns)
    figure = Figure(figsize=figsize or (4.2 * columns, 3.0 * rows + 0.6), layout="constrained")
    # One x axis for all panels: the same iteration lines up across metrics, and a metric
    # logged once still spans the run.
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True).ravel()
    colors = agent_colors(chosen_agents)
    labels = _labels(agent_names)
    for ax, metric in zip(axes, chosen_metrics, strict=False):
        _draw_metric(
            ax,
            lines,
            metric,
            chosen_agents,
            colors,
            smoothing=smoothing,
            logy=logy,
            best=best,
            max_points=max_points,
            labels=labels,
        )
    for ax in axes[len(chosen_metrics) :]:
        figure.delaxes(ax)
    _widen_single_iteration(axes[0])
    handles = [
        Line2D([], [], color=colors[agent], linewidth=2, label=labels.get(agent, agent)) for agent in chosen_agents
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)
    return figure


def mark_iteration(target: Figure | Axes, iteration: float | None) -> list[Line2D]:
    """Add a dashed vertical marker at ``iteration`` to every panel; return the lines.

    Move them later with :func:`move_marker` instead of redrawing the figure.
    The x limits are fixed first, so a marker never stretches the axis.
    """
    axes = target.axes if isinstance(target, Figure) else [target]
    for ax in axes:
        ax.set_xlim(ax.get_xlim())  # get_xlim runs any pending autoscale; set_xlim then keeps it
    lines = [ax.axvline(0, color="black", linewidth=1, linestyle="--", alpha=0.7, label="_marker") for ax in axes]
    move_marker(lines, iteration)
    return lines


def move_marker(lines: Sequence[Line2D], iteration: float | None) -> None:
    """Put the markers made by :func:`mark_iteration` at ``iteration`` (hidden when ``None``)."""
    for line in lines:
        line.set_visible(iteration is not None)
        if iteration is not None:
            line.set_xdata([iteration, iteration])


class MarkedFigure:
    """A figure drawn once, whose iteration marker is then redrawn alone: a PNG per iteration, fast.

    The figure is rendered once with the Agg canvas and its pixels kept; each
    :meth:`png` restores those pixels, draws only the markers on top (matplotlib's
    blitting: ``restore_region`` + ``draw_artist``) and encodes the image. The
    curves are not drawn again, which on a browser click is the difference
    between ~150 ms and a few ms.

    Parameters
    ----------
    figure
        The figure, e.g. from :func:`plot_metrics`. Markers are added to every panel.
    dpi
        Pixels per inch of the PNGs.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> marked = MarkedFigure(plot_metrics(make_metrics_data(iterations=10), "loss"))
    >>> marked.png(4)[:4], [list(line.get_xdata()) for line in marked.markers]
    (b'\\x89PNG', [[4, 4]])
    """

    def __init__(self, figure: Figure, *, dpi: float = 72) -> None:
        self.figure = figure
        figure.set_dpi(dpi)
        self.markers = mark_iteration(figure, None)
        for line in self.markers:
            line.set_animated(True)  # left out of the full draw; drawn alone by png()
        self._canvas = FigureCanvasAgg(figure)
        self._canvas.draw()
        self._background = self._canvas.copy_from_bbox(figure.bbox)

    def png(self, iteration: float | None) -> bytes:
        """The figure as PNG bytes with the markers at ``iteration`` (none when ``None``)."""
        move_marker(self.markers, iteration)
        self._canvas.restore_region(self._background)
        for line in self.markers:
            line.axes.draw_artist(line)
        buffer = io.BytesIO()
        # compress_level 1: encoding at the default level took longer than everything else on a click
        matplotlib.image.imsave(
            buffer, np.asarray(self._canvas.buffer_rgba()), format="png", pil_kwargs={"compress_level": 1}
        )
        return buffer.getvalue()


def plot_quality(trained_source: Any, *, ax: Axes | None = None) -> Axes:
    """Quality per trained agent role on a 0-10 scale, sorted, values labelled.

    Parameters
    ----------
    trained_source
        A ``trained_agents_data.pkl`` handler, path or dict.
    ax
        Where to draw; a new Figure's Axes when ``None``.
    """
    frame = trained_agents_frame(trained_source).sort_values("quality", kind="stable", na_position="first")
    if frame.empty:
        raise ValueError("the trained-agents store is empty: nothing to plot")
    if ax is None:
        ax = Figure(figsize=(6, 0.5 * len(frame) + 1.2), layout="constrained").add_subplot()
    qualities = frame["quality"].fillna(0).to_numpy(dtype=np.float64)
    bars = ax.barh(frame["agent"].astype(str).tolist(), qualities, color="#4c72b0")
    labels = ["n/a" if pd.isna(q) else f"{q:.1f}" for q in frame["quality"]]
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set_xlim(0, 10)
    ax.set_xlabel("quality (0-10)")
    ax.set_title("Trained agents: quality")
    ax.grid(True, axis="x", alpha=0.3)
    return ax


def plot_feedback(training_source: Any, *, agent_names: Mapping[str, str] | None = None) -> Figure:
    """Per agent and iteration: length of the initial vs improved output, and their similarity.

    Iterations without an improved output are marked with a red ``x`` on the
    lengths panel (label ``"no improved output"``); their similarity is
    undefined and left out.

    Parameters
    ----------
    training_source
        A ``training_data.pkl`` handler, path or dict.
    agent_names
        Panel titles by agent id, e.g. ``{uuid: "Writer · 42af9fc3"}``; agents not
        in it are titled with their id.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels per agent (lengths, similarity) and one legend for all.
    """
    frame = feedback_frame(training_source)
    if frame.empty:
        raise ValueError("the training store is empty: no feedback to plot")
    labels = _labels(agent_names)
    agents = list(dict.fromkeys(frame["agent"]))
    figure = Figure(figsize=(10, 2.4 * len(agents) + 0.6), layout="constrained")
    grid = figure.subplots(len(agents), 2, squeeze=False)
    legend: dict[str, Any] = {}
    for (lengths, similarity), agent in zip(grid, agents, strict=True):
        mine = frame[frame["agent"] == agent]
        x = mine["iteration"].to_numpy()
        initial = mine["initial_chars"].astype("float64").fillna(0).to_numpy()
        improved = mine["improved_chars"].astype("float64").to_numpy()
        legend["initial output"] = lengths.bar(x - 0.2, initial, width=0.4, color="#8c8c8c", label="initial output")
        legend["improved output"] = lengths.bar(
            x + 0.2, np.nan_to_num(improved), width=0.4, color="#4c72b0", label="improved output"
        )
        missing = np.isnan(improved)
        if missing.any():
            (legend["no improved output"],) = lengths.plot(
                x[missing] + 0.2,
                np.zeros(missing.sum()),
                linestyle="none",
                marker="x",
                color="#c44e52",
                markersize=9,
                markeredgewidth=2,
                label="no improved output",
                clip_on=False,
            )
        label = labels.get(agent, agent)
        lengths.set_title(f"{label}: output length (characters)", fontsize=10)
        (legend["similarity initial → improved"],) = similarity.plot(
            x, mine["similarity"].to_numpy(), marker="o", color="#55a868", label="similarity"
        )
        similarity.set_ylim(0, 1.05)
        similarity.set_title(f"{label}: similarity initial → improved", fontsize=10)
        for ax in (lengths, similarity):
            _iteration_axis(ax)
            # Both panels span every iteration, even when only one has a similarity.
            ax.set_xlim(x.min() - 0.6, x.max() + 0.6)
    figure.legend(
        list(legend.values()), list(legend), loc="outside lower center", ncols=len(legend), frameon=False, fontsize=9
    )
    return figure
