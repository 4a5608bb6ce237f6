"""Plots: assert on artists (lines, data, labels, markers), not pixels."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.image
import nbformat
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.testing.compare import compare_images
from matplotlib.testing.decorators import check_figures_equal
from matplotlib.ticker import MaxNLocator

from crewtrain_nb import (
    CrewTrainingHandler,
    StoreFormatError,
    StoreNotFoundError,
    UnsafePickleError,
    feedback_frame,
    metrics_frame,
    trained_agents_frame,
)
from crewtrain_nb.demo import make_training_data
from crewtrain_nb.plots import (
    MarkedFigure,
    agent_colors,
    best_point,
    decimate_minmax,
    ema,
    mark_iteration,
    metric_direction,
    move_marker,
    plot_feedback,
    plot_metric,
    plot_metrics,
    plot_quality,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def visible_lines(ax: Any) -> list[Any]:
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# -- pure helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.6, 0.9, 0.99])
def test_ema_equals_pandas_debiased_ewm(weight: float) -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=500).cumsum()
    values[[10, 11, 200]] = np.nan
    expected = pd.Series(values).ewm(alpha=1 - weight, adjust=True, ignore_na=True).mean().to_numpy()
    if weight == 0:
        expected = values
    np.testing.assert_allclose(ema(values, weight), expected, equal_nan=True)


@pytest.mark.parametrize("weight", [-0.1, 1.0, 2])
def test_ema_rejects_weights_outside_unit_interval(weight: float) -> None:
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\)"):
        ema([1.0], weight)


def test_decimation_keeps_extremes_ends_and_order() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(1_000_000)
    y = rng.normal(size=x.size)
    y[123_457] = 50.0
    y[876_543] = -50.0
    dx, dy = decimate_minmax(x, y, 2000)
    assert len(dx) <= 2000
    assert dy.max() == 50.0 and dy.min() == -50.0
    assert dx[0] == 0 and dx[-1] == x[-1]
    assert np.all(np.diff(dx) > 0)
    np.testing.assert_array_equal(dy, y[dx])  # only real points, no invented ones


def test_decimation_leaves_short_lines_alone_and_handles_nan() -> None:
    x, y = np.arange(10), np.arange(10.0)
    dx, dy = decimate_minmax(x, y, 100)
    assert dx is x and dy is y
    y = np.full(10_000, np.nan)
    y[5000] = 1.0
    dx, dy = decimate_minmax(np.arange(10_000), y, 50)
    assert 5000 in dx
    with pytest.raises(ValueError, match="max_points"):
        decimate_minmax(x, y[:10], 3)


def test_best_point() -> None:
    x = np.array([5, 6, 7, 8])
    y = np.array([np.nan, 2.0, -1.0, 4.0])
    assert best_point(x, y, "min") == (7, -1.0)
    assert best_point(x, y, "max") == (8, 4.0)
    assert best_point(x, np.full(4, np.nan), "min") is None
    with pytest.raises(ValueError, match="best must be"):
        best_point(x, y, "median")  # type: ignore[arg-type]


def test_agent_colors_are_distinct_and_stable() -> None:
    colors = agent_colors(["a", "b", "c"])
    assert len(set(colors.values())) == 3
    assert agent_colors(["a", "b", "c"]) == colors
    assert len(set(agent_colors([f"agent-{n}" for n in range(15)]).values())) == 15


# -- plot_metrics --------------------------------------------------------------------------


def test_small_multiples_one_panel_per_metric_one_line_per_agent(
    metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]
) -> None:
    figure = plot_metrics(metrics_store)
    frame = metrics_frame(metrics_store)
    metrics = list(dict.fromkeys(frame["metric"]))
    assert [ax.get_title() for ax in figure.axes] == metrics
    agents = list(metrics_data)  # the store's order: agents as they appear in the file
    legend_labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend_labels == agents
    colors = agent_colors(agents)
    for ax in figure.axes:
        lines = visible_lines(ax)
        assert [line.get_label() for line in lines] == agents
        for line in lines:
            assert matplotlib.colors.same_color(line.get_color(), colors[line.get_label()])
    loss = next(ax for ax in figure.axes if ax.get_title() == "loss")
    coder = next(line for line in visible_lines(loss) if line.get_label() == "coder")
    np.testing.assert_array_equal(coder.get_xdata(), sorted(metrics_data["coder"]))
    np.testing.assert_allclose(
        coder.get_ydata(), [metrics_data["coder"][i]["loss"] for i in sorted(metrics_data["coder"])]
    )
    assert len(png_bytes(figure)) > 5000


def test_grid_shape_and_selection(metrics_store: CrewTrainingHandler) -> None:
    figure = plot_metrics(metrics_store, ["loss", "accuracy", "metrics.f1", "metrics.recall"], agents=["coder"])
    assert len(figure.axes) == 4
    assert all(len(visible_lines(ax)) == 1 for ax in figure.axes)
    assert plot_metrics(metrics_store, "loss").axes[0].get_title() == "loss"


def test_smoothing_draws_faint_raw_and_smoothed_line(
    metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]
) -> None:
    figure = plot_metrics(metrics_store, ["loss"], agents=["planner"], smoothing=0.8)
    ax = figure.axes[0]
    raw = [line for line in ax.get_lines() if line.get_label().endswith("(raw)")]
    smooth = visible_lines(ax)
    assert len(raw) == 1 and len(smooth) == 1
    assert raw[0].get_alpha() < 0.5
    values = pd.Series([metrics_data["planner"][i]["loss"] for i in sorted(metrics_data["planner"])])
    np.testing.assert_allclose(smooth[0].get_ydata(), values.ewm(alpha=0.2, adjust=True, ignore_na=True).mean())
    np.testing.assert_allclose(raw[0].get_ydata(), values)


def test_best_points_are_marked_where_the_extreme_is(
    metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]
) -> None:
    figure = plot_metrics(metrics_store, ["loss", "accuracy"], best="min")
    loss = figure.axes[0]
    stars = [line for line in loss.get_lines() if line.get_label() == "_best coder"]
    assert len(stars) == 1
    records = metrics_data["coder"]
    best_iteration = min(records, key=lambda i: records[i]["loss"])
    assert stars[0].get_xdata()[0] == best_iteration
    assert stars[0].get_ydata()[0] == records[best_iteration]["loss"]
    assert any(f"@ {best_iteration}" in text.get_text() for text in loss.texts)


def test_logy_warns_about_non_positive_values_and_drops_them(tmp_path: Path) -> None:
    data = {"a": {i: {"loss": value} for i, value in enumerate([1.0, 0.5, 0.0, -1.0, 0.1])}}
    with pytest.warns(UserWarning, match="2 values <= 0"):
        figure = plot_metrics(data, logy=True)
    ax = figure.axes[0]
    assert ax.get_yscale() == "log"
    ydata = visible_lines(ax)[0].get_ydata()
    assert np.isnan(ydata[2]) and np.isnan(ydata[3])
    assert len(png_bytes(figure)) > 1000


def test_long_histories_are_decimated_but_keep_spikes() -> None:
    values = np.sin(np.arange(50_000) / 500.0)
    values[31_337] = 25.0
    frame = pd.DataFrame({"agent": "a", "iteration": np.arange(50_000), "metric": "loss", "value": values})
    line = visible_lines(plot_metrics(frame, max_points=1000).axes[0])[0]
    assert len(line.get_xdata()) <= 1000
    assert max(line.get_ydata()) == 25.0 and 31_337 in line.get_xdata()
    assert min(line.get_ydata()) == values.min()


def test_max_points_none_draws_every_point() -> None:
    values = np.cos(np.arange(5_000) / 50.0)
    frame = pd.DataFrame({"agent": "a", "iteration": np.arange(5_000), "metric": "loss", "value": values})
    line = visible_lines(plot_metrics(frame, max_points=None).axes[0])[0]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(5_000))
    np.testing.assert_array_equal(line.get_ydata(), values)
    assert len(visible_lines(plot_metrics(frame).axes[0])[0].get_xdata()) <= 2000  # the default still thins


def test_dataframe_rows_in_any_order_give_the_same_lines(metrics_store: CrewTrainingHandler) -> None:
    frame = metrics_frame(metrics_store)
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    interleaved = pd.concat([shuffled.iloc[::2], shuffled.iloc[1::2]], ignore_index=True)
    expected = plot_metrics(frame, ["loss", "metrics.f1"])
    for variant in (shuffled, interleaved):
        figure = plot_metrics(variant, ["loss", "metrics.f1"])
        for ax, twin in zip(figure.axes, expected.axes, strict=True):
            lines = {line.get_label(): line for line in visible_lines(ax)}
            assert sorted(lines) == sorted(line.get_label() for line in visible_lines(twin))
            for line in visible_lines(twin):
                np.testing.assert_array_equal(lines[line.get_label()].get_xdata(), line.get_xdata())
                np.testing.assert_array_equal(lines[line.get_label()].get_ydata(), line.get_ydata())


def test_dataframe_source_and_bad_input(metrics_store: CrewTrainingHandler) -> None:
    frame = metrics_frame(metrics_store)
    assert len(plot_metrics(frame).axes) == frame["metric"].nunique()
    with pytest.raises(ValueError, match="unknown metric 'nope'; the store has: .*loss"):
        plot_metrics(metrics_store, ["nope"])
    # The agents are asked of the store itself (a SQLite store then reads only theirs), so the
    # store's reader names the unknown one; a DataFrame source is checked by the plot.
    # One message wherever an agent is named (store order, the file when there is one).
    with pytest.raises(ValueError, match="agents: no agent 'ghost' in .*pkl; its agents are 'planner', 'coder'"):
        plot_metrics(metrics_store, agents=["ghost"])
    with pytest.raises(ValueError, match="agents: no agent 'ghost' in the store; its agents are 'planner', 'coder'"):
        plot_metrics(frame, agents=["ghost"])
    with pytest.raises(ValueError, match="needs the columns"):
        plot_metrics(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="no numeric metrics"):
        plot_metrics({"a": {0: {"initial_output": "text only"}}})


@pytest.fixture
def trained_store(tmp_path: Path, trained_data: dict[str, Any]) -> CrewTrainingHandler:
    """``trained_agents_data.pkl`` on disk, written the way CrewAI writes it: one role at a time."""
    handler = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    for role, entry in trained_data.items():
        handler.save_trained_data(role, entry)
    return handler


def figure_of(drawn: Figure | Axes) -> Figure:
    return drawn if isinstance(drawn, Figure) else drawn.figure


@pytest.mark.parametrize(
    ("plot", "frame_of", "store", "options"),
    [
        (plot_metrics, metrics_frame, "metrics_store", {"smoothing": 0.5, "best": "auto"}),
        (lambda source, **kw: plot_metric(source, "metrics.f1", **kw), metrics_frame, "metrics_store", {"best": "max"}),
        (plot_feedback, feedback_frame, "training_store", {}),
        (plot_quality, trained_agents_frame, "trained_store", {}),
    ],
    ids=["plot_metrics", "plot_metric", "plot_feedback", "plot_quality"],
)
def test_every_plot_draws_the_frame_its_frame_function_returns_as_it_draws_the_store(
    plot: Any, frame_of: Any, store: str, options: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    handler = request.getfixturevalue(store)
    from_store = figure_of(plot(handler, **options))
    frame = frame_of(handler)
    before = frame.copy()
    from_frame = figure_of(plot(frame, **options))
    assert png_bytes(from_frame) == png_bytes(from_store)
    assert [ax.get_title() for ax in from_frame.axes] == [ax.get_title() for ax in from_store.axes]
    pd.testing.assert_frame_equal(frame, before)  # the frame is drawn, not changed
    with pytest.raises(ValueError, match=rf"a DataFrame source needs the columns of {frame_of.__name__}\(\)"):
        plot(frame.drop(columns=frame.columns[-1]), **options)


def test_plot_metric_on_a_given_axes(metrics_store: CrewTrainingHandler) -> None:
    figure = Figure()
    ax = figure.add_subplot()
    assert plot_metric(metrics_store, "accuracy", ax=ax, smoothing=0.5) is ax
    assert ax.get_title() == "accuracy"
    assert len(visible_lines(ax)) == 3
    own = plot_metric(metrics_store, "loss")
    assert own.figure is not None and own.get_title() == "loss"


def test_iteration_marker_moves_without_redraw(metrics_store: CrewTrainingHandler) -> None:
    figure = plot_metrics(metrics_store, ["loss", "accuracy"])
    lines = mark_iteration(figure, 5)
    assert len(lines) == 2
    assert [list(line.get_xdata()) for line in lines] == [[5, 5], [5, 5]]
    move_marker(lines, 9)
    assert all(list(line.get_xdata()) == [9, 9] and line.get_visible() for line in lines)
    move_marker(lines, None)
    assert not any(line.get_visible() for line in lines)
    assert len(png_bytes(figure)) > 1000


def decode_png(data: bytes) -> np.ndarray:
    return matplotlib.image.imread(io.BytesIO(data))


def test_iteration_marker_does_not_stretch_the_x_axis() -> None:
    data = {"late": {i: {"loss": 1.0 / i} for i in range(100, 141)}}
    figure = plot_metrics(data)
    before = figure.axes[0].get_xlim()
    mark_iteration(figure, 120)
    assert figure.axes[0].get_xlim() == before and before[0] > 90


def test_marked_figure_png_equals_a_full_redraw_and_moves_only_the_marker(metrics_data: dict[str, Any]) -> None:
    marked = MarkedFigure(plot_metrics(metrics_data, ["loss", "accuracy"]), dpi=72)
    at_5 = decode_png(marked.png(5))
    twin = plot_metrics(metrics_data, ["loss", "accuracy"])
    mark_iteration(twin, 5)
    buffer = io.BytesIO()
    twin.savefig(buffer, format="png", dpi=72)
    full = decode_png(buffer.getvalue())
    assert at_5.shape == full.shape
    np.testing.assert_allclose(at_5, full, atol=1.5 / 255)  # blitting draws what a full redraw draws
    at_20 = decode_png(marked.png(20))
    changed_columns = set(np.nonzero(np.abs(at_5 - at_20).max(axis=2) > 1.5 / 255)[1].tolist())
    marker_columns = {
        int(ax.transData.transform((iteration, 0))[0]) for ax in marked.figure.axes for iteration in (5, 20)
    }
    assert changed_columns  # the marker moved
    assert all(min(abs(column - m) for m in marker_columns) <= 2 for column in changed_columns)
    assert [list(line.get_xdata()) for line in marked.markers] == [[20, 20], [20, 20]]
    hidden = decode_png(marked.png(None))
    assert not any(line.get_visible() for line in marked.markers)
    buffer = io.BytesIO()
    plot_metrics(metrics_data, ["loss", "accuracy"]).savefig(buffer, format="png", dpi=72)
    np.testing.assert_allclose(hidden, decode_png(buffer.getvalue()), atol=1.5 / 255)


@check_figures_equal(extensions=["png"])
def test_single_metric_figure_matches_a_hand_built_twin(fig_test: Figure, fig_ref: Figure) -> None:
    data = {"solo": {i: {"loss": 1.0 / (i + 1)} for i in range(30)}}
    plot_metric(data, "loss", ax=fig_test.add_subplot())
    ax = fig_ref.add_subplot()
    ax.plot(range(30), [1.0 / (i + 1) for i in range(30)], color=agent_colors(["solo"])["solo"], linewidth=1.4)
    ax.set_title("loss")
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))
    ax.grid(True, alpha=0.3)


def test_composite_figure_matches_a_hand_built_twin(tmp_path: Path) -> None:
    # check_figures_equal hands the test a Figure, but plot_metrics makes its own; compare_images is
    # what that decorator runs underneath, on the two saved PNGs.
    data = {
        agent: {i: {"loss": scale / (i + 1), "accuracy": 1 - scale / (i + 2)} for i in range(40)}
        for agent, scale in (("alpha", 1.0), ("beta", 0.5))
    }
    plot_metrics(data, ["loss", "accuracy"]).savefig(tmp_path / "test.png")
    twin = Figure(figsize=(4.2 * 2, 3.0 + 0.6), layout="constrained")
    colors = agent_colors(["alpha", "beta"])
    for ax, metric in zip(twin.subplots(1, 2), ["loss", "accuracy"], strict=True):
        for agent in ("alpha", "beta"):
            ax.plot(range(40), [data[agent][i][metric] for i in range(40)], color=colors[agent], linewidth=1.4)
        ax.set_title(metric)
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1, steps=[1, 2, 5, 10]))
        ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colors[agent], linewidth=2, label=agent) for agent in ("alpha", "beta")]
    twin.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    twin.savefig(tmp_path / "twin.png")
    assert compare_images(str(tmp_path / "twin.png"), str(tmp_path / "test.png"), tol=0) is None


def test_best_max_on_the_smoothed_line(metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]) -> None:
    ax = plot_metrics(metrics_store, ["accuracy"], agents=["critic"], smoothing=0.6, best="max").axes[0]
    records = metrics_data["critic"]
    smoothed = ema([records[i]["accuracy"] for i in sorted(records)], 0.6)
    star = next(line for line in ax.get_lines() if line.get_label() == "_best critic")
    assert star.get_xdata()[0] == sorted(records)[int(np.argmax(smoothed))]
    assert star.get_ydata()[0] == pytest.approx(smoothed.max())


# -- CrewAI pictures ------------------------------------------------------------------------


def test_quality_is_sorted_labelled_and_on_a_0_to_10_scale(trained_data: dict[str, Any]) -> None:
    ax = plot_quality(trained_data)
    order = sorted(trained_data, key=lambda role: trained_data[role]["quality"])
    assert [label.get_text() for label in ax.get_yticklabels()] == order
    widths = [patch.get_width() for patch in ax.patches]
    assert widths == sorted(trained_data[role]["quality"] for role in order)
    assert ax.get_xlim() == (0, 10)
    assert [text.get_text() for text in ax.texts] == [f"{trained_data[r]['quality']:.1f}" for r in order]
    assert len(png_bytes(ax.figure)) > 1000
    given = Figure().add_subplot()
    assert plot_quality(trained_data, ax=given) is given and len(given.patches) == len(trained_data)


def test_feedback_picture_marks_missing_improved_outputs(training_data: dict[str, Any]) -> None:
    figure = plot_feedback(training_data)
    assert len(figure.axes) == 2 * len(training_data)
    for n, agent in enumerate(training_data):
        records = training_data[agent]
        lengths, similarity = figure.axes[2 * n], figure.axes[2 * n + 1]
        assert lengths.figure.get_suptitle() == agent[:8]  # the browser's short id heads the agent's row
        missing = sorted(i for i, r in records.items() if "improved_output" not in r)
        crosses = [line for line in lengths.get_lines() if line.get_label() == "no improved output"]
        if missing:
            assert sorted(np.asarray(crosses[0].get_xdata()) - 0.2) == pytest.approx(missing)
        else:
            assert crosses == []
        bars = lengths.containers[0]
        assert [bar.get_height() for bar in bars] == [len(records[i]["initial_output"]) for i in sorted(records)]
        assert similarity.get_ylim() == (0, 1.05)
    assert len(png_bytes(figure)) > 5000


def test_empty_inputs_say_so() -> None:
    with pytest.raises(ValueError, match="empty"):
        plot_quality({})
    with pytest.raises(ValueError, match="empty"):
        plot_feedback({})


def test_a_crewai_file_given_to_the_wrong_plot_names_the_right_one(
    tmp_path: Path, trained_data: dict[str, Any], training_store: CrewTrainingHandler
) -> None:
    trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    for role, entry in trained_data.items():
        trained.save_trained_data(role, entry)
    for source in (trained, trained.file_path):
        with pytest.raises(
            ValueError, match=r"trained_agents_data\.pkl: plot_feedback .* use plot_quality\(\)"
        ) as info:
            plot_feedback(source)
        assert "_frame" not in str(info.value)  # names the plot to call, not an internal frame function
    with pytest.raises(ValueError, match=r"training_data\.pkl: plot_quality .* use plot_feedback\(\)") as info:
        plot_quality(training_store)
    assert "_frame" not in str(info.value)


def test_plots_do_not_mutate_their_inputs(metrics_data: dict[str, Any], trained_data: dict[str, Any]) -> None:
    before = (repr(metrics_data), repr(trained_data))
    frame = metrics_frame(metrics_data)
    frame_before = frame.copy()
    plot_metrics(metrics_data, smoothing=0.5, best="max")
    plot_metrics(frame, logy=False)
    plot_quality(trained_data)
    assert (repr(metrics_data), repr(trained_data)) == before
    pd.testing.assert_frame_equal(frame, frame_before)


def test_agent_names_label_legends_and_titles(training_data: dict[str, Any], metrics_data: dict[str, Any]) -> None:
    names = {agent: f"Role {n}" for n, agent in enumerate(metrics_data)}
    figure = plot_metrics(metrics_data, ["loss"], agent_names=names)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == [names[a] for a in metrics_data]
    assert [line.get_label() for line in visible_lines(figure.axes[0])] == [names[a] for a in metrics_data]
    ax = plot_metric(metrics_data, "loss", agent_names={"planner": "Planner"})
    assert sorted(text.get_text() for text in ax.get_legend().get_texts()) == ["Planner", "coder", "critic"]
    titles = {agent: f"Writer {n}" for n, agent in enumerate(training_data)}
    feedback = plot_feedback(training_data, agent_names=titles)
    assert [ax.figure.get_suptitle() for ax in feedback.axes[::2]] == [titles[a] for a in training_data]
    assert {ax.get_title() for ax in feedback.axes[::2]} == {"output length (characters)"}
    with pytest.raises(TypeError, match="agent_names must be a mapping"):
        plot_metrics(metrics_data, agent_names=["Role 0"])  # type: ignore[arg-type]


def test_short_runs_tick_whole_iterations_and_show_lone_points() -> None:
    data = {"a": {0: {"loss": 1.0}, 1: {"loss": 0.5}, 2: {"loss": 0.4}}, "b": {0: {"loss": 0.9}}}
    figure = plot_metrics(data, ["loss"])
    figure.canvas.draw()
    ticks = figure.axes[0].get_xticks()
    assert len(ticks) > 0 and all(float(tick).is_integer() for tick in ticks)
    lone = [line for line in visible_lines(figure.axes[0]) if line.get_label() == "b"]
    assert lone[0].get_marker() == "o" and list(lone[0].get_xdata()) == [0]
    longer = [line for line in visible_lines(figure.axes[0]) if line.get_label() == "a"]
    assert longer[0].get_marker() in ("None", None, "")


def test_feedback_picture_has_one_legend_and_every_iteration_on_both_panels(training_data: dict[str, Any]) -> None:
    figure = plot_feedback(training_data)
    assert len(figure.legends) == 1 and all(ax.get_legend() is None for ax in figure.axes)
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert {"initial output", "improved output", "similarity initial → improved"} <= set(labels)
    for n, agent in enumerate(training_data):
        lengths, similarity = figure.axes[2 * n], figure.axes[2 * n + 1]
        iterations = sorted(training_data[agent])
        assert lengths.get_xlim() == similarity.get_xlim()
        assert lengths.get_xlim() == pytest.approx((iterations[0] - 0.6, iterations[-1] + 0.6))


def test_panels_share_the_iteration_axis_and_one_iteration_is_widened() -> None:
    # "late" is logged once, at the last iteration; "loss" every iteration. Drawn in that
    # order, the first panel must not pin the shared axis to its single point.
    data = {"a": {i: {"late": 1.0} if i == 5 else {"loss": 1.0 / (i + 1)} for i in range(6)}}
    figure = plot_metrics(data, ["late", "loss"])
    late, loss = figure.axes
    assert late.get_xlim() == loss.get_xlim()
    assert late.get_xlim()[0] <= 0 and late.get_xlim()[1] >= 5
    single = plot_metrics({"a": {7: {"loss": 0.3}}})
    assert single.axes[0].get_xlim() == pytest.approx((6.4, 7.6))
    assert plot_metric({"a": {7: {"loss": 0.3}}}, "loss").get_xlim() == pytest.approx((6.4, 7.6))


def test_curves_of_chosen_agents_read_only_those_agents_of_a_sqlite_store(
    tmp_path: Path, metrics_data: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    sqlite = CrewTrainingHandler(tmp_path / "metrics.db")
    sqlite.save(metrics_data)
    read = request.getfixturevalue("sqlite_reads")
    figure = plot_metrics(sqlite, ["loss"], agents="coder")
    assert read == ["coder"]
    (line,) = visible_lines(figure.axes[0])
    assert list(line.get_ydata()) == [metrics_data["coder"][i]["loss"] for i in sorted(metrics_data["coder"])]
    ax = plot_metric(sqlite, "accuracy", agents=["critic"])
    assert read == ["coder", "critic"] and len(visible_lines(ax)) == 1


# -- real, small runs: ticks, margins, titles, gaps, best points, order ---------------------


def drawn(figure: Figure) -> Any:
    """Lay the figure out and draw it; return the renderer (text extents are known after this)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def run_of(length: int) -> pd.DataFrame:
    iterations = np.arange(length)
    return pd.DataFrame({"agent": "a", "iteration": iterations, "metric": "loss", "value": 1.0 / (iterations + 1)})


