"""The widget page in a real browser: Voila serves a notebook with TrainingBrowser, Playwright drives Chromium.

The page is walked through in Voila's light and dark themes; in both, every visible text must be readable
(WCAG contrast >= 4.5 against what is behind it, from the page's own computed styles). The HTML report,
opened from disk, is held to the same in the reader's light and dark colour schemes.
Set ``CREWTRAIN_UPDATE_DOCS=1`` to also save the light theme's screenshot to ``docs/browser.png``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import CrewTrainingHandler, write_report
from crewtrain_nb.demo import demo_agent_names, make_training_data, write_demo

from .voila_page import CHROMIUM, CHROMIUM_ARGS, MIN_CONTRAST, measure_contrast, serve_notebook

DOCS = Path(__file__).resolve().parent.parent / "docs"

NOTEBOOK_CODE = """\
from crewtrain_nb import TrainingBrowser
from crewtrain_nb.demo import demo_agent_names, write_demo

paths = write_demo("stores")
browser = TrainingBrowser(
    paths["training"], trained=paths["trained"], export_dir="exports",
    agent_names=demo_agent_names(__import__("crewtrain_nb").CrewTrainingHandler(paths["training"]).load()),
)
browser
"""

#: The renderers' other pieces, as a notebook shows them in an HTML output: a deletion in a word diff,
#: a table of a non-CrewAI record with a muted array summary, a trained agent without suggestions, a message.
RENDER_CODE = """\
from IPython.display import HTML
from crewtrain_nb.render import message_html, record_html, trained_html

HTML(
    record_html({"initial_output": "The cat sat.", "human_feedback": "A dog.", "improved_output": "The dog sat."},
                title="a word diff")
    + record_html({"loss": 0.25, "weights": [0.1, 0.2]}, title="a metrics record")
    + trained_html("Reviewer", {"quality": 7.5, "suggestions": [], "final_summary": "Fine."})
    + message_html("A message.")
)
"""

pytestmark = pytest.mark.slow


@pytest.fixture(params=["light", "dark"])
def voila_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Serve a notebook showing the browser with Voila on 127.0.0.1 in one of its themes; yield URL and theme."""
    theme = str(request.param)
    with serve_notebook(tmp_path, [NOTEBOOK_CODE, RENDER_CODE], theme=theme) as url:
        yield url, theme


#: The least alpha of an <img>'s pixels (255: opaque everywhere).
LEAST_ALPHA_JS = """
img => {
  const canvas = document.createElement("canvas");
  [canvas.width, canvas.height] = [img.naturalWidth, img.naturalHeight];
  const context = canvas.getContext("2d");
  context.drawImage(img, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let least = 255;
  for (let i = 3; i < pixels.length; i += 4) least = Math.min(least, pixels[i]);
  return least;
}
"""


