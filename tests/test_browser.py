"""TrainingBrowser without a browser: real stores, controls driven by setting ``.value``."""

from __future__ import annotations

import gc
import html
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crewtrain_nb import CrewTrainingHandler, TrainingBrowser
from crewtrain_nb.demo import demo_agent_names

SCRIPT = "<script>alert('pwned')</script>"


@pytest.fixture
def trained_store(tmp_path: Path, trained_data: dict[str, Any]) -> CrewTrainingHandler:
    handler = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    with handler.batch():
        for role, entry in trained_data.items():
            handler.save_trained_data(role, entry)
    return handler


def option_values(browser: TrainingBrowser) -> list[Any]:
    return [value for _, value in browser.agent.options]


def marker_x(browser: TrainingBrowser) -> set[float]:
    browser.wait_for_curves(timeout=60)
    marked = browser._curves[browser.agent.value]
    assert marked is not None
    return {float(x) for marker in marked.markers for x in marker.get_xdata()}


def test_agents_labelled_with_roles_and_iterations_listed(
    training_store: CrewTrainingHandler, trained_store: CrewTrainingHandler, training_data: dict[str, Any]
) -> None:
    names = demo_agent_names(training_data)
    browser = TrainingBrowser(training_store, trained=trained_store, agent_names=names)
    assert option_values(browser) == list(training_data)
    first = next(iter(training_data))
    assert browser.agent.options[0] == (f"{names[first]} · {first[:8]}", first)
    assert list(browser.iteration.options) == sorted(training_data[first])
    assert browser.iteration.value == 0
    assert training_data[first][0]["human_feedback"] in browser.record_html
    assert names[first] in browser.trained_pane.value


def test_changing_agent_and_iteration_shows_that_record(
    training_store: CrewTrainingHandler, training_data: dict[str, Any]
) -> None:
    browser = TrainingBrowser(training_store)
    agents = list(training_data)
    browser.agent.value = agents[2]
    assert browser.iteration.value == 0
    browser.iteration.value = 7
    record = training_data[agents[2]][7]
    assert html.escape(record["human_feedback"]) in browser.record_html
    assert "iteration 7" in browser.record_html
    if "improved_output" in record:
        assert "<ins>" in browser.record_html
    else:
        assert "No improved output" in browser.record_html
    assert marker_x(browser) == {7.0}


def test_diff_markup_and_missing_output_note(
    training_store: CrewTrainingHandler, training_data: dict[str, Any]
) -> None:
    browser = TrainingBrowser(training_store)
    complete = [(a, i) for a, rs in training_data.items() for i, r in rs.items() if "improved_output" in r]
    partial = [(a, i) for a, rs in training_data.items() for i, r in rs.items() if "improved_output" not in r]
    assert complete and partial
    browser.select(*complete[0])
    assert "<ins>" in browser.record_html or "<del>" in browser.record_html
    browser.select(*partial[0])
    assert "No improved output" in browser.record_html


def test_previous_and_next_buttons(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "gaps.pkl")
    with handler.batch():
        for iteration in (0, 3, 4, 10, 12):
            handler.append(iteration, "agent", {"loss": 1.0 / (iteration + 1)})
    browser = TrainingBrowser(handler)
    assert list(browser.iteration.options) == [0, 3, 4, 10, 12]
    browser.next_button.click()
    assert browser.iteration.value == 3
    browser.next_button.click()
    browser.next_button.click()
    assert browser.iteration.value == 10
    browser.previous_button.click()
    assert browser.iteration.value == 4
    assert marker_x(browser) == {4.0}
    assert "<th>loss</th>" in browser.record_html


def test_text_filter_narrows_iterations(training_store: CrewTrainingHandler, training_data: dict[str, Any]) -> None:
    browser = TrainingBrowser(training_store)
    agent = next(iter(training_data))
    word = "source"
    expected = [i for i, r in sorted(training_data[agent].items()) if word in r["human_feedback"].lower()]
    assert 0 < len(expected) < len(training_data[agent])
    browser.filter.value = "SOURCE"
    assert browser.iterations == expected
    assert browser.iteration.value == expected[0]
    browser.filter.value = "zzz-no-such-text"
    assert "No iteration contains" in browser.record_html
    assert browser.iterations == [] and browser.selected_iteration is None
    browser.filter.value = ""
    assert browser.iterations == sorted(training_data[agent])