def assert_iteration_axis(ax: Any, first: int, last: int) -> None:
    low, high = ax.get_xlim()
    assert low < first and last < high  # both ends inside, off the spines
    ticks = ax.get_xticks()
    assert len(ticks) >= 1
    assert all(float(tick).is_integer() for tick in ticks), ticks
    assert all(low <= tick <= high for tick in ticks), (ticks, low, high)


@pytest.mark.parametrize("length", [1, 2, 3, 10, 1000, 10**6])
def test_whole_number_ticks_and_a_margin_at_every_length(length: int) -> None:
    figure = plot_metrics(run_of(length))
    drawn(figure)
    assert_iteration_axis(figure.axes[0], 0, length - 1)
    ax = plot_metric(run_of(length), "loss")
    drawn(ax.figure)
    assert_iteration_axis(ax, 0, length - 1)
    # The browser's marker at the last iteration is drawn inside the axes, not on the spine.
    marked = MarkedFigure(plot_metrics(run_of(length)))
    marked.png(length - 1)
    (marker,) = marked.markers
    low, high = marker.axes.get_xlim()
    assert low < marker.get_xdata()[0] == length - 1 < high


@pytest.mark.parametrize("length", [1, 2, 3, 10, 1000])
def test_feedback_panels_tick_whole_iterations_with_a_margin(length: int) -> None:
    data = make_training_data(agents=1, iterations=length, seed=5)
    figure = plot_feedback(data)
    drawn(figure)
    for ax in figure.axes:
        assert_iteration_axis(ax, 0, length - 1)


