"""CrewAI semantics: feedback status, similarity, word diffs."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crewtrain_nb.crewai import (
    EMPTY_FILE_NOTE,
    ZERO_BYTE_NOTE,
    agent_roles,
    diff_words,
    explain_empty_file,
    explain_status,
    explain_statuses,
    feedback_status,
    field_notes,
    holds_feedback,
    is_feedback_record,
    is_trained_entry,
    misplaced_files,
    record_version,
    similarity,
    text_of,
)
from crewtrain_nb.crewai import files as crewai_files
from crewtrain_nb.demo import DEMO_ROLES, make_metrics_data, make_trained_agents_data, make_training_data

from .test_frames import imports_of


def test_feedback_status_of_demo_records(training_data: dict[str, Any]) -> None:
    for records in training_data.values():
        for record in records.values():
            expected = "complete" if "improved_output" in record else "no_improved_output"
            assert feedback_status(record) == expected


@pytest.mark.parametrize(
    ("record", "status"),
    [
        ({"initial_output": "a", "human_feedback": "b", "improved_output": "c"}, "complete"),
        ({"initial_output": "a", "human_feedback": "b"}, "no_improved_output"),
        ({"initial_output": "a", "human_feedback": "b", "improved_output": None}, "no_improved_output"),
        ({"initial_output": "a", "human_feedback": "b", "improved_output": "  "}, "no_improved_output"),
        ({"initial_output": "a", "human_feedback": "", "improved_output": "c"}, "no_feedback"),
        ({"initial_output": "a", "human_feedback": " \n"}, "no_feedback"),
        ({"initial_output": "a"}, "no_feedback"),
        (1.5, "no_feedback"),
    ],
)
def test_feedback_status(record: Any, status: str) -> None:
    assert feedback_status(record) == status


def test_record_and_entry_shapes(trained_data: dict[str, Any], training_data: dict[str, Any]) -> None:
    assert all(is_trained_entry(entry) for entry in make_trained_agents_data().values())
    assert not any(is_trained_entry(records) for records in training_data.values())
    assert all(is_feedback_record(r) for records in training_data.values() for r in records.values())
    assert not is_feedback_record({"loss": 1.0}) and not is_trained_entry({})
    assert text_of(None) is None and text_of(3) == "3"


def test_similarity_bounds_and_symmetry() -> None:
    assert similarity("a b c", "a b c") == 1.0
    assert similarity("a b c", "x y z") == 0.0
    assert similarity("", "  ") == 1.0
    assert math.isnan(similarity(None, "x"))
    assert similarity("one two three four", "one two three five") == pytest.approx(0.75)
    long_text = " ".join(["the"] * 300 + ["end"])  # SequenceMatcher's autojunk would call "the" junk
    assert similarity(long_text, long_text + " extra") == pytest.approx(2 * 301 / 603)


texts = st.text(alphabet=st.sampled_from(list("ab \n\t")), max_size=30)


@given(before=texts, after=texts)
def test_diff_words_rebuilds_both_texts(before: str, after: str) -> None:
    ops = diff_words(before, after)
    assert "".join(text for op, text in ops if op != "insert") == before
    assert "".join(text for op, text in ops if op != "delete") == after
    assert all(text for _, text in ops)
    assert all(a[0] != b[0] for a, b in zip(ops, ops[1:], strict=False))  # neighbours merged


def test_diff_words_marks_whole_words() -> None:
    assert diff_words("keep the old word", "keep the new word") == [
        ("equal", "keep the "),
        ("delete", "old"),
        ("insert", "new"),
        ("equal", " word"),
    ]
    assert diff_words("same", "same") == [("equal", "same")]


def test_crewai_imports_no_pandas_matplotlib_or_ipywidgets() -> None:
    absolute, local = imports_of(Path(crewai_files.__file__))
    assert not {name for name in absolute if name.split(".")[0] in {"pandas", "matplotlib", "ipywidgets"}}
    assert local == set()


def test_importing_crewtrain_nb_crewai_never_imports_crewai() -> None:
    # A notebook's environment usually has no crewai, and a training process must not pay for a second import.
    code = (
        "import sys\n"
        "import crewtrain_nb.crewai, crewtrain_nb.crewai.files\n"
        "from crewtrain_nb.crewai import diff_words\n"
        "loaded = sorted(name for name in sys.modules if name == 'crewai' or name.startswith(('crewai.', 'crewai_')))\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_importing_the_insight_loads_neither_crewai_nor_pandas() -> None:
    # match_roles and compare_trained import pandas when called; a training process importing the sidecar
    # writer or the checks pays for neither.
    code = (
        "import sys\n"
        "import crewtrain_nb.crewai\n"
        "from crewtrain_nb.crewai import check_training, write_sidecar, prompt_preview, edit_suggestions\n"
        "from crewtrain_nb.demo import make_crewai_run\n"
        "run = make_crewai_run('paraphrased')\n"
        "check_training(run['training'], run['trained']); prompt_preview(run['trained'])\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('crewai', 'pandas', 'matplotlib')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


# -- what CrewAI's outcomes mean -----------------------------------------------------------


def test_the_086_generator_writes_what_crewai_086_writes(training_data_086: dict[str, Any]) -> None:
    for (agent, records), role in zip(training_data_086.items(), DEMO_ROLES, strict=True):
        for record in records.values():
            assert list(record) == ["initial_output", "human_feedback", "agent", "agent_role"]
            assert record["agent"] == agent and record["agent_role"] == role
    statuses = {feedback_status(r) for records in training_data_086.values() for r in records.values()}
    assert statuses == {"no_improved_output", "no_feedback"}  # never complete; some feedback is ""


def test_record_version_and_roles(training_data_086: dict[str, Any], training_data: dict[str, Any]) -> None:
    assert {record_version(r) for records in training_data_086.values() for r in records.values()} == {"0.86"}
    assert {record_version(r) for records in training_data.values() for r in records.values()} == {"1.x"}
    assert agent_roles(training_data_086) == dict(zip(training_data_086, DEMO_ROLES, strict=True))
    assert agent_roles(training_data) == {}  # CrewAI 1.x never names the role in training_data.pkl


def test_a_missing_improved_output_means_something_else_in_each_version(
    training_data_086: dict[str, Any], training_data: dict[str, Any]
) -> None:
    legacy = next(r for records in training_data_086.values() for r in records.values() if r["human_feedback"])
    current = next(r for records in training_data.values() for r in records.values() if "improved_output" not in r)
    old, new = field_notes(legacy)["improved_output"], field_notes(current)["improved_output"]
    assert old.state == new.state == "missing"
    assert "CrewAI 0.86 does not record" in old.meaning and "second feedback round" in old.meaning
    assert "#1761" in old.meaning and "interrupted" not in old.meaning
    assert "interrupted" in new.meaning and "0.86" not in new.meaning
    assert explain_status("no_improved_output", version="0.86") == old.meaning
    assert explain_status("no_improved_output") == new.meaning
    assert set(field_notes(legacy)) == {"improved_output"}  # its feedback is there


@pytest.mark.parametrize(
    ("record", "notes"),
    [
        ({"initial_output": "a", "human_feedback": "b", "improved_output": "c"}, {}),
        ({"initial_output": "a", "human_feedback": "", "improved_output": "c"}, {"human_feedback": "empty"}),
        ({"initial_output": "a", "human_feedback": " \n", "improved_output": "c"}, {}),  # the evaluator takes it
        ({"initial_output": "a", "improved_output": "c"}, {"human_feedback": "missing"}),
        ({"initial_output": "a", "human_feedback": ""}, {"human_feedback": "empty", "improved_output": "missing"}),
        ({"initial_output": "a", "human_feedback": "b", "improved_output": ""}, {"improved_output": "empty"}),
        ("not a record", {}),
    ],
)
def test_field_notes_name_what_is_missing_or_empty(record: Any, notes: dict[str, str]) -> None:
    found = field_notes(record)
    assert {key: note.state for key, note in found.items()} == notes
    if "human_feedback" in found:
        assert found["human_feedback"].meaning == "CrewAI's evaluator rejects this record"
        assert str(found["human_feedback"]) == f"{notes['human_feedback']}: CrewAI's evaluator rejects this record"


def test_explain_statuses_is_one_line_per_outcome_found(training_data_086: dict[str, Any]) -> None:
    current = make_training_data(agents=3, iterations=6, seed=1, empty_feedback=0.3)
    records = [r for data in (current, training_data_086) for rs in data.values() for r in rs.values()]
    lines = explain_statuses(records)
    assert lines == [
        "no improved output: " + explain_status("no_improved_output", version="1.x"),
        "no improved output: " + explain_status("no_improved_output", version="0.86"),
        "empty feedback: " + explain_status("no_feedback"),  # the same in both versions: once
    ]
    complete = [r for rs in current.values() for r in rs.values() if feedback_status(r) == "complete"]
    assert complete and explain_statuses(complete) == []
    with pytest.raises(ValueError, match="status must be one of"):
        explain_status("lost")  # type: ignore[arg-type]


def test_empty_files_are_explained() -> None:
    assert explain_empty_file(0) == ZERO_BYTE_NOTE
    assert ZERO_BYTE_NOTE.startswith("0 bytes: CrewAI truncates the file while it writes")
    assert explain_empty_file(5) == explain_empty_file() == EMPTY_FILE_NOTE
    assert "CrewAI writes {} to both files when train() fails" in EMPTY_FILE_NOTE


@pytest.mark.parametrize(
    ("kind", "trained_kind", "needles"),
    [
        ("iterations", "trained_agents", None),
        ("iterations", None, None),
        ("iterations", "empty", None),  # CrewAI writes {} to the trained file when train() fails
        ("empty", "trained_agents", None),
        ("trained_agents", "iterations", ["swapped", "t.pkl holds trained agents", "give d.pkl as the source"]),
        ("trained_agents", None, ["t.pkl holds trained agents", "not training records", "this file as --trained"]),
        ("trained_agents", "trained_agents", ["t.pkl holds trained agents"]),
        ("iterations", "iterations", ["d.pkl, given as --trained, holds agent -> iteration records"]),
        ("empty", "iterations", ["d.pkl, given as --trained", "not trained agents"]),
    ],
)
def test_misplaced_files_say_which_is_which(kind: str, trained_kind: str | None, needles: list[str] | None) -> None:
    source, trained = ("t.pkl", "d.pkl") if kind == "trained_agents" else ("x.pkl", "d.pkl")
    problem = misplaced_files(kind, trained_kind, source=source, trained=trained, option="--trained")
    if needles is None:
        assert problem is None
    else:
        assert problem is not None
        for needle in needles:
            assert needle in problem
    unnamed = misplaced_files("trained_agents", None)
    assert unnamed is not None and unnamed.startswith("the source holds trained agents") and "trained=" in unnamed


def test_holds_feedback(training_data: dict[str, Any], training_data_086: dict[str, Any]) -> None:
    assert holds_feedback(training_data) and holds_feedback(training_data_086)
    assert not holds_feedback(make_metrics_data(iterations=2))
    assert not holds_feedback(make_trained_agents_data()) and not holds_feedback({}) and not holds_feedback({"a": {}})
