"""The notebook feedback widget in a real browser: Voila serves a notebook that starts a scripted-LLM
``train(crew, 2, feedback="notebook")``; Playwright types each feedback into the box and presses Submit.

Set ``CREWTRAIN_UPDATE_DOCS=1`` to also save the screenshot to ``docs/training_session.png``.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest

from .voila_page import MIN_CONTRAST, measure_contrast, sealed_page, serve_notebook

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

NOTEBOOK_CODE = f"""\
import os, sys, tempfile
sys.path.insert(0, {str(ROOT)!r})
from tests.crewai_training_script import offline_environment, scripted_llm, small_crew
os.environ.update(offline_environment(tempfile.mkdtemp()))  # before crewai is imported
from crewtrain_nb.crewai import train

session = train(small_crew(scripted_llm(html_output=True)), 2, inputs={{"topic": "locks"}}, directory="run",
                feedback="notebook")
session
"""

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_feedback_typed_in_the_browser_lands_in_crewais_file(tmp_path: Path, theme: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    typed: list[str] = []
    unreadable: list[dict[str, object]] = []
    with serve_notebook(tmp_path, [NOTEBOOK_CODE], theme=theme, extra_env={"PYTHONPATH": str(ROOT)}) as url:
        with sync_playwright() as playwright, sealed_page(playwright, height=900) as (page, external):
            page.goto(url, timeout=240_000)  # Voila runs the cell first: importing crewai takes a while
            heading = page.locator(".ctn-session-heading .widget-html-content")
            box = page.locator(".ctn-session-feedback textarea")
            submit = page.locator(".ctn-session-submit")
            for step in range(1, 5):
                expect(heading).to_contain_text(f"step {step} of 4", timeout=180_000)
                expect(submit).to_be_enabled(timeout=30_000)
                # The output is shown as Markdown, its <script> as text.
                output = page.locator(".ctn-session-output .widget-html-content")
                expect(output.locator("strong")).to_be_visible()
                expect(output).to_contain_text("<script>alert(1)</script>")
                line = f"from the browser {step}: cite one source"
                box.fill(line)
                if step == 4:
                    shot = tmp_path / "training_session.png"
                    page.screenshot(path=str(shot), full_page=True)
                    # Every text of the widget (and the live browser under it) is readable in this theme.
                    unreadable = [item for item in measure_contrast(page) if item["ratio"] < MIN_CONTRAST]
                submit.click()
                typed.append(line)
            expect(page.locator(".ctn-session-status .widget-html-content")).to_contain_text(
                "Training finished", timeout=180_000
            )
    assert not [u for u in external if u.endswith(".js")], f"external scripts requested: {external}"
    with open(tmp_path / "run" / "training_data.pkl", "rb") as file:
        training = pickle.load(file)
    stored = sorted(record["human_feedback"] for records in training.values() for record in records.values())
    assert stored == sorted(typed)
    assert shot.stat().st_size > 10_000
    assert not unreadable, f"{theme} theme: texts below {MIN_CONTRAST}:1, e.g. {unreadable[:8]}"
    if os.environ.get("CREWTRAIN_UPDATE_DOCS") and theme == "light":
        shutil.copyfile(shot, DOCS / "training_session.png")
