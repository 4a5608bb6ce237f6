"""Matplotlib pictures of training stores: curves per metric and agent, CrewAI feedback and quality.

Figures are built without pyplot, so nothing leaks into global state; every
function returns its Figure or Axes and never calls ``plt.show()``. A figure made
here is a :class:`NotebookFigure`, which shows itself as one PNG in Jupyter with
or without ``%matplotlib inline``. The numeric helpers (:func:`ema`,
:func:`decimate_minmax`, :func:`best_point`, :func:`agent_colors`) are pure and
tested on their own.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import matplotlib
import matplotlib.image
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.text import Annotation
from matplotlib.textpath import TextToPath
from matplotlib.ticker import MaxNLocator

from .crewai.sources import read_trained
from .frames import FrameSource, feedback_frame, frame_for, metrics_frame, open_store, trained_agents_frame
from .navigation import agent_labels, check_agent_names, short_id
from .store import Source, agent_names_argument, resolve_agents

__all__ = [
    "MarkedFigure",
    "NotebookAxes",
    "NotebookFigure",
    "agent_colors",
    "best_point",
    "decimate_minmax",
    "ema",
    "mark_iteration",
    "metric_direction",
    "move_marker",
    "plot_feedback",
    "plot_metric",
    "plot_metrics",
    "plot_quality",
]

Direction = Literal["min", "max"]
Best = Direction | Literal["auto"] | Mapping[str, Direction | None] | None


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
    finite: np.ndarray = np.isfinite(y)
    if not finite.any():
        return None
    candidates = np.where(finite, y, np.inf if mode == "min" else -np.inf)
    index = int(candidates.argmin() if mode == "min" else candidates.argmax())
    return np.asarray(x)[index].item(), float(y[index])


#: Name tokens of metrics where lower is better, and where higher is better (see :func:`metric_direction`).
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {"loss", "error", "err", "perplexity", "ppl", "mse", "mae", "rmse", "mape", "nll", "cer", "wer", "regret", "cost"}
)
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {
        "accuracy",
        "acc",
        "f1",
        "precision",
        "recall",
        "auc",
        "bleu",
        "rouge",
        "iou",
        "dice",
        "r2",
        "mcc",
        "ndcg",
        "mrr",
        "reward",
        "quality",
    }
)


def metric_direction(metric: str) -> Direction | None:
    """Whether lower (``"min"``) or higher (``"max"``) values of ``metric`` are better, by its name.

    The rule behind ``best="auto"``: take the last dotted component of the
    name (``"metrics.val_f1"`` -> ``"val_f1"``), lower-case it and split it into
    tokens at anything that is not a letter or digit (``"val"``, ``"f1"``). A
    token in :data:`LOWER_IS_BETTER` (loss, error, err, perplexity, ppl, mse,
    mae, rmse, mape, nll, cer, wer, regret, cost) means ``"min"``; one in
    :data:`HIGHER_IS_BETTER` (accuracy, acc, f1, precision, recall, auc,
    bleu, rouge, iou, dice, r2, mcc, ndcg, mrr, reward, quality) means
    ``"max"``. Neither, or both (``"acc_loss"``), gives ``None``: unmarked.

    Examples
    --------
    >>> metric_direction("loss"), metric_direction("metrics.F1"), metric_direction("val-accuracy")
    ('min', 'max', 'max')
    >>> metric_direction("lossless_ratio"), metric_direction("metrics.loss.count") is None
    (None, True)
    """
    tokens = set(re.split(r"[^0-9a-z]+", str(metric).rsplit(".", 1)[-1].lower()))
    lower, higher = bool(tokens & LOWER_IS_BETTER), bool(tokens & HIGHER_IS_BETTER)
    if lower == higher:
        return None
    return "min" if lower else "max"


def _best_modes(best: Any, metrics: Sequence[str], available: Sequence[str]) -> dict[str, Direction | None]:
    """The direction to mark for each of ``metrics`` under the ``best=`` option."""
    allowed: tuple[Direction, Direction] = ("min", "max")
    if best is None or (isinstance(best, str) and best in allowed):
        return dict.fromkeys(metrics, best)
    if isinstance(best, str) and best == "auto":
        return {metric: metric_direction(metric) for metric in metrics}
    if not isinstance(best, Mapping):
        raise ValueError(
            "best must be 'min', 'max', 'auto', None or a mapping of metric name to 'min'/'max' "
            f"(e.g. best={{'loss': 'min', 'f1': 'max'}}); got {best!r}"
        )
    for name, mode in best.items():
        if mode is not None and mode not in allowed:
            raise ValueError(f"best[{name!r}] must be 'min', 'max' or None; got {mode!r}")
    last = {metric: metric.rsplit(".", 1)[-1] for metric in available}
    unknown = [name for name in best if name not in last and name not in last.values()]
    if unknown:
        raise ValueError(
            f"best names metric {', '.join(map(repr, unknown))}, which the store does not have; "
            f"it has: {', '.join(available)}"
        )
    # A full metric name wins over its last dotted component ("f1" marks "metrics.f1").
    return {metric: best[metric] if metric in best else best.get(last[metric]) for metric in metrics}


def agent_colors(agents: Iterable[str]) -> dict[str, Any]:
    """One colour per agent, stable across panels (tab10, then tab20 for more agents)."""
    names = list(dict.fromkeys(agents))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {agent: cmap(index % cmap.N) for index, agent in enumerate(names)}


# -- figures that show themselves ----------------------------------------------------------


def _png(figure: Figure) -> bytes | None:
    # What IPython's inline formatter draws: the figure's own dpi and face colour, cropped to its artists.
    if not figure.axes:
        return None
    buffer = io.BytesIO()
    face, edge = figure.get_facecolor(), figure.get_edgecolor()
    figure.savefig(buffer, format="png", dpi=figure.dpi, bbox_inches="tight", facecolor=face, edgecolor=edge)
    return buffer.getvalue()


class NotebookFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that shows itself as one PNG in Jupyter.

    IPython draws a plain Figure only after pyplot's inline backend has
    registered its formatter (``%matplotlib inline``, or any ``import
    matplotlib.pyplot`` in a kernel); a figure built without pyplot, in a fresh
    kernel, shows as ``<Figure size ...>``. This one has ``_repr_png_``, which
    IPython uses when no formatter is registered for figures; when the inline
    backend's formatter is, IPython uses that one instead (with its settings,
    e.g. retina). Either way, one image. The inline backend shows only figures
    pyplot made, so it never shows this one a second time.

    Everything else is a plain Figure: ``savefig``, the Agg canvas, pickling.
    """

    def _repr_png_(self) -> bytes | None:
        return _png(self)