def title_boxes(figure: Figure, renderer: Any) -> list[Any]:
    """Window extents of every panel title and row heading that shows text."""
    texts = [ax.title for ax in figure.axes]
    for panel in figure.subfigs:
        texts.extend(text for text in panel.texts if text.get_text() == panel.get_suptitle())
    return [text.get_window_extent(renderer) for text in texts if text.get_text()]


@pytest.mark.parametrize("named", [False, True])
def test_feedback_titles_use_short_ids_and_never_overlap(named: bool) -> None:
    data = make_training_data(agents=4, iterations=3, seed=11)  # real 36-character uuid4 ids
    assert all(len(agent) == 36 for agent in data)
    roles = [
        "Senior Research Analyst for Market Intelligence and Competitive Landscape Studies in Europe and Asia " * 2,
        "Technical Writer",
        "W" * 120,
        "Quality Reviewer and Fact Checker",
    ]
    names = {agent: f"{role} · {agent[:8]}" for agent, role in zip(data, roles, strict=True)} if named else None
    figure = plot_feedback(data, agent_names=names)
    renderer = drawn(figure)
    headings = [panel.get_suptitle() for panel in figure.subfigs]
    if named:
        assert headings[1] == names[list(data)[1]]
        assert headings[0].startswith("Senior Research Analyst") and "…" in headings[0]
        assert headings[0].endswith(list(data)[0][:8]) and headings[2].endswith(list(data)[2][:8])
    else:
        assert headings == [agent[:8] for agent in data]  # as the browser shortens them
    boxes = title_boxes(figure, renderer)
    assert len(boxes) == 3 * len(data)
    for n, box in enumerate(boxes):
        assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1  # not cut off at the figure's edge
        for other in boxes[n + 1 :]:
            assert not box.overlaps(other), (box, other)


