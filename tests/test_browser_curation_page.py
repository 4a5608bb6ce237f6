"""The browser's curation of a role's suggestions in a real browser: Voila serves a notebook with TrainingBrowser
on a CrewAI run; Playwright removes one suggestion, sees the prompt preview change, and presses Save.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from crewtrain_nb.demo import make_crewai_run

from .voila_page import sealed_page, serve_notebook

NOTEBOOK_CODE = """\
from crewtrain_nb import TrainingBrowser
from crewtrain_nb.demo import write_crewai_run

paths = write_crewai_run("stores", "paraphrased")
browser = TrainingBrowser(paths["training"], trained=paths["trained"], draw_in_background=False)
browser
"""

pytestmark = pytest.mark.slow


def test_remove_a_suggestion_and_save_in_the_browser(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    run = make_crewai_run("paraphrased")
    first_role = next(iter(run["agents"].values()))["role"]  # the first agent's, shown first
    removed, *kept = run["trained"][first_role]["suggestions"]
    trained = tmp_path / "stores" / "trained_agents_data.pkl"
    with serve_notebook(tmp_path, [NOTEBOOK_CODE]) as url:
        with sync_playwright() as playwright, sealed_page(playwright, height=1200) as (page, external):
            page.goto(url, timeout=120_000)
            agent = page.locator(".ctn-agent select")
            expect(agent).to_be_visible(timeout=120_000)
            expect(page.locator(".ctn-agent select option").first).to_contain_text(f"{first_role} · ")
            expect(page.locator(".ctn-agent select option").first).to_contain_text("(inferred)")
            prompt = page.locator(".ctn-prompt .widget-html-content")
            expect(prompt).to_contain_text(removed, timeout=60_000)
            before = trained.read_bytes()
            page.locator(".ctn-suggestions select").select_option(index=0)
            expect(page.locator(".ctn-suggestion-text textarea")).to_have_value(removed, timeout=30_000)
            page.locator(".ctn-remove").click()
            expect(prompt).not_to_contain_text(removed, timeout=30_000)  # the preview follows the draft
            expect(prompt).to_contain_text(kept[0])
            assert trained.read_bytes() == before  # nothing written before Save
            page.locator(".ctn-save").click()
            expect(page.locator(".ctn-curation-status .widget-html-content")).to_contain_text(
                "Saved", timeout=60_000
            )
    assert not [u for u in external if u.endswith(".js")], f"external scripts requested: {external}"
    assert trained.read_bytes() != before
    with open(trained, "rb") as file:
        now = pickle.load(file)  # a plain pickle CrewAI reads
    assert now[first_role]["suggestions"] == kept
    assert {role: entry for role, entry in now.items() if role != first_role} == {
        role: entry for role, entry in run["trained"].items() if role != first_role
    }
    versions = list((tmp_path / "stores" / "trained_agents_data.pkl.versions").iterdir())
    assert len(versions) == 1 and versions[0].read_bytes() == before  # the file before, kept for Undo
