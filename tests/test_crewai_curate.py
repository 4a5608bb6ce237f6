"""edit_suggestions: the trained file changed through the store, a version kept first, read by CrewAI."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewtrain_nb import CrewTrainingHandler, edit_suggestions, prompt_preview
from crewtrain_nb.demo import make_crewai_run, write_crewai_run
from crewtrain_nb.errors import StoreError

from .crewai_run import run_crewai_agents


def test_edit_keeps_a_version_and_restore_undoes_it(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    original = CrewTrainingHandler(paths["trained"]).load()
    old = original["Report Writer"]["suggestions"]
    new = [old[2], "Name the audience in the first line.", old[0]]  # reorder, remove one, add one
    version = edit_suggestions(paths["trained"], "Report Writer", [new[0], f"  {new[1]} ", new[2]])
    handler = CrewTrainingHandler(paths["trained"])
    edited = handler.load()
    assert edited["Report Writer"] == {**original["Report Writer"], "suggestions": new}  # quality, summary kept
    assert {role: entry for role, entry in edited.items() if role != "Report Writer"} == {
        role: entry for role, entry in original.items() if role != "Report Writer"
    }
    assert [v.id for v in handler.versions()] == [version.id]
    handler.restore(version)
    assert handler.load() == original


def test_earlier_versions_are_all_kept(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    handler = CrewTrainingHandler(paths["trained"], backups=1)  # a handler that would keep only one
    seen = []
    for number in range(3):
        seen.append(edit_suggestions(handler, "Fact Checker", [f"Rule {number}."]))
    assert [v.id for v in CrewTrainingHandler(paths["trained"]).versions()] == [v.id for v in reversed(seen)]
    assert handler.load()["Fact Checker"]["suggestions"] == ["Rule 2."]


def test_bad_input_changes_nothing(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    before = paths["trained"].read_bytes()
    with pytest.raises(ValueError, match="no role 'Writer'; the roles there are: 'Report Writer'"):
        edit_suggestions(paths["trained"], "Writer", ["x"])
    with pytest.raises(ValueError, match=r"suggestions\[1\] is blank"):
        edit_suggestions(paths["trained"], "Report Writer", ["x", "  "])
    with pytest.raises(TypeError, match="suggestions must be a list of str"):
        edit_suggestions(paths["trained"], "Report Writer", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a dict has no file to write"):
        edit_suggestions(make_crewai_run("paraphrased")["trained"], "Report Writer", ["x"])
    with pytest.raises(StoreError, match="not a trained-agents file"):
        edit_suggestions(paths["training"], "Report Writer", ["x"])
    with pytest.raises(StoreError, match="no such trained file"):
        edit_suggestions(tmp_path / "missing.pkl", "Report Writer", ["x"])
    assert paths["trained"].read_bytes() == before
    assert not (tmp_path / "missing.pkl").exists()


def test_crewai_reads_the_curated_suggestions(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    edit_suggestions(paths["trained"], "Market Researcher", ["Say which country each figure is for."])
    preview = prompt_preview(paths["trained"], "Market Researcher")["Market Researcher"]
    [seen] = run_crewai_agents([(paths["trained"], "Market Researcher", tmp_path)])
    assert seen["direct"] == "TASK" + preview
    assert "\n - Say which country each figure is for." in seen["prompts"][0]


def test_revise_suggestions_makes_one_change_on_a_new_list() -> None:
    from crewtrain_nb.crewai import revise_suggestions

    items = ["a", "b", "c"]
    assert revise_suggestions(items, "remove", index=1) == ["a", "c"]
    assert revise_suggestions(items, "up", index=1) == ["b", "a", "c"]
    assert revise_suggestions(items, "down", index=1) == ["a", "c", "b"]
    assert revise_suggestions(items, "up", index=0) == items and revise_suggestions(items, "down", index=2) == items
    assert revise_suggestions(items, "replace", index=2, text=" d ") == ["a", "b", "d"]
    assert revise_suggestions(items, "add", index=0, text="x") == ["a", "x", "b", "c"]
    assert revise_suggestions(items, "add", text="x") == ["a", "b", "c", "x"]
    assert items == ["a", "b", "c"]  # the input is never changed
    with pytest.raises(ValueError, match="select one first"):
        revise_suggestions(items, "remove")
    with pytest.raises(ValueError, match="index 3 is out of range: there are 3 suggestions"):
        revise_suggestions(items, "up", index=3)
    with pytest.raises(ValueError, match="blank"):
        revise_suggestions(items, "add", text="  ")
    with pytest.raises(ValueError, match="action must be one of 'remove'"):
        revise_suggestions(items, "sort", index=0)  # type: ignore[arg-type]


def test_crewai_reads_what_the_browser_saved(tmp_path: Path) -> None:
    from crewtrain_nb import TrainingBrowser

    paths = write_crewai_run(tmp_path, "paraphrased")
    browser = TrainingBrowser(paths["training"], trained=paths["trained"], draw_in_background=False)
    role = "Market Researcher"
    browser.select(role)  # a role matched from the trained file
    browser.suggestions.value = 0
    browser.remove_button.click()
    browser.suggestion_text.value = "Say which country each figure is for."
    browser.add_button.click()
    browser.save_button.click()
    saved = browser.draft
    assert saved[-1] == "Say which country each figure is for." and len(saved) == 3
    [seen] = run_crewai_agents([(paths["trained"], role, tmp_path)])
    assert seen["direct"] == "TASK" + prompt_preview(paths["trained"], role)[role]
    assert seen["direct"].endswith("\n - ".join(saved))
    assert "\n - Say which country each figure is for." in seen["prompts"][0]