class NotebookAxes(Axes):
    """The Axes of a one-panel :class:`NotebookFigure`, e.g. from ``plot_quality(trained)``.

    Shown in Jupyter as its whole figure, once (the Axes is what the plot
    function returns). An Axes passed in as ``ax=`` is returned as it is: its
    figure is yours to show.
    """

    def _repr_png_(self) -> bytes | None:
        return _png(self.figure.figure)  # the root Figure (a Figure's .figure is itself, a SubFigure's its root)


def _new_axes(figsize: tuple[float, float]) -> NotebookAxes:
    axes = NotebookFigure(figsize=figsize, layout="constrained").add_subplot(axes_class=NotebookAxes)
    assert isinstance(axes, NotebookAxes)  # an axes_class instance; matplotlib's stub says Axes
    return axes


# -- input ----------------------------------------------------------------------------------


def _metrics_data(
    source: FrameSource, agents: str | Sequence[str] | None = None, *, trusted: bool = False
) -> pd.DataFrame:
    # Asking for the agents up front lets a SQLite store read only their rows.
    return frame_for(source, metrics_frame, lambda store: metrics_frame(store, agents=agents, trusted=trusted))


Line = tuple[np.ndarray, np.ndarray]


def _select(
    frame: pd.DataFrame, metrics: str | Sequence[str] | None, agents: str | Sequence[str] | None
) -> tuple[dict[tuple[str, str], Line], list[str], list[str], list[str]]:
    """Check the names and split the chosen rows into ``{(metric, agent): (iterations, values)}``.

    Returns the lines, the chosen metrics, the chosen agents (in the frame's
    order) and every metric the frame has.

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
    # The frame resolved the names given (id, role, id prefix) and says so in attrs; a DataFrame's are resolved here.
    given = frame.attrs.get("named") or {}
    names = agent_names_argument(agents)
    resolved = resolve_agents(available_agents, [given.get(name, name) for name in names]) if names else None
    wanted_agents = list(dict.fromkeys(resolved.values())) if resolved else available_agents
    unknown = [m for m in wanted_metrics if m not in available_metrics]
    if unknown:
        raise ValueError(
            f"unknown metric {', '.join(map(repr, unknown))}; the store has: {', '.join(available_metrics)}"
        )
    # One agent order everywhere: the store's (the frame's order of first appearance), not the order asked in.
    asked = set(wanted_agents)
    wanted_agents = [agent for agent in available_agents if agent in asked]
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
    return lines, wanted_metrics, wanted_agents, available_metrics


# -- drawing ----------------------------------------------------------------------------------


class _IterationTicks(MaxNLocator):
    """Whole-number ticks, only inside the view limits (MaxNLocator adds one beyond each end)."""

    def __init__(self) -> None:
        # min_n_ticks=1: a one-iteration view holds one whole number; the default 2 falls back to 0.5 steps.
        super().__init__(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10])

    # matplotlib's stub says Sequence[float]; MaxNLocator.tick_values returns an ndarray, and so does this one.
    def tick_values(self, vmin: float, vmax: float) -> np.ndarray:  # type: ignore[override]
        ticks = np.asarray(super().tick_values(vmin, vmax))
        low, high = sorted((vmin, vmax))
        return ticks[(ticks >= low) & (ticks <= high)]


def _iteration_axis(ax: Axes) -> None:
    # Iterations are whole numbers: never tick 0.5 on a short run.
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(_IterationTicks())
    ax.grid(True, alpha=0.3)


#: Space beside the first and last iteration: this share of the run, and at least this many iterations.
_X_MARGIN, _X_MARGIN_MIN = 0.05, 0.6


def _set_iteration_limits(ax: Axes, first: float, last: float) -> None:
    """Show iterations ``first`` to ``last`` with a margin on each side, at every run length.

    Call once everything is drawn (the x axis may be shared). Autoscaling gives a
    one-iteration run ±0.05 and puts a two-iteration run's last point on the
    spine, where the browser's iteration marker cannot be seen; here the first
    and last points always lie strictly inside the limits.
    """
    margin = max(_X_MARGIN_MIN, _X_MARGIN * (last - first))
    ax.set_xlim(first - margin, last + margin)


def _span(lines: Iterable[Line]) -> tuple[float, float] | None:
    """First and last iteration of lines whose iterations are sorted (``None`` for no points)."""
    ends = [(float(x[0]), float(x[-1])) for x, _ in lines if len(x)]
    if not ends:
        return None
    return min(first for first, _ in ends), max(last for _, last in ends)


def _isolated(y: np.ndarray) -> np.ndarray:
    """Finite points with no finite neighbour: a line draws nothing there, so they get a marker."""
    finite: npt.NDArray[np.bool_] = np.isfinite(y)
    before: npt.NDArray[np.bool_] = np.concatenate([[False], finite[:-1]])
    after: npt.NDArray[np.bool_] = np.concatenate([finite[1:], [False]])
    return finite & ~before & ~after


def _place_notes(ax: Axes, notes: Sequence[Annotation]) -> None:
    """Turn each best-point note towards the middle of the axes, so it stays inside them.

    Call once the limits are final: a note right of the middle is written to the
    left of its point, one above the middle below it.
    """
    if not notes:
        return
    ax.get_ylim()  # runs any pending autoscale
    to_axes = ax.transData - ax.transAxes
    for note in notes:
        x, y = to_axes.transform(note.xy)
        right, top = x > 0.5, y > 0.5
        note.set_horizontalalignment("right" if right else "left")
        note.set_verticalalignment("top" if top else "bottom")
        note.xyann = (-4 if right else 4, -6 if top else 6)


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
    best: Direction | None,
    max_points: int | None,
    labels: Mapping[str, str],
) -> list[Annotation]:
    """Draw ``metric``'s lines on ``ax``; return the best-point notes (placed later by :func:`_place_notes`).

    Missing values (NaN, e.g. a CrewAI record without an improved output) break
    the line: a gap, not a straight line across it. A point with no neighbour
    on either side is drawn as a dot.
    """
    notes: list[Annotation] = []
    for agent in agents:
        if (metric, agent) not in lines:
            continue
        x, y = lines[metric, agent]
        label = labels.get(agent, agent)
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
            # The average carries over a missing value; keep the raw line's gaps in the smoothed one.
            shown_y = np.where(np.isnan(y), np.nan, ema(y, smoothing))
            line_x, line_y = decimate_minmax(x, shown_y, max_points)
            width = 1.6
        else:
            line_x, line_y = decimate_minmax(x, y, max_points)
            shown_y, width = y, 1.4
        lone = _isolated(line_y)
        dots = {"marker": "o", "markersize": 4, "markevery": lone.tolist()} if lone.any() else {}
        ax.plot(line_x, line_y, color=color, linewidth=width, label=label, **dots)
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
                note = ax.annotate(
                    f"{point[1]:.4g} @ {point[0]}",
                    point,
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                    color=color,
                )
                notes.append(note)
    ax.set_title(metric)
    _iteration_axis(ax)
    if logy:
        ax.set_yscale("log")
    return notes


def plot_metric(
    source: FrameSource,
    metric: str,
    *,
    ax: Axes | None = None,
    agents: str | Sequence[str] | None = None,
    smoothing: float = 0.0,
    logy: bool = False,
    best: Best = None,
    max_points: int | None = 2000,
    agent_names: Mapping[str, str] | None = None,
    trusted: bool = False,
) -> Axes:
    """Draw one metric, one line per agent, on ``ax`` (a new :class:`NotebookAxes` when ``None``).

    Parameters
    ----------
    source
        A handler, store path, store dict, or a DataFrame from :func:`~crewtrain_nb.metrics_frame`.
    metric
        Metric name (nested keys joined with ``"."``, e.g. ``"metrics.f1"``).
    ax, agents, smoothing, logy, best, max_points, agent_names, trusted
        As in :func:`plot_metrics`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ema([], smoothing)  # validates the weight before any drawing
    lines, _, chosen_agents, available = _select(_metrics_data(source, agents, trusted=trusted), [metric], agents)
    modes = _best_modes(best, [metric], available)
    check_agent_names(_labels(agent_names), chosen_agents)
    if ax is None:
        ax = _new_axes((6, 3.5))
    span = _span(lines.values())
    if span is not None and ax.has_data():  # a user's axes with other lines: keep showing them
        span = min(span[0], ax.dataLim.x0), max(span[1], ax.dataLim.x1)
    notes = _draw_metric(
        ax,
        lines,
        metric,
        chosen_agents,
        agent_colors(chosen_agents),
        smoothing=smoothing,
        logy=logy,
        best=modes[metric],
        max_points=max_points,
        labels=_labels(agent_names),
    )
    if span is not None:
        _set_iteration_limits(ax, *span)
    _place_notes(ax, notes)
    if len(chosen_agents) > 1:
        ax.legend(fontsize=8)
    return ax