def test_missing_improved_outputs_are_gaps_in_the_lines() -> None:
    data = make_training_data(agents=1, iterations=12, seed=7)
    (records,) = data.values()
    missing = [i for i, record in records.items() if "improved_output" not in record]
    assert missing and missing[0] > 0
    similarity = plot_feedback(data).axes[1]
    (line,) = [line for line in similarity.get_lines() if line.get_label() == "similarity"]
    assert list(line.get_xdata()) == sorted(records)  # the missing iterations stay on the line, as NaN
    y = np.asarray(line.get_ydata(), dtype=float)
    assert np.isnan(y[missing]).all() and np.isfinite(np.delete(y, missing)).all()
    # The same curves as the browser and the report draw them: a gap, not a straight line across.
    from crewtrain_nb.navigation import curve_frame

    (agent,) = data
    figure = plot_metrics(curve_frame(data, agent), ["improved_chars"])
    (improved,) = visible_lines(figure.axes[0])
    y = np.asarray(improved.get_ydata(), dtype=float)
    assert list(improved.get_xdata()) == sorted(records) and np.isnan(y[missing]).all()


def test_a_point_between_gaps_is_drawn_as_a_dot() -> None:
    values = np.array([1.0, np.nan, 0.5, np.nan, 0.4, 0.3])
    frame = pd.DataFrame({"agent": "a", "iteration": np.arange(6), "metric": "loss", "value": values})
    (line,) = visible_lines(plot_metrics(frame).axes[0])
    assert line.get_marker() == "o"
    assert list(line.get_markevery()) == [True, False, True, False, False, False]


