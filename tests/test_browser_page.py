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
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from crewtrain_nb import CrewTrainingHandler, write_report
from crewtrain_nb.demo import demo_agent_names, make_training_data, write_demo

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
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

#: WCAG 2 AA for normal text.
MIN_CONTRAST = 4.5

#: Run in the page: every visible element with text of its own (and every select/input showing a value),
#: its text colour and the colour behind it (its own background or the first ancestor's that is not
#: transparent, semi-transparent ones composited over the ones below), and their WCAG contrast ratio.
CONTRAST_JS = r"""
() => {
  // WCAG 2 contrast of every visible text against the colour behind it, from the page's computed styles.
  const canvas = document.createElement("canvas").getContext("2d");
  function rgba(css) {
    // Any CSS colour -> [r, g, b, a] (0-255, alpha 0-1), via a canvas when it is not rgb()/rgba().
    let m = css.match(/^rgba?\(([^)]*)\)$/);
    if (!m) {
      canvas.clearRect(0, 0, 1, 1);
      canvas.fillStyle = "#000"; canvas.fillStyle = css; canvas.fillRect(0, 0, 1, 1);
      const d = canvas.getImageData(0, 0, 1, 1).data;
      return [d[0], d[1], d[2], d[3] / 255];
    }
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function over(top, bottom) {  // top composited over an opaque bottom
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  }
  function background(element) {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let color = [255, 255, 255, 1];  // the canvas behind everything
    for (const layer of layers.reverse()) color = over(layer, color);
    return color;
  }
  function luminance(c) {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  }
  function visible(e) {
    const style = getComputedStyle(e);
    if (style.visibility !== "visible" || style.display === "none") return false;
    for (let a = e; a; a = a.parentElement) if (Number(getComputedStyle(a).opacity) === 0) return false;
    const rect = e.getBoundingClientRect();
    return rect.width > 0 && rect.height > 0;
  }
  const results = [];
  for (const e of document.body.querySelectorAll("*")) {
    if (["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "OPTION"].includes(e.tagName)) continue;
    let text = [...e.childNodes].filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.textContent).join("").trim();
    if (["SELECT", "INPUT", "TEXTAREA"].includes(e.tagName)) {
      text = (e.tagName === "SELECT" ? e.selectedOptions[0]?.text : e.value) || "";
    }
    if (!text || !visible(e)) continue;
    const back = background(e);
    const fore = over(rgba(getComputedStyle(e).color), back);
    const [l1, l2] = [luminance(fore), luminance(back)].sort((x, y) => y - x);
    results.push({
      ratio: Math.round(((l1 + 0.05) / (l2 + 0.05)) * 100) / 100,
      text: text.slice(0, 60), tag: e.tagName.toLowerCase(), cls: String(e.className).slice(0, 60),
      color: getComputedStyle(e).color, background: "rgb(" + back.slice(0, 3).map(Math.round).join(", ") + ")",
    });
  }
  return results;
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["light", "dark"])
def voila_page(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Serve a notebook showing the browser with Voila on 127.0.0.1 in one of its themes; yield URL and theme."""
    theme = str(request.param)
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-test-tools (make test does)")
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(NOTEBOOK_CODE))
    notebook.cells.append(nbformat.v4.new_code_cell(RENDER_CODE))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "browser.ipynb")
    port = free_port()
    home = tmp_path / "jupyter"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "mpl"),
        "MPLBACKEND": "Agg",
    }
    voila = shutil.which("voila", path=os.path.dirname(sys.executable)) or "voila"
    log = open(tmp_path / "voila.log", "w")  # noqa: SIM115 - closed in the finally below
    server = subprocess.Popen(
        [
            voila,
            "browser.ipynb",
            "--no-browser",
            f"--port={port}",
            "--Voila.ip=127.0.0.1",
            "--show_tracebacks=True",
            f"--theme={theme}",
            "--VoilaConfiguration.file_allowlist=['.*']",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "voila/static/voila.js", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("voila did not start:\n" + (tmp_path / "voila.log").read_text()[-3000:])
                time.sleep(0.3)
        yield url, theme
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


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


def measure_contrast(page: Any) -> list[dict[str, Any]]:
    """Every visible text on the page with its contrast ratio (see CONTRAST_JS)."""
    return list(page.evaluate(CONTRAST_JS))


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