def plot_metrics(
    source: FrameSource,
    metrics: str | Sequence[str] | None = None,
    *,
    agents: str | Sequence[str] | None = None,
    smoothing: float = 0.0,
    logy: bool = False,
    best: Best = None,
    max_points: int | None = 2000,
    figsize: tuple[float, float] | None = None,
    agent_names: Mapping[str, str] | None = None,
    trusted: bool = False,
) -> Figure:
    """Small multiples: one panel per metric, one line per agent, one shared legend.

    Parameters
    ----------
    source
        A handler, store path, store dict, or a DataFrame from :func:`~crewtrain_nb.metrics_frame`.
    metrics
        Metric names; all numeric metrics when ``None``.
    agents
        Agents to draw (each an id, a role or a unique id prefix); all when
        ``None``. Colours stay the same across panels.
    smoothing
        TensorBoard's debiased EMA weight in ``[0, 1)``; when > 0 the raw curve
        stays visible, faint, behind the smoothed one.
    logy
        Log-scale y axes; values <= 0 are left out with a warning.
    best
        Mark and annotate each line's best point (of the smoothed line when
        smoothing): ``"min"`` or ``"max"`` for every metric; a mapping by
        metric, e.g. ``{"loss": "min", "f1": "max"}`` (a key is a full metric
        name or its last dotted component; metrics not in it are unmarked);
        or ``"auto"``, which decides by name (:func:`metric_direction`: loss,
        error, perplexity, mse, mae, rmse, ... min; accuracy, acc, f1,
        precision, recall, auc, ... max; other names unmarked). Notes stay
        inside the axes.
    max_points
        Lines longer than this are thinned by :func:`decimate_minmax` (each
        bucket keeps its min and max); ``None`` draws every point.
    figsize
        Figure size in inches; chosen from the grid when ``None``.
    agent_names
        Legend labels by agent id, e.g. ``{uuid: "Writer"}`` (CrewAI's ids are
        uuids); agents not in it are labelled with their id. A mapping none of
        whose keys is an agent drawn warns (``UserWarning``), naming the agents.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Unknown metric or agent (listing the ones there are), no numeric
        metrics, or a ``best`` that is not one of its choices.

    Notes
    -----
    Agents appear in store order (the order they appear in the file), whatever
    order ``agents`` names them in. Iteration ticks are whole numbers, and the
    first and last iteration lie inside the x limits at every run length.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> figure = plot_metrics(make_metrics_data(iterations=20), ["loss", "accuracy"], smoothing=0.5)
    >>> [ax.get_title() for ax in figure.axes]
    ['loss', 'accuracy']
    """
    ema([], smoothing)
    lines, chosen_metrics, chosen_agents, available = _select(
        _metrics_data(source, agents, trusted=trusted), metrics, agents
    )
    modes = _best_modes(best, chosen_metrics, available)
    check_agent_names(_labels(agent_names), chosen_agents)
    columns = min(3, len(chosen_metrics))
    rows = math.ceil(len(chosen_metrics) / columns)
    figure = NotebookFigure(figsize=figsize or (4.2 * columns, 3.0 * rows + 0.6), layout="constrained")
    # One x axis for all panels: the same iteration lines up across metrics, and a metric
    # logged once still spans the run.
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True).ravel()
    colors = agent_colors(chosen_agents)
    labels = _labels(agent_names)
    notes = {
        metric: _draw_metric(
            ax,
            lines,
            metric,
            chosen_agents,
            colors,
            smoothing=smoothing,
            logy=logy,
            best=modes[metric],
            max_points=max_points,
            labels=labels,
        )
        for ax, metric in zip(axes, chosen_metrics, strict=False)
    }
    for ax in axes[len(chosen_metrics) :]:
        figure.delaxes(ax)
    span = _span(lines.values())
    if span is not None:
        _set_iteration_limits(axes[0], *span)
    for ax, metric in zip(axes, chosen_metrics, strict=False):
        _place_notes(ax, notes[metric])
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
            self.figure.draw_artist(line)  # what Axes.draw_artist does: draw it with the figure's canvas
        buffer = io.BytesIO()
        # compress_level 1: encoding at the default level took longer than everything else on a click
        matplotlib.image.imsave(
            buffer, np.asarray(self._canvas.buffer_rgba()), format="png", pil_kwargs={"compress_level": 1}
        )
        return buffer.getvalue()


