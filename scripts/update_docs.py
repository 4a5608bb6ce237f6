"""Regenerate the pictures the README shows, from the main job's own output.

Run: ``.venv/bin/python scripts/update_docs.py``

- ``docs/training_curves.png``, ``docs/feedback.png``, ``docs/quality.png``: copied
  from ``crewtrain-nb quickstart`` (the README's main-job command);
- ``docs/report.png``: the HTML report it writes, opened from disk in headless
  Chromium (Debian's ``/usr/bin/chromium``; no network);
- ``docs/browser.png``: the real-browser test, run with ``CREWTRAIN_UPDATE_DOCS=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
PICTURES = ("training_curves.png", "feedback.png", "quality.png")


def screenshot_report(report: Path, target: Path) -> None:
    """Open ``report`` from disk in headless Chromium and save the top of the page to ``target``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1100, "height": 1400})
            # The report is self-contained: refuse anything that is not the file itself.
            page.route(
                "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
            )
            page.goto(report.as_uri())
            page.screenshot(path=str(target))
        finally:
            chromium.close()


def main() -> None:
    from crewtrain_nb.cli import main as cli

    DOCS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # Run as `make demo` does, from the folder that gets demo-output/ (the report shows paths relative to it).
        os.chdir(scratch)
        output = Path(scratch) / "demo-output"
        if cli(["quickstart", "demo-output"]) != 0:
            raise SystemExit("crewtrain-nb quickstart failed")
        for name in PICTURES:
            shutil.copyfile(output / name, DOCS / name)
            print(f"wrote docs/{name}")
        screenshot_report(output / "report.html", DOCS / "report.png")
        print("wrote docs/report.png")
        os.chdir(ROOT)
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_browser_page.py"],
        cwd=ROOT,
        env={**os.environ, "CREWTRAIN_UPDATE_DOCS": "1"},
        check=True,
    )
    print("wrote docs/browser.png")


if __name__ == "__main__":
    main()