def test_metric_direction_decides_by_the_last_name_token() -> None:
    for name in ("loss", "val_loss", "metrics.Loss", "train/error", "perplexity", "eval.mse", "MAE", "rmse"):
        assert metric_direction(name) == "min", name
    for name in ("accuracy", "val_acc", "metrics.f1", "F1-score", "precision", "metrics.recall", "roc_auc"):
        assert metric_direction(name) == "max", name
    for name in ("lr", "weights.len", "metrics.loss.count", "lossy", "acc_loss", "initial_chars"):
        assert metric_direction(name) is None, name


def best_stars(ax: Any) -> dict[str, tuple[float, float]]:
    return {
        line.get_label()[len("_best ") :]: (line.get_xdata()[0], line.get_ydata()[0])
        for line in ax.get_lines()
        if line.get_label().startswith("_best ")
    }


def test_best_auto_and_mappings_mark_each_metric_its_own_way(metrics_data: dict[str, Any]) -> None:
    records = metrics_data["coder"]
    lowest_loss = min(records, key=lambda i: records[i]["loss"])
    highest_f1 = max(records, key=lambda i: records[i]["metrics"]["f1"])
    metrics = ["loss", "metrics.f1", "weights.len"]
    frame = metrics_frame(metrics_data, arrays="summary")
    for best in ("auto", {"loss": "min", "f1": "max"}, {"loss": "min", "metrics.f1": "max"}):
        figure = plot_metrics(frame, metrics, agents="coder", best=best)
        loss, f1 = (best_stars(ax) for ax in figure.axes[:2])
        assert loss["coder"][0] == lowest_loss and f1["coder"][0] == highest_f1, best
        assert best_stars(figure.axes[2]) == {}  # an unknown name, or one the mapping leaves out, is unmarked
    # Plain "min" / "max" keep meaning what they say, for every metric.
    lowest_f1 = min(records, key=lambda i: records[i]["metrics"]["f1"])
    assert best_stars(plot_metrics(metrics_data, "metrics.f1", agents="coder", best="min").axes[0])["coder"][0] == (
        lowest_f1
    )