def _quality_frame(source: Source, *, trusted: bool) -> pd.DataFrame:
    store = open_store(source, trusted=trusted)  # opened once: the kind check and the frame read the same data
    if store.kind == "iterations":
        raise ValueError(
            f"{store.path or 'the source'}: plot_quality needs a trained_agents_data.pkl-shaped store; this one holds "
            "agent -> iteration records: use plot_feedback() for training_data.pkl, plot_metrics() for a metric log"
        )
    return trained_agents_frame(store.data)


def _feedback_frame(source: Source, *, trusted: bool) -> pd.DataFrame:
    store = open_store(source, trusted=trusted)  # opened once: the kind check and the frame read the same data
    if store.kind == "trained_agents":
        raise ValueError(
            f"{store.path or 'the source'}: plot_feedback needs a training_data.pkl-shaped store; "
            "this is a trained-agents store (role -> suggestions, quality): use plot_quality()"
        )
    return feedback_frame(store.data)


def _feedback_records(frame: pd.DataFrame) -> dict[str, dict[int, dict[str, str]]]:
    """The records behind a :func:`~crewtrain_nb.feedback_frame`, as far as roles go: its texts (and 0.86 roles)."""
    keys = [key for key in ("initial_output", "human_feedback", "improved_output", "agent_role") if key in frame]
    records: dict[str, dict[int, dict[str, str]]] = {}
    for row in frame[["agent", "iteration", *keys]].itertuples(index=False):
        values = dict(zip(keys, row[2:], strict=True))
        records.setdefault(str(row[0]), {})[int(row[1])] = {
            key: str(value) for key, value in values.items() if isinstance(value, str)
        }
    return records


