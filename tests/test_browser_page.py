"""The widget page in a real browser: Voila serves a notebook with TrainingBrowser, Playwright drives Chromium.

Set ``CREWTRAIN_UPDATE_DOCS=1`` to also save the screenshot to ``docs/browser.png``.
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

import nbformat
import pytest

from crewtrain_nb.demo import demo_agent_names, make_training_data

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

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def voila_page(tmp_path: Path) -> Iterator[str]:
    """Serve a notebook showing the browser with Voila on 127.0.0.1; yield its URL."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-test-tools (make test does)")
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(NOTEBOOK_CODE))
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
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_browser_page_changes_record_with_agent_and_iteration(voila_page: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

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
            page.goto(voila_page)
            record = page.locator(".ctn-record .widget-html-content")
            expect(record).to_contain_text(training[agents[0]][0]["human_feedback"], timeout=120_000)
            # ipywidgets renders each option's label as the <option> value
            labels = {agent: f"{names[agent]} · {agent[:8]}" for agent in agents}
            expect(page.locator(".ctn-agent select")).to_have_value(labels[agents[0]])
            curve = page.locator("img.ctn-curve")  # the Image widget is the <img> itself
            expect(curve).to_be_visible(timeout=30_000)
            first_curve = curve.get_attribute("src") or ""

            # another agent: the record pane shows that agent's first iteration, and its curves.
            # The HTML pane and the image update separately: wait for both before the next step.
            page.locator(".ctn-agent select").select_option(label=labels[agents[1]])
            expect(record).to_contain_text(training[agents[1]][0]["human_feedback"], timeout=30_000)
            expect(page.locator(".ctn-trained .widget-html-content")).to_contain_text(names[agents[1]])
            expect(curve).not_to_have_attribute("src", first_curve, timeout=30_000)
            curve_before = curve.get_attribute("src") or ""

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
            shot = tmp_path / "browser.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("CREWTRAIN_UPDATE_DOCS"):
                DOCS.mkdir(exist_ok=True)
                shutil.copyfile(shot, DOCS / "browser.png")
        finally:
            with contextlib.suppress(Exception):
                chromium.close()
    assert all("/static/" not in url or url.endswith(".css") for url in external), external
    assert not [url for url in external if url.endswith(".js")], f"external scripts requested: {external}"