@pytest.mark.parametrize("best", ["median", "MIN", 1, ["min"], {"loss": "lowest"}, {"nope": "min"}])
def test_bad_best_values_name_the_argument(metrics_data: dict[str, Any], best: Any) -> None:
    with pytest.raises(ValueError, match="best"):
        plot_metrics(metrics_data, ["loss"], best=best)
    with pytest.raises(ValueError, match="best"):
        plot_metric(metrics_data, "loss", best=best)


@pytest.mark.parametrize("length", [1, 2, 5, 40])
@pytest.mark.parametrize("shape", ["falling", "rising"])
def test_best_point_notes_stay_inside_the_axes(length: int, shape: str) -> None:
    iterations = np.arange(length)
    values = 1.0 / (iterations + 1) if shape == "falling" else 1.0 - 1.0 / (iterations + 2)
    frame = pd.DataFrame({"agent": "a", "iteration": iterations + 100_000, "metric": "loss", "value": values})
    for best in ("min", "max"):
        figure = plot_metrics(frame, best=best)
        ax = figure.axes[0]
        renderer = drawn(figure)
        (note,) = ax.texts
        box, inside = note.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1, (
            best,
            box,
            inside,
        )


def test_plots_show_agents_in_store_order(
    unsorted_metrics_store: CrewTrainingHandler, unsorted_training_store: CrewTrainingHandler, store_order: Any
) -> None:
    order = list(store_order)
    figure = plot_metrics(unsorted_metrics_store)
    assert [text.get_text() for text in figure.legends[0].get_texts()] == order
    assert all([line.get_label() for line in visible_lines(ax)] == order for ax in figure.axes)
    chosen = plot_metrics(unsorted_metrics_store, ["loss"], agents=["mid", "zeta"])
    assert [line.get_label() for line in visible_lines(chosen.axes[0])] == ["zeta", "mid"]
    feedback = plot_feedback(unsorted_training_store)
    assert [panel.get_suptitle() for panel in feedback.subfigs] == order