def test_record_text_is_escaped(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "evil.pkl")
    handler.append(
        0, "agent", {"initial_output": SCRIPT, "human_feedback": SCRIPT, "improved_output": "fine " + SCRIPT}
    )
    handler.append(1, "agent", {"loss": 0.5, "note": SCRIPT})
    browser = TrainingBrowser(handler)
    for iteration in (0, 1):
        browser.iteration.value = iteration
        assert "<script>" not in browser.record_html
        assert "&lt;script&gt;" in browser.record_html


def test_ml_records_show_a_table_and_curves(metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]) -> None:
    browser = TrainingBrowser(metrics_store)
    browser.select("critic", 12)
    record = metrics_data["critic"][12]
    assert "<th>metrics.f1</th>" in browser.record_html
    assert f"{record['loss']:.6g}" in browser.record_html
    assert "shape (8,)" in browser.record_html  # weights summarised
    browser.wait_for_curves(timeout=60)
    assert browser.curve.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert marker_x(browser) == {12.0}
    marked = browser._curves["critic"]
    assert marked is not None
    titles = {ax.get_title() for ax in marked.figure.axes}
    assert {"loss", "accuracy", "metrics.f1"} <= titles


def test_select_rejects_unknown_agent_and_iteration(metrics_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(metrics_store)
    with pytest.raises(ValueError, match="no agent 'ghost' in .*; its agents are .*planner"):
        browser.select("ghost")
    with pytest.raises(ValueError, match="no iteration 999"):
        browser.select("planner", 999)


def test_export_button_writes_the_agents_csv(metrics_store: CrewTrainingHandler, tmp_path: Path) -> None:
    browser = TrainingBrowser(metrics_store, export_dir=tmp_path / "exports")
    browser.agent.value = "coder"
    browser.export_button.click()
    path = tmp_path / "exports" / "coder.csv"
    assert str(path.resolve()) in browser.status.value
    frame = pd.read_csv(path)
    assert set(frame["agent"]) == {"coder"}
    assert list(frame["iteration"]) == sorted(metrics_store.load()["coder"])


def test_empty_store_shows_a_message(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "empty.pkl")
    handler.initialize_file()
    browser = TrainingBrowser(handler)
    assert "empty" in browser.record_html
    assert browser.agent.options == ()
    browser.next_button.click()  # nothing to do, no exception


def test_trained_file_as_main_source_explains_itself(trained_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(trained_store)
    assert "trained=" in browser.record_html


def test_refresh_keeps_selection_and_sees_new_records(metrics_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(metrics_store)
    browser.select("coder", 5)
    assert browser.refresh() is False  # unchanged file: nothing re-read
    writer = CrewTrainingHandler(metrics_store.file_path)
    writer.append(500, "coder", {"loss": 0.01})
    writer.append(0, "newcomer", {"loss": 1.0})
    assert browser.refresh() is True
    assert browser.agent.value == "coder" and browser.iteration.value == 5
    assert 500 in browser.iteration.options
    assert "newcomer" in option_values(browser)


def test_store_changing_shape_on_refresh_is_friendly(metrics_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(metrics_store)
    CrewTrainingHandler(metrics_store.file_path).save([1, 2, 3])
    assert browser.refresh() is True
    assert "no agent → iteration records" in browser.record_html
    CrewTrainingHandler(metrics_store.file_path).save({"back": {0: {"loss": 2.0}}})
    browser.refresh()
    assert option_values(browser) == ["back"]


def test_unreadable_store_on_refresh_is_a_message(metrics_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(metrics_store)
    Path(metrics_store.file_path).write_bytes(b"\x80\x04garbage")
    assert browser.refresh() is False
    assert "Could not read the store" in browser.status.value
    assert option_values(browser) == ["planner", "coder", "critic"]  # the last good view stays


def test_a_file_being_written_keeps_the_view_and_selection_and_says_so(metrics_store: CrewTrainingHandler) -> None:
    whole = Path(metrics_store.file_path).read_bytes()
    browser = TrainingBrowser(CrewTrainingHandler(metrics_store.file_path, read_retry_timeout=0.05))
    browser.select("coder", 5)
    Path(metrics_store.file_path).write_bytes(whole[: len(whole) // 2])  # a writer without a lock, half done
    assert browser.refresh() is False
    assert "CrewAI is writing…" in browser.status.value and "pickle data was truncated" in browser.status.value
    assert browser.agent.value == "coder" and browser.iteration.value == 5
    assert option_values(browser) == ["planner", "coder", "critic"]
    Path(metrics_store.file_path).write_bytes(whole)
    assert browser.refresh() is True
    assert browser.agent.value == "coder" and browser.iteration.value == 5 and browser.status.value == ""


def test_auto_refresh_watches_a_growing_store(metrics_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(metrics_store, auto_refresh=0.05)
    try:
        browser.select("planner", 3)
        CrewTrainingHandler(metrics_store.file_path).append(77, "planner", {"loss": 0.2})
        deadline = time.monotonic() + 10
        while 77 not in browser.iteration.options and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 77 in browser.iteration.options
        assert browser.iteration.value == 3
    finally:
        browser.close()


def test_browser_does_not_mutate_a_dict_source(training_data: dict[str, Any]) -> None:
    before = repr(training_data)
    browser = TrainingBrowser(training_data)
    for agent in training_data:
        browser.agent.value = agent
        browser.next_button.click()
    browser.filter.value = "a"
    assert repr(training_data) == before


def test_store_turning_malformed_keeps_the_last_view(metrics_store: CrewTrainingHandler, tmp_path: Path) -> None:
    browser = TrainingBrowser(metrics_store)
    browser.select("coder", 4)
    CrewTrainingHandler(metrics_store.file_path).save({"coder": {"four": {"loss": 1.0}}})  # str iteration key
    assert browser.refresh() is False
    assert "Cannot browse this store" in browser.status.value and "iteration keys must be ints" in browser.status.value
    assert browser.agent.value == "coder" and browser.iteration.value == 4
    bad = CrewTrainingHandler(tmp_path / "bad.pkl")
    bad.save({"a": {0: {"loss": 1.0}}, "b": "not a dict of iterations"})
    fresh = TrainingBrowser(bad)  # no exception in the notebook: the widget says what is wrong
    assert "agent &#x27;b&#x27; holds a str" in fresh.record_html
    assert fresh.agent.options == ()


def test_auto_refresh_rereads_only_a_changed_file(
    metrics_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crewtrain_nb.store import _pickle_file as pickle_file_module

    loads: list[str] = []
    real_loads = pickle_file_module.safe_loads

    def counting_loads(payload: bytes, **kwargs: Any) -> Any:
        loads.append(str(kwargs.get("path")))
        return real_loads(payload, **kwargs)

    monkeypatch.setattr(pickle_file_module, "safe_loads", counting_loads)
    browser = TrainingBrowser(metrics_store.file_path, auto_refresh=0.02)
    try:
        ticks: list[bool] = []
        original_refresh = browser.refresh
        monkeypatch.setattr(browser, "refresh", lambda: ticks.append(original_refresh()) or ticks[-1])
        deadline = time.monotonic() + 10
        while len(ticks) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(ticks) >= 5 and not any(ticks)  # the watcher ran, and saw nothing new
        assert len(loads) == 1  # the file was unpickled once, when the browser was built
        # trusted=True: the writer unpickles with trusted_loads, so only the browser's reads are counted
        CrewTrainingHandler(metrics_store.file_path, trusted=True).append(99, "critic", {"loss": 0.3})
        while not any(ticks) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert any(ticks) and len(loads) == 2
    finally:
        browser.close()


def test_refresh_button_shows_new_records(metrics_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(metrics_store)
    browser.select("planner", 2)
    browser.refresh_button.click()
    assert "has not changed" in browser.status.value
    CrewTrainingHandler(metrics_store.file_path).append(300, "planner", {"loss": 0.05})
    browser.refresh_button.click()
    assert browser.iterations[-1] == 300 and browser.iteration.value == 2


def test_a_sqlite_store_is_browsed_one_agent_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, training_data: dict[str, Any]
) -> None:
    from crewtrain_nb import SQLiteHandler

    handler = CrewTrainingHandler(tmp_path / "training_data.db")
    handler.save(training_data)
    calls: list[tuple[str, Any]] = []

    def whole_store(self: Any) -> Any:
        raise AssertionError("the browser read the whole store")

    def counted(name: str) -> Any:
        real = getattr(SQLiteHandler, name)
        return lambda self, *args: calls.append((name, args)) or real(self, *args)

    monkeypatch.setattr(SQLiteHandler, "peek", whole_store)
    monkeypatch.setattr(SQLiteHandler, "load", whole_store)
    for name in ("entry", "get"):
        monkeypatch.setattr(SQLiteHandler, name, counted(name))
    agents = list(training_data)
    browser = TrainingBrowser(handler, export_dir=tmp_path / "exports")
    assert option_values(browser) == agents
    # the first record of each agent (for its role label), then the shown agent whole
    assert [call for call in calls if call[0] == "entry"] == [("entry", (agents[0],))]
    assert {args for name, args in calls if name == "get"} == {(agent, 0) for agent in agents}
    calls.clear()
    for iteration in (3, 4, 5):
        browser.iteration.value = iteration
        record = training_data[agents[0]][iteration]
        assert html.escape(record["human_feedback"]) in browser.record_html
    assert calls == []  # the shown agent is already read
    browser.agent.value = agents[2]
    browser.iteration.value = 7
    assert html.escape(training_data[agents[2]][7]["human_feedback"]) in browser.record_html
    assert calls == [("entry", (agents[2],))]
    browser.filter.value = training_data[agents[2]][7]["human_feedback"][:12]
    assert 7 in browser.iterations
    assert browser.export() is not None
    assert not browser.refresh()  # unchanged: nothing re-read
    handler.append(99, agents[2], {"initial_output": "new", "human_feedback": "fresh feedback"})
    browser.filter.value = ""
    assert browser.refresh()
    assert 99 in browser.iterations and browser.agent.value == agents[2]
    browser.close()


# -- curves drawn in the background ---------------------------------------------------------


class HeldBrowser(TrainingBrowser):
    """Its drawing thread waits for ``HeldBrowser.release``: what a slow first draw looks like."""

    release: Any = None
    drawn: list[str] = []

    def _draw_curves(self, data: Any, agent: str, label: str) -> Any:  # type: ignore[override]
        assert self.release.wait(30), "the test never released the drawing"
        self.drawn.append(agent)
        return TrainingBrowser._draw_curves(data, agent, label)


@pytest.fixture
def held_drawing(monkeypatch: pytest.MonkeyPatch) -> Any:
    import threading

    release = threading.Event()
    monkeypatch.setattr(HeldBrowser, "release", release)
    monkeypatch.setattr(HeldBrowser, "drawn", [])
    return release


def test_a_new_agent_answers_before_its_curves_are_drawn(
    metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any], held_drawing: Any
) -> None:
    browser = HeldBrowser(metrics_store)  # first agent: its drawing is held
    first = browser.agent.value
    assert browser.curve.value == b""
    browser.select("critic", 12)  # returns although no curve is drawn yet
    assert f"{metrics_data['critic'][12]['loss']:.6g}" in browser.record_html
    assert browser.curve.value == b""  # empty, never another agent's curves
    browser.iteration.value = 15  # still drawing: the curve follows the latest selection
    held_drawing.set()
    browser.wait_for_curves(timeout=60)
    assert browser.drawn == [first, "critic"]
    assert browser.curve.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert marker_x(browser) == {15.0}
    browser.select(first, 3)  # drawn in the background while critic was shown: no new drawing
    assert marker_x(browser) == {3.0} and browser.drawn == [first, "critic"]


def test_curves_of_a_store_read_again_meanwhile_are_dropped(
    tmp_path: Path, metrics_data: dict[str, Any], held_drawing: Any
) -> None:
    handler = CrewTrainingHandler(tmp_path / "metrics.pkl")
    handler.save(metrics_data)
    browser = HeldBrowser(handler)
    agent = browser.agent.value
    handler.append(99, agent, {"loss": 0.01})
    assert browser.refresh()  # the held drawing is of the old data
    held_drawing.set()
    browser.wait_for_curves(timeout=60)
    marked = browser._curves[agent]
    assert marked is not None
    (loss,) = [ax for ax in marked.figure.axes if ax.get_title() == "loss"]
    assert 99 in [x for line in loss.get_lines() for x in line.get_xdata()]


def test_drawing_in_the_click_and_a_failed_drawing(metrics_store: CrewTrainingHandler) -> None:
    browser = TrainingBrowser(metrics_store, draw_in_background=False)
    browser.select("coder", 4)
    assert browser._drawing == {} and marker_x(browser) == {4.0}  # drawn before select() returned

    class BrokenBrowser(TrainingBrowser):
        def _draw_curves(self, data: Any, agent: str, label: str) -> Any:  # type: ignore[override]
            raise RuntimeError("no display")

    background = BrokenBrowser(metrics_store)
    background.wait_for_curves(timeout=60)
    assert "Could not draw the curves of" in background.status.value and "no display" in background.status.value
    assert background.curve.value == b"" and "<h4>" in background.record_html


def test_agent_picker_lists_agents_in_store_order(
    unsorted_training_store: CrewTrainingHandler, store_order: tuple[str, ...]
) -> None:
    browser = TrainingBrowser(unsorted_training_store, draw_in_background=False)
    try:
        assert option_values(browser) == list(store_order)
        assert browser.agent.value == store_order[0]
    finally:
        browser.close()


# -- CrewAI files explained ---------------------------------------------------------------------


def test_an_empty_or_truncated_crewai_file_is_explained(tmp_path: Path) -> None:
    failed = CrewTrainingHandler(tmp_path / "training_data.pkl")
    failed.save({})  # what CrewAI writes to both files when train() fails (clear() of a missing file creates nothing)
    text = html.unescape(TrainingBrowser(failed).record_html)
    assert "The store is empty ({}: CrewAI writes {} to both files when train() fails" in text
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(b"")  # CrewAI opens the file with "wb", then writes: a reader can see 0 bytes
    text = html.unescape(TrainingBrowser(str(truncated)).record_html)
    assert "The store is empty (0 bytes: CrewAI truncates the file while it writes" in text


def test_swapped_crewai_files_say_which_is_which(
    training_store: CrewTrainingHandler, trained_store: CrewTrainingHandler
) -> None:
    browser = TrainingBrowser(trained_store, trained=training_store)
    text = html.unescape(browser.record_html)
    assert "the two files are swapped" in text
    assert f"give {training_store.file_path} as the source and {trained_store.file_path} as trained=" in text
    assert browser.agent.options == ()
    wrong_trained = html.unescape(TrainingBrowser(training_store, trained=training_store).record_html)
    assert "given as trained=, holds agent -> iteration records" in wrong_trained


def test_crewai_086_records_are_labelled_and_explained(
    training_store_086: CrewTrainingHandler, training_data_086: dict[str, Any]
) -> None:
    browser = TrainingBrowser(training_store_086)
    first = next(iter(training_data_086))
    assert browser.agent.options[0] == (f"Senior Researcher · {first[:8]}", first)
    text = html.unescape(browser.record_html)
    assert "No improved output: CrewAI 0.86 does not record the improved output" in text
    assert "interrupted" not in text
    empty = next(i for i, r in training_data_086[first].items() if r["human_feedback"] == "")
    browser.iteration.value = empty
    assert "Feedback empty: CrewAI's evaluator rejects this record." in html.unescape(browser.record_html)


# -- a file that does not exist yet, agents named by role or prefix, trusted --------------------------


def test_a_browser_opened_before_training_waits_for_the_file(tmp_path: Path, training_data: dict[str, Any]) -> None:
    # A user opens the browser before `crewai train` writes anything: a message, then the data on refresh.
    path = tmp_path / "training_data.pkl"
    browser = TrainingBrowser(str(path), trained=tmp_path / "trained_agents_data.pkl", draw_in_background=False)
    assert f"{path}: no such file yet; Refresh when training has started" in html.unescape(browser.record_html)
    assert "no such file yet" in browser.status.value and browser.agent.options == ()
    assert browser.refresh() is False
    CrewTrainingHandler(path).save(training_data)
    assert browser.refresh() is True
    assert option_values(browser) == list(training_data) and browser.status.value == ""
    browser.close()


def test_auto_refresh_picks_up_a_file_that_appears(tmp_path: Path, training_data: dict[str, Any]) -> None:
    path = tmp_path / "training_data.pkl"
    browser = TrainingBrowser(path, auto_refresh=0.05)
    try:
        assert "no such file yet" in browser.record_html
        CrewTrainingHandler(path).save(training_data)
        deadline = time.monotonic() + 10
        while not browser.agent.options and time.monotonic() < deadline:
            time.sleep(0.05)
        assert option_values(browser) == list(training_data)
    finally:
        browser.close()


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"source": ""}, ValueError, "file_name is empty"),
        ({"source": {}, "export_dir": 123}, TypeError, "int"),
    ],
)
def test_a_browser_that_fails_to_start_leaves_no_error_behind(
    monkeypatch: pytest.MonkeyPatch, arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    # The widget's __del__ closes it: close() must work on a browser whose __init__ raised
    # (it printed "AttributeError: ... '_stop'" after the real error).
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(error, match=match):
        TrainingBrowser(**arguments)
    gc.collect()
    assert unraisable == []


def test_select_takes_a_role_or_an_id_prefix_and_returns_the_full_id(
    crewai_086_data: dict[str, Any], trained_data: dict[str, Any]
) -> None:
    researcher, writer, other_writer = crewai_086_data
    browser = TrainingBrowser(crewai_086_data, draw_in_background=False)
    assert browser.select("Researcher") == researcher and browser.agent.value == researcher
    assert browser.select(writer[:8], 2) == writer and browser.iteration.value == 2
    with pytest.raises(ValueError, match=rf"'Writer' is ambiguous: .*'{writer}', '{other_writer}'"):
        browser.select("Writer")
    # Roles the browser knows from agent_names count too.
    named = TrainingBrowser(crewai_086_data, agent_names={other_writer: "Editor"}, draw_in_background=False)
    assert named.select("Editor") == other_writer


def test_the_browser_takes_trusted(untrusted_stores: dict[str, Path]) -> None:
    refused = TrainingBrowser(untrusted_stores["training"], trained=untrusted_stores["trained"])
    assert "fractions.Fraction" in refused.status.value and refused.agent.options == ()
    trusted = TrainingBrowser(
        untrusted_stores["training"], trained=untrusted_stores["trained"], trusted=True, draw_in_background=False
    )
    assert len(trusted.agent.options) == 3 and trusted.status.value == ""


# -- CrewAI insight: roles matched from the trained file, findings, curation, compare --------------------


def crewai_browser(tmp_path: Path, scenario: str = "paraphrased", **options: Any) -> tuple[TrainingBrowser, Any]:
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run

    paths = write_crewai_run(tmp_path, scenario)
    browser = TrainingBrowser(paths["training"], trained=paths["trained"], draw_in_background=False, **options)
    return browser, {"paths": paths, "run": make_crewai_run(scenario)}


def test_agents_are_labelled_with_roles_matched_from_the_trained_file(tmp_path: Path) -> None:
    browser, made = crewai_browser(tmp_path)
    run = made["run"]
    assert [label for label, _ in browser.agent.options] == [
        f"{info['role']} · {agent[:8]} (inferred)" for agent, info in run["agents"].items()
    ]
    second = list(run["agents"])[1]
    browser.agent.value = second
    role = run["agents"][second]["role"]
    assert f"Trained agent: {role}" in browser.trained_pane.value and "inferred" in browser.trained_pane.value
    assert browser.select(role) == second  # a matched role selects its agent
    # Recorded roles (the sidecar) are facts: no "(inferred)".
    from crewtrain_nb import write_sidecar

    write_sidecar(made["paths"]["training"], run["agents"])
    recorded = TrainingBrowser(made["paths"]["training"], trained=made["paths"]["trained"], draw_in_background=False)
    assert [label for label, _ in recorded.agent.options] == [
        f"{info['role']} · {agent[:8]}" for agent, info in run["agents"].items()
    ]


def test_agent_names_matching_no_agent_warn_naming_the_ids(tmp_path: Path) -> None:
    from crewtrain_nb.demo import write_crewai_run

    paths = write_crewai_run(tmp_path, "paraphrased")
    ids = list(CrewTrainingHandler(paths["training"]).load())
    with pytest.warns(UserWarning, match=f"agent_names matches no agent id .*'{ids[0]}'"):
        TrainingBrowser(paths["training"], agent_names={"my-own-agent-id": "Writer"}, draw_in_background=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainingBrowser(paths["training"], agent_names={ids[0]: "Writer"}, draw_in_background=False)


def test_findings_are_shown(tmp_path: Path) -> None:
    browser, made = crewai_browser(tmp_path, "repeated_correction")
    codes = {(finding.code, finding.agent) for finding in browser.findings}
    writer = list(made["run"]["agents"])[1]
    assert ("repeated_feedback", writer) in codes
    pane = browser.findings_pane.value
    assert "repeated_feedback" in pane and f"Report Writer · {writer[:8]} (inferred)" in pane
    clean, _ = crewai_browser(tmp_path / "clean")
    assert clean.findings == [] and "No findings" in clean.findings_pane.value


def test_curation_edits_a_draft_and_save_writes_it_with_a_version_kept(tmp_path: Path) -> None:
    browser, made = crewai_browser(tmp_path)
    trained = made["paths"]["trained"]
    role = next(iter(made["run"]["agents"].values()))["role"]
    original = made["run"]["trained"][role]["suggestions"]
    before = trained.read_bytes()
    assert browser.curation.layout.display is None and browser.draft == original
    assert browser.save_button.disabled  # nothing changed yet
    browser.suggestions.value = 0
    assert browser.suggestion_text.value == original[0]
    browser.remove_button.click()
    assert browser.draft == original[1:] and original[0] not in browser.prompt_pane.value
    browser.suggestions.value = 1
    browser.up_button.click()
    assert browser.draft == [original[2], original[1]]
    browser.suggestion_text.value = "Say which country each figure is for."
    browser.add_button.click()
    browser.suggestions.value = 0
    browser.suggestion_text.value = "Name a source for every figure."
    browser.replace_button.click()
    draft = ["Name a source for every figure.", "Say which country each figure is for.", original[1]]
    assert browser.draft == draft
    assert html.escape("\n - ".join(draft)) in browser.prompt_pane.value  # the live preview: CrewAI's text
    assert trained.read_bytes() == before  # nothing written before Save
    browser.save_button.click()
    handler = CrewTrainingHandler(trained)
    assert handler.load()[role]["suggestions"] == draft
    assert {r: e for r, e in handler.load().items() if r != role} == {
        r: e for r, e in made["run"]["trained"].items() if r != role
    }
    [version] = handler.versions()
    assert Path(version.path).read_bytes() == before
    assert "Saved 3 suggestions" in browser.curation_status.value and browser.draft == draft
    browser.undo_button.click()  # Undo is restore
    assert handler.load() == made["run"]["trained"] and browser.draft == original


def test_curation_refuses_blank_text_and_discard_forgets_the_draft(tmp_path: Path) -> None:
    browser, made = crewai_browser(tmp_path)
    original = browser.draft
    browser.suggestion_text.value = "   "
    browser.add_button.click()
    assert "blank" in browser.curation_status.value and browser.draft == original
    browser.suggestions.value = None
    browser.remove_button.click()
    assert "select one first" in browser.curation_status.value
    browser.suggestions.value = 0
    browser.remove_button.click()
    assert browser.draft == original[1:]
    browser.discard_button.click()
    assert browser.draft == original and browser.save_button.disabled


def test_curation_needs_a_trained_file(tmp_path: Path) -> None:
    from crewtrain_nb.demo import make_crewai_run

    run = make_crewai_run("paraphrased")
    in_memory = TrainingBrowser(run["training"], trained=run["trained"], draw_in_background=False)
    assert in_memory.curation.layout.display == "none" and in_memory.draft == []
    assert in_memory.save_suggestions() is None and "Nothing to save" in in_memory.curation_status.value


def test_the_compare_view_shows_a_version_against_the_file_now(tmp_path: Path) -> None:
    from crewtrain_nb import edit_suggestions

    browser, made = crewai_browser(tmp_path)
    role = next(iter(made["run"]["agents"].values()))["role"]
    old = made["run"]["trained"][role]["suggestions"]
    assert [value for _, value in browser.compare.options] == [None]
    edit_suggestions(made["paths"]["trained"], role, old[1:])
    browser.refresh()
    [(_, chosen)] = [(label, value) for label, value in browser.compare.options if value is not None]
    browser.compare.value = chosen
    pane = browser.compare_pane.value
    assert "version" in pane and f"<del>{html.escape(old[0])}</del>" in pane
    browser.compare.value = None
    assert browser.compare_pane.value == ""


def test_compare_with_another_trained_file(tmp_path: Path) -> None:
    from crewtrain_nb.demo import make_crewai_run

    stale = make_crewai_run("stale_trained")["trained"]
    browser, _ = crewai_browser(tmp_path, compare_with=stale)
    browser.compare.value = "compare_with"
    assert "Data Analyst" in browser.compare_pane.value and "compare_with only" in browser.compare_pane.value


def test_structured_outputs_show_as_their_fields(tmp_path: Path) -> None:
    from crewtrain_nb.demo import write_structured_run

    paths = write_structured_run(tmp_path)
    browser = TrainingBrowser(paths["training"], trained=paths["trained"], draw_in_background=False)
    assert browser.agent.options[0][0].startswith("Market Researcher · ")
    page = browser.record_html
    assert "The European e-bike market" in page and "market_size_eur_bn" in page
    assert "__pydantic" not in page and "OpaqueObject" not in page


def test_a_draft_is_dropped_with_a_note_when_the_trained_file_changes(tmp_path: Path) -> None:
    from crewtrain_nb import edit_suggestions

    browser, made = crewai_browser(tmp_path)
    role = next(iter(made["run"]["agents"].values()))["role"]
    browser.suggestions.value = 0
    browser.remove_button.click()
    edit_suggestions(made["paths"]["trained"], role, ["Written elsewhere."])  # another writer
    assert browser.refresh()
    assert browser.draft == ["Written elsewhere."]
    assert f"unsaved changes for {role} were dropped" in browser.curation_status.value


def test_the_trained_file_beside_the_training_file_is_used_by_default(tmp_path: Path) -> None:
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run

    paths = write_crewai_run(tmp_path, "paraphrased")
    run = make_crewai_run("paraphrased")
    browser = TrainingBrowser(paths["training"], draw_in_background=False)
    first, info = next(iter(run["agents"].items()))
    assert browser.agent.options[0][0] == f"{info['role']} · {first[:8]} (inferred)"
    assert f"Trained agent: {info['role']}" in browser.trained_pane.value and browser.draft
    alone = TrainingBrowser(paths["training"], trained=False, draw_in_background=False)
    assert alone.agent.options[0][0] == first and alone.trained_pane.value == ""
    interrupted = write_crewai_run(tmp_path / "interrupted", "interrupted")  # its trained file is {}
    waiting = TrainingBrowser(interrupted["training"], draw_in_background=False)
    assert "holds no roles (yet)" in waiting.trained_pane.value


def test_the_trained_file_beside_a_metric_log_is_not_used(tmp_path: Path) -> None:
    from crewtrain_nb.demo import write_demo

    paths = write_demo(tmp_path)  # metrics.pkl beside the demo's trained_agents_data.pkl
    browser = TrainingBrowser(paths["metrics"], draw_in_background=False)
    assert browser.trained_pane.value == "" and browser.curation.layout.display == "none"
    assert [label for label, _ in browser.agent.options] == list(CrewTrainingHandler(paths["metrics"]).load())
