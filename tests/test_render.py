"""HTML renderers shared by the browser and the report: escaping, diffs, summaries."""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pytest

from crewtrain_nb.crewai import diff_words
from crewtrain_nb.demo import make_metrics_data, make_trained_agents_data
from crewtrain_nb.render import (
    diff_html,
    flatten_record,
    message_html,
    record_html,
    summarize_array,
    trained_html,
)

SCRIPT = "<script>alert('x')</script>"


def text_of(markup: str) -> str:
    """Visible text, roughly: drop the style block and tags."""
    markup = re.sub(r"<style>.*?</style>", "", markup, flags=re.S)
    return re.sub(r"<[^>]+>", "", markup)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("the quick brown fox", "the slow brown fox jumps"),
        ("", "all new"),
        ("all gone", ""),
        ("same  spacing\nkept", "same  spacing\nkept"),
        ("a b c d e", "e d c b a"),
    ],
)
def test_diff_words_reassembles_both_texts(before: str, after: str) -> None:
    ops = diff_words(before, after)
    assert "".join(text for op, text in ops if op != "insert") == before
    assert "".join(text for op, text in ops if op != "delete") == after
    assert {op for op, _ in ops} <= {"equal", "insert", "delete"}


def test_diff_html_marks_insertions_and_deletions() -> None:
    markup = diff_html("Summary of agents.", "Summary of agent memory. Risks: stale data.")
    assert "<del>agents.</del>" in markup
    assert "<ins>" in markup and "Risks:" in markup


def test_feedback_record_shows_feedback_and_diff(training_data: dict[str, Any]) -> None:
    record = next(r for records in training_data.values() for r in records.values() if "improved_output" in r)
    markup = record_html(record, title="Writer · iteration 0")
    assert record["human_feedback"] in markup
    assert "<ins>" in markup
    assert "Writer · iteration 0" in markup
    assert "No improved output" not in markup


def test_missing_improved_output_is_noted(training_data: dict[str, Any]) -> None:
    record = next(r for records in training_data.values() for r in records.values() if "improved_output" not in r)
    markup = record_html(record)
    assert "No improved output" in markup
    assert record["initial_output"] in markup
    assert "<ins>" not in markup


def test_empty_feedback_says_the_evaluator_rejects_the_record() -> None:
    text = html.unescape(text_of(record_html({"initial_output": "x", "human_feedback": "", "improved_output": "y"})))
    assert "Feedback empty: CrewAI's evaluator rejects this record." in text
    missing = html.unescape(text_of(record_html({"initial_output": "x", "improved_output": "y"})))
    assert "Feedback missing: CrewAI's evaluator rejects this record." in missing


def test_missing_improved_output_gives_the_reason_of_its_crewai_version(
    training_data_086: dict[str, Any], training_data: dict[str, Any]
) -> None:
    legacy = next(iter(next(iter(training_data_086.values())).values()))
    text = html.unescape(text_of(record_html(legacy)))
    assert "No improved output: CrewAI 0.86 does not record the improved output" in text
    assert "second feedback round replaces initial_output and human_feedback" in text
    assert "interrupted" not in text
    assert legacy["initial_output"] in text and legacy["agent_role"] in text
    current = next(r for records in training_data.values() for r in records.values() if "improved_output" not in r)
    assert "the run was interrupted" in html.unescape(text_of(record_html(current)))


@pytest.mark.parametrize("field", ["initial_output", "human_feedback", "improved_output", "extra"])
def test_record_text_can_never_inject_markup(field: str) -> None:
    record = {"initial_output": "before", "human_feedback": "ok", "improved_output": "after", field: SCRIPT}
    markup = record_html(record)
    assert "<script>" not in markup
    assert "&lt;script&gt;" in markup
    assert SCRIPT in text_of(markup).replace("&lt;", "<").replace("&gt;", ">").replace("&#x27;", "'")


def test_ml_record_is_a_table_with_arrays_summarised() -> None:
    record = make_metrics_data(agents=("a",), iterations=1)["a"][0]
    record["matrix"] = np.arange(6.0).reshape(2, 3)
    markup = record_html(record)
    for key, _ in flatten_record(record):
        assert f"<th>{key}</th>" in markup
    assert "shape (2, 3) · min 0 · mean 2.5 · max 5" in markup
    assert "shape (8,)" in markup  # the weights list
    assert f"{record['loss']:.6g}" in markup


def test_non_dict_records_render_as_a_value() -> None:
    assert "<th>value</th>" in record_html(0.25)
    assert flatten_record(3) == [("value", 3)]


def test_summarize_array_edge_cases() -> None:
    assert summarize_array([]) == "shape (0,) · empty"
    assert summarize_array([float("nan"), 1.0]) == "shape (2,) · min 1 · mean 1 · max 1"
    assert summarize_array([[1, 2], [3]]) == "length 2 · ragged"
    assert summarize_array([True, False]) == "shape (2,) · not numeric"


def test_trained_entry_html() -> None:
    role, entry = next(iter(make_trained_agents_data().items()))
    markup = trained_html(role, {**entry, "final_summary": SCRIPT})
    assert f"{entry['quality']:.1f} / 10" in markup
    for suggestion in entry["suggestions"]:
        assert suggestion in markup
    assert "<script>" not in markup
    assert "No trained-agent entry" in trained_html("Ghost", None)


def test_message_is_escaped() -> None:
    assert "&lt;b&gt;" in message_html("<b>")


def test_renderers_do_not_mutate(training_data: dict[str, Any]) -> None:
    before = repr(training_data)
    for records in training_data.values():
        for record in records.values():
            record_html(record)
    assert repr(training_data) == before