def plot_quality(trained_source: FrameSource, *, ax: Axes | None = None, trusted: bool = False) -> Axes:
    """Quality per trained agent role on a 0-10 scale, sorted, values labelled.

    Parameters
    ----------
    trained_source
        A ``trained_agents_data.pkl`` handler, path or dict, or the DataFrame
        :func:`~crewtrain_nb.trained_agents_frame` returns for one.
    ax
        Where to draw; a new :class:`NotebookAxes` (shown in Jupyter as its figure) when ``None``.
    trusted
        As in :func:`plot_metrics`.
    """
    frame = frame_for(trained_source, trained_agents_frame, lambda source: _quality_frame(source, trusted=trusted))
    frame = frame.sort_values("quality", kind="stable", na_position="first")
    if frame.empty:
        raise ValueError("the trained-agents store is empty: nothing to plot")
    if ax is None:
        ax = _new_axes((6, 0.5 * len(frame) + 1.2))
    qualities = frame["quality"].fillna(0).to_numpy(dtype=np.float64)
    bars = ax.barh(frame["agent"].astype(str).tolist(), qualities, color="#4c72b0")
    labels = ["n/a" if pd.isna(q) else f"{q:.1f}" for q in frame["quality"]]
    ax.bar_label(bars, labels=labels, padding=3, fontsize=9)
    ax.set_xlim(0, 10)
    ax.set_xlabel("quality (0-10)")
    ax.set_title("Trained agents: quality")
    ax.grid(True, axis="x", alpha=0.3)
    return ax


