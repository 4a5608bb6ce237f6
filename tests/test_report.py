"""The HTML report: sections, embedded figures, escaped record text, no external assets."""

from __future__ import annotations

import errno
import html
import html.parser
import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import (
    CrewTrainingHandler,
    StoreFormatError,
    UnsafePickleError,
    build_report,
    summarize_report,
    write_report,
)
from crewtrain_nb.demo import demo_agent_names, make_metrics_data, make_trained_agents_data, make_training_data
from crewtrain_nb.report import render_report_html
from crewtrain_nb.store import _atomic

SCRIPT = "<script>alert('x')</script>"


class Page(html.parser.HTMLParser):
    """Collects what a browser would load or run."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = dict(attrs)
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            link = values.get(key) or ""
            if link.startswith(("http:", "https:", "//")):
                self.external.append(link)


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def test_crewai_report_has_every_section(
    training_store: CrewTrainingHandler, tmp_path: Path, training_data: dict[str, Any], trained_data: dict[str, Any]
) -> None:
    trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    trained.save(trained_data)
    names = demo_agent_names(training_data)
    path = write_report(training_store, tmp_path / "report.html", trained=trained, agent_names=names)
    text = path.read_text(encoding="utf-8")
    page = parse(text)
    assert {"summary", "curves", "feedback", "trained"} <= set(page.ids)
    assert page.tags.count("svg") >= 3  # curves, feedback, quality
    assert page.external == [] and page.scripts == 0
    for agent, role in names.items():
        assert f"{role} · {agent[:8]}" in text
    for role, entry in trained_data.items():
        assert role in text and entry["suggestions"][0] in text
    some = next(iter(training_data.values()))[0]
    assert some["human_feedback"] in text
    assert "<ins>" in text and "No improved output" in text


def test_metrics_report_summarises_last_values(
    metrics_store: CrewTrainingHandler, metrics_data: dict[str, Any]
) -> None:
    summary = summarize_report(metrics_store)
    assert summary.kind == "iterations" and summary.feedback is None
    row = summary.agents.set_index("agent").loc["coder"]
    last = max(metrics_data["coder"])
    assert row["records"] == len(metrics_data["coder"])
    assert row["last loss"] == round(metrics_data["coder"][last]["loss"], 4)
    assert row["last metrics.f1"] == round(metrics_data["coder"][last]["metrics"]["f1"], 4)
    text = build_report(metrics_store).html()
    assert "id='feedback'" not in text and "<svg" in text


def test_record_text_is_escaped_in_the_report(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "evil.pkl")
    handler.append(0, "agent", {"initial_output": SCRIPT, "human_feedback": SCRIPT, "improved_output": SCRIPT + "!"})
    text = build_report(handler).html()
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert parse(text).scripts == 0


def test_empty_store_report_says_so(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "empty.pkl")
    handler.initialize_file()
    text = build_report(handler).html()
    assert "no agent → iteration records" in text
    assert "No numeric metrics" in text


@pytest.mark.parametrize("store", ["metrics_store", "training_store"])
def test_report_shows_in_a_notebook(store: str, request: pytest.FixtureRequest) -> None:
    report = build_report(request.getfixturevalue(store), title="Run 7")
    shown = report._repr_html_()
    assert "<h1>Run 7</h1>" in shown and "<h1>Run 7</h1>" in report.html()
    # In a notebook the report is one element with its styles scoped to it: nothing restyles the page
    # around it (a body rule there set JupyterLab's own width and text colour).
    assert shown.startswith("<div class='ctn-report'>") and shown.endswith("</div>")
    assert "<body" not in shown and "<html" not in shown and "<title" not in shown
    styles = "".join(re.findall(r"<style>(.*?)</style>", shown, re.S))
    preludes = [prelude.strip() for prelude in re.findall(r"([^{};]+)\{", styles)]
    selectors = [part.strip() for prelude in preludes if not prelude.startswith("@") for part in prelude.split(",")]
    assert selectors and all(selector.startswith((".ctn-report", ".ctn-box", ".ctn-figure")) for selector in selectors)
    assert report.html().startswith("<!DOCTYPE html>") and shown in report.html()


def test_report_is_deterministic(metrics_store: CrewTrainingHandler) -> None:
    assert build_report(metrics_store).html() == build_report(metrics_store).html()


def test_every_report_section_lists_agents_in_store_order(
    unsorted_training_store: CrewTrainingHandler, tmp_path: Path, store_order: tuple[str, ...]
) -> None:
    order = list(store_order)
    trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    trained.save(make_trained_agents_data(roles=store_order))
    summary = summarize_report(unsorted_training_store, trained=trained)
    assert summary.agents["agent"].tolist() == order
    assert list(dict.fromkeys(summary.metrics["agent"])) == order  # the curves' legend order
    assert summary.feedback is not None and list(dict.fromkeys(summary.feedback["agent"])) == order
    assert list(summary.records) == order
    assert summary.trained is not None and summary.trained["agent"].tolist() == order
    text = render_report_html(summary)
    shown = {"summary": "<td>{}</td>", "feedback": "<summary>{} — ", "trained": "<h4>Trained agent: {}</h4>"}
    for section, pattern in shown.items():
        body = text[text.index(f"<section id='{section}'>") :]
        body = body[: body.index("</section>")]
        where = [body.index(pattern.format(agent)) for agent in order]
        assert where == sorted(where), section


def test_crewai_curves_leave_a_gap_where_no_improved_output_was_recorded(
    training_store: CrewTrainingHandler, training_data: dict[str, Any]
) -> None:
    summary = summarize_report(training_store)
    improved = summary.metrics[summary.metrics["metric"] == "improved_chars"]
    for agent, records in training_data.items():
        mine = improved[improved["agent"] == agent].set_index("iteration")["value"]
        assert mine.index.tolist() == sorted(records)  # every iteration is on the curve ...
        missing = [i for i, record in records.items() if "improved_output" not in record]
        assert mine[missing].isna().all()  # ... and a missing output is NaN: the line breaks there


@pytest.mark.parametrize("kind", ["training", "metrics"])
def test_an_iteration_key_beyond_int64_is_a_format_error_naming_the_file(
    beyond_int64_stores: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    path = beyond_int64_stores[kind]
    with pytest.raises(StoreFormatError, match=rf"^{path}: agent '.*', iteration 10{{30}}: .*beyond what an int64"):
        write_report(path, tmp_path / "report.html")
    assert not (tmp_path / "report.html").exists()


def test_the_report_gets_the_users_usual_permissions_and_keeps_an_existing_mode(
    tmp_path: Path, metrics_store: CrewTrainingHandler
) -> None:
    previous = os.umask(0o022)
    try:
        new = write_report(metrics_store, tmp_path / "new.html")
        kept = tmp_path / "kept.html"
        kept.write_text("old")
        os.chmod(kept, 0o640)
        write_report(metrics_store, kept)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640 and kept.read_text().startswith("<!DOCTYPE html>")


def test_the_report_is_replaced_atomically(
    tmp_path: Path, metrics_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A write that fails half way leaves the old report whole and no temporary file beside it.
    target = tmp_path / "report.html"
    target.write_text("the old report")
    report = build_report(metrics_store)

    def full_disk(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_atomic.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        report.write_html(target)
    assert target.read_text() == "the old report"
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".report.html")]


def test_every_report_function_takes_trusted(untrusted_stores: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UnsafePickleError, match="fractions.Fraction"):
        summarize_report(untrusted_stores["metrics"])
    with pytest.raises(UnsafePickleError, match="fractions.Fraction"):
        build_report(metrics_store_of(untrusted_stores), trained=untrusted_stores["trained"])
    summary = summarize_report(untrusted_stores["metrics"], trained=untrusted_stores["trained"], trusted=True)
    assert summary.kind == "iterations" and summary.trained is not None
    assert "<h1>" in build_report(untrusted_stores["training"], trusted=True).html()
    assert write_report(untrusted_stores["metrics"], tmp_path / "r.html", trusted=True).stat().st_size > 0


def test_swapped_or_misplaced_crewai_files_are_an_error_saying_which_is_which(
    training_store: CrewTrainingHandler, tmp_path: Path, trained_data: dict[str, Any]
) -> None:
    trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    for role, entry in trained_data.items():
        trained.save_trained_data(role, entry)
    out = tmp_path / "report.html"
    with pytest.raises(ValueError, match="the two files are swapped") as swapped:
        write_report(trained, out, trained=training_store)
    assert f"give {training_store.file_path} as the source and {trained.file_path} as trained=" in str(swapped.value)
    with pytest.raises(ValueError, match=r"trained_agents_data\.pkl holds trained agents"):
        build_report(trained.file_path)  # a trained file as the main source is no silent "kind: empty" report
    with pytest.raises(ValueError, match=r"training_data\.pkl, given as trained=, holds agent -> iteration records"):
        summarize_report(training_store, trained=training_store)
    assert not out.exists()


def test_an_empty_crewai_file_is_explained(tmp_path: Path) -> None:
    failed = CrewTrainingHandler(tmp_path / "training_data.pkl")
    failed.save({})  # what CrewAI does to both files when train() fails (clear() of a missing file creates nothing)
    text = visible(build_report(failed).html())
    assert "The store is empty ({}: CrewAI writes {} to both files when train() fails" in text
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(b"")  # CrewAI opens the file with "wb" and then writes: caught in between
    text = visible(build_report(str(truncated)).html())
    assert "The store is empty (0 bytes: CrewAI truncates the file while it writes" in text
    empty_trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    empty_trained.save({})
    summary = summarize_report(failed, trained=empty_trained)
    assert summary.trained_note is not None and "CrewAI writes {} to both files" in summary.trained_note
    assert summary.trained_note in visible(build_report(failed, trained=empty_trained).html())


def test_feedback_statuses_are_counted_and_explained_per_crewai_version(
    training_store: CrewTrainingHandler, training_store_086: CrewTrainingHandler, training_data: dict[str, Any]
) -> None:
    summary = summarize_report(training_store)
    assert {"complete", "no improved output", "empty feedback"} <= set(summary.agents.columns)
    first = next(iter(training_data))
    row = summary.agents.iloc[0]
    assert row["no improved output"] == sum("improved_output" not in r for r in training_data[first].values())
    text = visible(build_report(training_store).html())
    assert "no improved output: the agent has not answered again after the feedback: the run was interrupted" in text
    assert "CrewAI 0.86" not in text
    legacy = visible(build_report(training_store_086).html())
    assert "no improved output: CrewAI 0.86 does not record the improved output" in legacy
    assert "empty feedback: the feedback is empty: CrewAI's evaluator rejects this record" in legacy
    assert "Feedback empty: CrewAI's evaluator rejects this record." in legacy  # on the record itself
    assert "interrupted" not in legacy
    assert "Senior Researcher · " in legacy  # 0.86 names the role in each record


def test_one_iteration_is_singular(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl")
    handler.save(make_training_data(agents=2, iterations=1, seed=4))
    text = build_report(handler).html()
    assert text.count(" — 1 iteration</summary>") == 2 and "1 iterations" not in text


def metrics_store_of(stores: dict[str, Path]) -> CrewTrainingHandler:
    """A trusted handler of the metrics file: the trained file alone is then what safe loading refuses."""
    return CrewTrainingHandler(stores["metrics"], trusted=True)


def visible(text: str) -> str:
    return html.unescape(text)


def test_the_report_shows_store_paths_relative_to_the_folder_it_was_made_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, training_data: dict[str, Any]
) -> None:
    store = tmp_path / "run" / "training_data.pkl"
    store.parent.mkdir()
    CrewTrainingHandler(store).save(training_data)
    monkeypatch.chdir(tmp_path)
    assert "Store: <code>run/training_data.pkl</code>" in build_report(store).html()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a store outside the working folder keeps its whole path
    assert f"Store: <code>{store}</code>" in build_report(store).html()


def test_report_labels_roles_matched_from_the_trained_file_and_shows_findings(tmp_path: Path) -> None:
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run

    paths = write_crewai_run(tmp_path, "repeated_correction")
    run = make_crewai_run("repeated_correction")
    summary = summarize_report(paths["training"], trained=paths["trained"])
    labels = [f"{info['role']} · {agent[:8]} (inferred)" for agent, info in run["agents"].items()]
    assert summary.agents["agent"].tolist() == labels
    writer = list(run["agents"])[1]
    assert ("repeated_feedback", writer, 1) in {(f.code, f.agent, f.iteration) for f in summary.findings}
    page = render_report_html(summary)
    findings = page[page.index("<section id='findings'>") : page.index("<section id='curves'>")]
    assert "repeated_feedback" in findings and html.escape(labels[1]) in findings
    assert "unchanged_output" in findings
    clean_paths = write_crewai_run(tmp_path / "clean", "paraphrased")
    clean = render_report_html(summarize_report(clean_paths["training"], trained=clean_paths["trained"]))
    assert "No findings" in clean
    metrics = build_report(make_metrics_data(iterations=4)).html()
    assert "id='findings'" not in metrics  # a metric log has no feedback to check


def test_report_compares_two_trained_files(tmp_path: Path) -> None:
    from crewtrain_nb import edit_suggestions
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run

    paths = write_crewai_run(tmp_path, "paraphrased")
    run = make_crewai_run("paraphrased")
    old = run["trained"]["Report Writer"]["suggestions"]
    version = edit_suggestions(paths["trained"], "Report Writer", [*old[1:], "Name the audience first."])
    summary = summarize_report(paths["training"], trained=paths["trained"], compare_with=version.path)
    assert summary.comparison is not None and summary.compare_source == version.path
    [writer] = [row for row in summary.comparison if row.role == "Report Writer"]
    assert writer.removed == (old[0],) and writer.added == ("Name the audience first.",)
    page = render_report_html(summary)
    section = page[page.index("<section id='compare'>") :]
    assert f"<del>{html.escape(old[0])}</del>" in section and "<ins>Name the audience first.</ins>" in section
    assert "id='compare'" not in build_report(paths["training"], trained=paths["trained"]).html()
    with pytest.raises(ValueError, match="compare_with= compares a trained file with trained=; pass trained= too"):
        summarize_report(paths["training"], compare_with=version.path)


def test_report_warns_when_agent_names_match_no_agent(training_data: dict[str, Any]) -> None:
    with pytest.warns(UserWarning, match=f"agent_names matches no agent id .*'{next(iter(training_data))}'"):
        summarize_report(training_data, agent_names={"my-agent": "Writer"})


def test_report_shows_structured_outputs_as_their_fields(tmp_path: Path) -> None:
    from crewtrain_nb.demo import write_structured_run

    paths = write_structured_run(tmp_path)
    page = build_report(paths["training"], trained=paths["trained"]).html()
    feedback = page[page.index("<section id='feedback'>") :]
    assert "The European e-bike market" in feedback and "https://example.org/survey" in feedback
    assert "__pydantic" not in page and "OpaqueObject" not in page