def test_browser_page_changes_record_with_agent_and_iteration(voila_page: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, theme = voila_page
    texts: list[dict[str, Any]] = []  # every text seen, at each step of the walk-through

    training = make_training_data()  # what write_demo() wrote, seed 0
    names = demo_agent_names(training)
    agents = list(training)
    external: list[str] = []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 640})

            def route(route: object) -> None:
                request = route.request  # type: ignore[attr-defined]
                if request.url.startswith("http://127.0.0.1"):
                    route.continue_()  # type: ignore[attr-defined]
                else:
                    external.append(request.url)
                    route.abort()  # type: ignore[attr-defined]

            page.route("**/*", route)
            page.goto(url)
            record = page.locator(".ctn-record .widget-html-content")
            expect(record).to_contain_text(training[agents[0]][0]["human_feedback"], timeout=120_000)
            # ipywidgets renders each option's label as the <option> value
            labels = {agent: f"{names[agent]} · {agent[:8]}" for agent in agents}
            expect(page.locator(".ctn-agent select")).to_have_value(labels[agents[0]])
            curve = page.locator("img.ctn-curve")  # the Image widget is the <img> itself
            expect(curve).to_be_visible(timeout=30_000)
            first_curve = curve.get_attribute("src") or ""
            texts += measure_contrast(page)  # a record with a word diff

            # another agent: the record pane shows that agent's first iteration, and its curves.
            # The HTML pane and the image update separately: wait for both before the next step.
            page.locator(".ctn-agent select").select_option(label=labels[agents[1]])
            expect(record).to_contain_text(training[agents[1]][0]["human_feedback"], timeout=30_000)
            expect(page.locator(".ctn-trained .widget-html-content")).to_contain_text(names[agents[1]])
            expect(curve).not_to_have_attribute("src", first_curve, timeout=30_000)
            curve_before = curve.get_attribute("src") or ""
            texts += measure_contrast(page)  # the trained agent's quality, suggestions and summary

            # next iteration: the record pane and the curve's iteration marker both change
            page.locator(".ctn-next").click()
            expected = training[agents[1]][1]
            expect(record).to_contain_text(expected["human_feedback"], timeout=30_000)
            if "improved_output" in expected:
                expect(record.locator("ins").first).to_be_visible()
            else:
                expect(record).to_contain_text("No improved output")
            expect(page.locator(".ctn-iteration .widget-readout")).to_have_text("1")

            expect(curve).not_to_have_attribute("src", curve_before, timeout=30_000)
            texts += measure_contrast(page)  # a record without an improved output: its note
            # The curves are drawn in light colours: in every theme they sit on a white card, and are opaque.
            assert curve.evaluate("img => getComputedStyle(img).backgroundColor") == "rgb(255, 255, 255)"
            assert curve.evaluate(LEAST_ALPHA_JS) == 255
            shot = tmp_path / f"browser-{theme}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("CREWTRAIN_UPDATE_DOCS") and theme == "light":
                DOCS.mkdir(exist_ok=True)
                shutil.copyfile(shot, DOCS / "browser.png")
        finally:
            with contextlib.suppress(Exception):
                chromium.close()
    # The walk-through showed every kind of text the panes have: headings, feedback, a diff, a note.
    unreadable = sorted((text for text in texts if text["ratio"] < MIN_CONTRAST), key=lambda text: text["ratio"])
    assert not unreadable, f"{theme} theme: {len(unreadable)} texts below {MIN_CONTRAST}:1, e.g. {unreadable[:8]}"
    shown = {text["tag"] for text in texts} | {word for text in texts for word in text["cls"].split()}
    assert {"h4", "ins", "del", "th", "td", "li", "ctn-feedback", "ctn-note", "ctn-muted"} <= shown, shown
    assert all("/static/" not in url or url.endswith(".css") for url in external), external
    assert not [url for url in external if url.endswith(".js")], f"external scripts requested: {external}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_report_page_is_readable_in_the_readers_color_scheme(tmp_path: Path, scheme: str) -> None:
    from playwright.sync_api import sync_playwright

    paths = write_demo(tmp_path / "stores")
    names = demo_agent_names(CrewTrainingHandler(paths["training"]).load())
    report = write_report(paths["training"], tmp_path / "report.html", trained=paths["trained"], agent_names=names)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1280, "height": 800}, color_scheme=scheme)

            def local_only(route: Any) -> None:  # the report loads nothing from outside
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", local_only)
            page.goto(report.as_uri())
            texts = measure_contrast(page)
        finally:
            with contextlib.suppress(Exception):
                chromium.close()
    unreadable = sorted((text for text in texts if text["ratio"] < MIN_CONTRAST), key=lambda text: text["ratio"])
    assert not unreadable, f"{scheme}: {len(unreadable)} texts below {MIN_CONTRAST}:1, e.g. {unreadable[:8]}"
    shown = {text["tag"] for text in texts} | {word for text in texts for word in text["cls"].split()}
    assert {"h1", "h2", "h4", "th", "td", "ins", "ctn-note", "ctn-feedback"} <= shown, shown
    # The page follows the reader's preference: the heading sits on a light or a dark background.
    (heading,) = [text for text in texts if text["tag"] == "h1"]
    channels = [int(value) for value in heading["background"][4:-1].split(",")]
    assert (min(channels) > 200) if scheme == "light" else (max(channels) < 60), heading