#: Points a row's heading may take in :func:`plot_feedback`, per inch of figure width.
_HEADING_POINTS_PER_INCH = 68.0
_HEADING_SIZE = 10.0


def _fit(text: str, width: float, size: float) -> str:
    """``text``, its middle cut to "…" to fit ``width`` points at font ``size`` (measured, no renderer).

    The middle goes, so both a role's start and a label's trailing short id stay.
    """
    font = FontProperties(size=size)
    measure = TextToPath()

    def cut(keep: int) -> str:
        head = (keep + 1) // 2
        return text[:head].rstrip() + "…" + text[len(text) - (keep - head) :].lstrip()

    def fits(candidate: str) -> bool:
        return measure.get_text_width_height_descent(candidate, font, ismath=False)[0] <= width

    if fits(text):
        return text
    low, high = 0, len(text) - 1  # the most characters kept that still fit
    while low < high:
        middle = (low + high + 1) // 2
        if fits(cut(middle)):
            low = middle
        else:
            high = middle - 1
    return cut(low)


def plot_feedback(
    training_source: FrameSource,
    *,
    trained: Source | None = None,
    agent_names: Mapping[str, str] | None = None,
    trusted: bool = False,
) -> Figure:
    """Per agent and iteration: length of the initial vs improved output, and their similarity.

    Iterations without an improved output are marked with a red ``x`` on the
    lengths panel (label ``"no improved output"``); their similarity is
    undefined and left out (a gap in the line).

    Parameters
    ----------
    training_source
        A ``training_data.pkl`` handler, path or dict, or the DataFrame
        :func:`~crewtrain_nb.feedback_frame` returns for one.
    trained
        The run's ``trained_agents_data.pkl`` (handler, path or dict): rows are headed with each agent's
        role as the browser labels agents (``"Role · 0f8fad5b"``, ``" (inferred)"`` after a role inferred
        by :func:`~crewtrain_nb.crewai.match_roles`). Without it, a role comes from the sidecar beside the
        training file, CrewAI 0.86's ``agent_role``, or the ``label`` column of a frame made with ``trained=``.
    agent_names
        Row headings by agent id, e.g. ``{uuid: "Writer · 42af9fc3"}``, used as they are; other
        agents are headed as above, else with their short id (a uuid's first 8 characters, as in the
        browser). A mapping none of whose keys is an agent id warns (``UserWarning``), naming the ids.
        A heading too long for the figure loses its middle to "…".
    trusted
        As in :func:`plot_metrics`.

    Returns
    -------
    matplotlib.figure.Figure
        One row per agent, in store order (a subfigure headed with the agent):
        two panels (lengths, similarity), and one legend for all.
    """
    frame = frame_for(training_source, feedback_frame, lambda source: _feedback_frame(source, trusted=trusted))
    if frame.empty:
        raise ValueError("the training store is empty: no feedback to plot")
    agents = list(dict.fromkeys(frame["agent"]))
    given = _labels(agent_names)
    check_agent_names(given, agents)
    roles_from = read_trained(trained, trusted=trusted)[0] if trained is not None else None
    found = agent_labels(_feedback_records(frame), trained=roles_from, path=frame.attrs.get("source"))
    if "label" in frame.columns and roles_from is None:  # a frame made with trained= carries its labels
        found = {**found, **dict(zip(frame["agent"].astype(str), frame["label"].astype(str), strict=True))}
    # An agent without a role is headed with its short id; a heading given in agent_names is used as it is.
    labels = {**{agent: label for agent, label in found.items() if label != agent}, **given}
    width = 10.0
    figure = NotebookFigure(figsize=(width, 2.6 * len(agents) + 0.6), layout="constrained")
    rows = figure.subfigures(len(agents), 1, squeeze=False)[:, 0]
    legend: dict[str, Any] = {}
    for row, agent in zip(rows, agents, strict=True):
        lengths, similarity = row.subplots(1, 2)
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
        # The agent heads its row once, above both panels: long role names and uuids never run into each other.
        heading = labels.get(agent, short_id(agent))
        row.suptitle(_fit(heading, _HEADING_POINTS_PER_INCH * width, _HEADING_SIZE), fontsize=_HEADING_SIZE)
        lengths.set_title("output length (characters)", fontsize=10)
        (legend["similarity initial → improved"],) = similarity.plot(
            x, mine["similarity"].to_numpy(), marker="o", color="#55a868", label="similarity"
        )
        similarity.set_ylim(0, 1.05)
        similarity.set_title("similarity initial → improved", fontsize=10)
        for ax in (lengths, similarity):
            _iteration_axis(ax)
            # Both panels span every iteration, even when only one has a similarity.
            _set_iteration_limits(ax, x.min(), x.max())
    figure.legend(
        list(legend.values()), list(legend), loc="outside lower center", ncols=len(legend), frameon=False, fontsize=9
    )
    return figure