# -- in Jupyter ------------------------------------------------------------------------------


def test_figures_we_build_have_a_png_form_and_given_axes_do_not(
    metrics_data: dict[str, Any], training_data: dict[str, Any], trained_data: dict[str, Any]
) -> None:
    from IPython.core.formatters import DisplayFormatter

    formats = DisplayFormatter()  # IPython's, with no formatter registered for figures: a fresh kernel
    built = {
        "plot_metrics": plot_metrics(metrics_data, ["loss"]),
        "plot_feedback": plot_feedback(training_data),
        "plot_quality": plot_quality(trained_data),
        "plot_metric": plot_metric(metrics_data, "loss"),
    }
    for name, shown in built.items():
        data, _ = formats.format(shown)
        assert data["image/png"].startswith(PNG_MAGIC), name
        figure = shown if isinstance(shown, Figure) else shown.figure
        assert isinstance(figure, Figure) and figure.canvas.manager is None, name  # no pyplot figure
    given = Figure().add_subplot()
    data, _ = formats.format(plot_quality(trained_data, ax=given))
    assert "image/png" not in data  # the caller's Axes and figure: theirs to show
    # The PNG is the figure as saved, cropped as IPython's inline backend crops it.
    expected = io.BytesIO()
    built["plot_metrics"].savefig(expected, format="png", bbox_inches="tight")
    assert formats.format(built["plot_metrics"])[0]["image/png"] == expected.getvalue()


# -- in a real Jupyter kernel --------------------------------------------------------------

#: (cell source, how many image/png outputs it must give). The last cell imports pyplot: from then on
#: the kernel has the inline backend's hooks whether or not the magic ran.
DISPLAY_CELLS: list[tuple[str, int]] = [
    (
        "from crewtrain_nb import plot_feedback, plot_metric, plot_metrics, plot_quality\n"
        "from crewtrain_nb.demo import make_metrics_data, make_trained_agents_data, make_training_data\n\n"
        "metrics = make_metrics_data(iterations=12)\ntraining = make_training_data()\n"
        "trained = make_trained_agents_data()",
        0,
    ),
    ('plot_metrics(metrics, ["loss", "accuracy"], smoothing=0.5)', 1),
    ("plot_feedback(training)", 1),
    ("plot_quality(trained)", 1),  # an Axes on a figure we built shows that figure
    ("plot_quality(trained).figure", 1),
    ('plot_metric(metrics, "loss")', 1),
    ('figure = plot_metrics(metrics, "loss")', 0),  # kept in a variable: not shown, not even by the backend
    ("figure", 1),
    ("from IPython.display import display\n\ndisplay(plot_feedback(training))", 1),
    # A pyplot user's own Axes: the inline backend shows their figure; what we return adds nothing.
    ("import matplotlib.pyplot as plt\n\nfig, ax = plt.subplots()\nplot_quality(trained, ax=ax)", 1),
]


