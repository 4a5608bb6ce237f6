"""prompt_preview and the trained-file rule, checked against installed CrewAI when there is one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crewtrain_nb import CrewTrainingHandler, prompt_preview
from crewtrain_nb.crewai import (
    INSTRUCTIONS_PREFIX,
    explain_trained_file,
    instructions_text,
    trained_file_for,
)
from crewtrain_nb.demo import make_crewai_run, write_crewai_run

from .crewai_run import run_crewai_agents


def test_preview_is_crewais_text_for_every_role() -> None:
    trained = make_crewai_run("paraphrased")["trained"]
    preview = prompt_preview(trained)
    assert list(preview) == list(trained)
    for role, entry in trained.items():
        expected = "\n\nYou MUST follow these instructions: \n - " + "\n - ".join(entry["suggestions"])
        assert preview[role] == expected
        assert entry["final_summary"] not in preview[role]  # only suggestions are used
    assert prompt_preview(trained, "Fact Checker") == {"Fact Checker": preview["Fact Checker"]}


def test_preview_edges() -> None:
    assert prompt_preview({}) == {}
    assert prompt_preview({"W": {"suggestions": [], "quality": 5.0}}) == {"W": INSTRUCTIONS_PREFIX}
    with pytest.raises(ValueError, match="no role 'Writer ': CrewAI appends nothing.*'W'"):
        prompt_preview({"W": {"suggestions": ["a"], "quality": 5.0}}, "Writer ")
    with pytest.raises(ValueError, match="role 'W' has no 'suggestions': CrewAI 1.x raises KeyError"):
        prompt_preview({"W": {"quality": 5.0, "final_summary": "x"}})
    with pytest.raises(ValueError, match="suggestion 3 is a int"):
        instructions_text(["a", 3], role="W")


def test_preview_reads_paths_and_handlers(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    run = make_crewai_run("paraphrased")
    assert prompt_preview(paths["trained"]) == prompt_preview(CrewTrainingHandler(paths["trained"]))
    assert prompt_preview(paths["trained"]) == prompt_preview(run["trained"])
    with pytest.raises(ValueError, match="this is training data"):
        prompt_preview(paths["training"])


def test_which_file_a_crew_reads(tmp_path: Path) -> None:
    default = trained_file_for(environ={}, cwd=tmp_path)
    assert (default.path, default.reason, default.exists) == (
        str(tmp_path / "trained_agents_data.pkl"),
        "default",
        False,
    )
    (tmp_path / "trained_agents_data.pkl").write_bytes(b"")
    assert trained_file_for(environ={}, cwd=tmp_path).exists
    env = trained_file_for(environ={"CREWAI_TRAINED_AGENTS_FILE": "runs/best"}, cwd=tmp_path)
    assert (env.path, env.reason) == (str(tmp_path / "runs" / "best.pkl"), "environment")
    crew = trained_file_for(crew_file="/abs/t.pkl", environ={"CREWAI_TRAINED_AGENTS_FILE": "x"}, cwd=tmp_path)
    assert (crew.path, crew.reason) == ("/abs/t.pkl", "crew")
    assert trained_file_for(crew_file="", environ={}, cwd=tmp_path).reason == "default"  # falsy: not set


def test_explanation_names_each_rule_and_what_is_here(tmp_path: Path) -> None:
    text = explain_trained_file(environ={"CREWAI_TRAINED_AGENTS_FILE": "custom.pkl"}, cwd=tmp_path)
    assert "Crew(trained_agents_file=...)" in text and "1.14.7" in text
    assert "$CREWAI_TRAINED_AGENTS_FILE  (CrewAI 1.14.4+): 'custom.pkl'" in text
    assert f"{tmp_path / 'trained_agents_data.pkl'} (missing)" in text
    assert "Before CrewAI 1.14.4 only rule 3 applies" in text and "#4905" in text
    assert f"Here a crew would read: {tmp_path / 'custom.pkl'}  (rule 2, missing" in text


def test_preview_equals_what_installed_crewai_injects(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path / "run", "paraphrased")
    preview = prompt_preview(paths["trained"])
    empty, default = tmp_path / "empty", tmp_path / "default"
    empty.mkdir()
    default.mkdir()
    shutil.copy(paths["trained"], default / "trained_agents_data.pkl")
    assert not trained_file_for(environ={}, cwd=empty).exists
    writer, researcher, editor, nothing, by_default = run_crewai_agents(
        [
            (paths["trained"], "Report Writer", tmp_path),
            (paths["trained"], "Market Researcher", tmp_path),
            (paths["trained"], "Editor", tmp_path),  # a role the file lacks
            (None, "Report Writer", empty),  # no file named, none in the working directory
            (None, "Report Writer", default),  # no file named: trained_agents_data.pkl here
        ]
    )
    for seen, role in ((writer, "Report Writer"), (researcher, "Market Researcher")):
        assert seen["direct"] == "TASK" + preview[role]
        assert len(seen["prompts"]) == 1 and preview[role] in seen["prompts"][0]
    assert editor["direct"] == "TASK" and "You MUST follow" not in editor["prompts"][0]
    assert nothing["direct"] == "TASK"
    assert by_default["direct"] == "TASK" + preview["Report Writer"]
