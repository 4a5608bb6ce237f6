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
    diff_words,
    feedback_status,
    is_feedback_record,
    is_trained_entry,
    similarity,
    text_of,
)
from crewtrain_nb.crewai import files as crewai_files
from crewtrain_nb.demo import make_trained_agents_data

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