def run_in_kernel(tmp_path: Path, sources: list[str]) -> list[list[dict[str, Any]]]:
    """Run the cells in a new python3 kernel (nbclient, as nbconvert does); return each cell's outputs."""
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources).execute()
    return [cell["outputs"] for cell in notebook.cells]


@pytest.mark.slow
@pytest.mark.parametrize("magic", [None, "%matplotlib inline"], ids=["fresh-kernel", "matplotlib-inline"])
def test_returned_figures_show_once_as_png_in_a_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, magic: str | None
) -> None:
    # A user's kernel: no MPLBACKEND (ipykernel then picks the inline backend for pyplot), no profile.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    sources = [source for source, _ in DISPLAY_CELLS]
    if magic:
        sources[0] = f"{magic}\n{sources[0]}"
    outputs = run_in_kernel(tmp_path, sources)
    images = [
        [output["data"]["image/png"] for output in cell_outputs if "image/png" in output.get("data", {})]
        for cell_outputs in outputs
    ]
    assert {source: len(shown) for (source, _), shown in zip(DISPLAY_CELLS, images, strict=True)} == dict(DISPLAY_CELLS)
    for cell_images in images:
        for image in cell_images:
            png = base64.b64decode(image)
            width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
            assert png.startswith(PNG_MAGIC) and width > 300 and height > 150, (width, height)


# -- bad input: keys beyond int64, missing files, agents named by role or prefix, trusted --------------


@pytest.mark.parametrize(
    ("plot", "kind"),
    [(plot_metrics, "metrics"), (lambda path: plot_metric(path, "loss"), "metrics"), (plot_feedback, "training")],
)
def test_an_iteration_key_beyond_int64_is_a_format_error_not_an_overflow(
    beyond_int64_stores: dict[str, Path], plot: Any, kind: str
) -> None:
    path = beyond_int64_stores[kind]
    with pytest.raises(StoreFormatError, match=rf"{path}: agent '.*', iteration 10{{30}}: .*beyond what an int64"):
        plot(path)


def test_plot_feedback_of_a_handler_on_a_missing_file_says_no_such_file(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl")
    with pytest.raises(StoreNotFoundError, match=f"no such file: {handler.file_path}; .*where `crewai train` ran"):
        plot_feedback(handler)


def test_plots_name_agents_by_role_or_id_prefix_and_show_the_full_id(crewai_086_data: dict[str, Any]) -> None:
    researcher, writer, _ = crewai_086_data
    data = {
        agent: {i: {**record, "score": float(i)} for i, record in records.items()}
        for agent, records in crewai_086_data.items()
    }
    figure = plot_metrics(data, "score", agents=["Researcher", writer[:8]])
    assert [text.get_text() for text in figure.legends[0].get_texts()] == [researcher, writer]
    ax = plot_metric(metrics_frame(data), "score", agents=writer[:8])
    assert [line.get_label() for line in ax.get_lines()] == [writer]
    with pytest.raises(TypeError, match="^agents must "):
        plot_metrics(data, agents=1)


@pytest.mark.parametrize(
    ("plot", "kind"),
    [
        (plot_metrics, "metrics"),
        (lambda path, **options: plot_metric(path, "loss", **options), "metrics"),
        (plot_feedback, "training"),
        (plot_quality, "trained"),
    ],
)
def test_every_plot_takes_trusted(untrusted_stores: dict[str, Path], plot: Any, kind: str) -> None:
    with pytest.raises(UnsafePickleError, match="fractions.Fraction"):
        plot(untrusted_stores[kind])
    drawn = plot(untrusted_stores[kind], trusted=True)
    assert (drawn.figure if isinstance(drawn, Axes) else drawn).axes


def test_plot_feedback_heads_rows_with_roles_matched_from_the_trained_file(tmp_path: Path) -> None:
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run

    run = make_crewai_run("paraphrased")
    expected = [f"{info['role']} · {agent[:8]} (inferred)" for agent, info in run["agents"].items()]
    figure = plot_feedback(run["training"], trained=run["trained"])
    assert [ax.figure.get_suptitle() for ax in figure.axes[::2]] == expected
    paths = write_crewai_run(tmp_path, "paraphrased")
    from_files = plot_feedback(paths["training"], trained=paths["trained"])
    assert [ax.figure.get_suptitle() for ax in from_files.axes[::2]] == expected
    without = plot_feedback(run["training"])
    assert [ax.figure.get_suptitle() for ax in without.axes[::2]] == [agent[:8] for agent in run["training"]]


def test_agent_names_matching_no_agent_warn(training_data: dict[str, Any], metrics_data: dict[str, Any]) -> None:
    mine = {"my-agent-id": "Writer"}
    with pytest.warns(UserWarning, match="agent_names matches no agent id .*'planner', 'coder', 'critic'"):
        plot_metrics(metrics_data, ["loss"], agent_names=mine)
    with pytest.warns(UserWarning, match="agent_names matches no agent id"):
        plot_metric(metrics_data, "loss", agent_names=mine)
    first = next(iter(training_data))
    with pytest.warns(UserWarning, match=f"agent_names matches no agent id .*'{first}'"):
        plot_feedback(training_data, agent_names=mine)
