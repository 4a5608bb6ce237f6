"""The HTML report: sections, embedded figures, escaped record text, no external assets."""

from __future__ import annotations

import html
import html.parser
import re
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import (
    CrewTrainingHandler,
    build_report,
    summarize_report,
    write_report,
)
from crewtrain_nb.demo import demo_agent_names, make_trained_agents_data
from crewtrain_nb.report import render_report_html

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


