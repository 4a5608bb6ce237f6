"""Serving a notebook with Voila on 127.0.0.1 and opening it in Debian's Chromium, for the real-browser tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_notebook(
    folder: Path, cells: Sequence[str], *, theme: str = "light", extra_env: dict[str, str] | None = None
) -> Iterator[str]:
    """Write a notebook of ``cells`` (code) in ``folder``, serve it with Voila in ``theme``; yield its URL."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-test-tools (make test does)")
    notebook = nbformat.v4.new_notebook()
    notebook.cells.extend(nbformat.v4.new_code_cell(code) for code in cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, folder / "page.ipynb")
    port = free_port()
    home = folder / "jupyter"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "mpl"),
        "MPLBACKEND": "Agg",
        **(extra_env or {}),
    }
    voila = shutil.which("voila", path=os.path.dirname(sys.executable)) or "voila"
    log_path = folder / "voila.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                voila,
                "page.ipynb",
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--show_tracebacks=True",
                f"--theme={theme}",
                "--VoilaConfiguration.file_allowlist=['.*']",
            ],
            cwd=folder,
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
                        pytest.fail("voila did not start:\n" + log_path.read_text()[-3000:])
                    time.sleep(0.3)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@contextlib.contextmanager
def sealed_page(playwright: Any, *, width: int = 1280, height: int = 720) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page whose requests to anything but 127.0.0.1 are refused; yield it and the refused URLs."""
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    external: list[str] = []
    try:
        page = chromium.new_page(viewport={"width": width, "height": height})

        def route(route: Any) -> None:
            if route.request.url.startswith("http://127.0.0.1"):
                route.continue_()
            else:
                external.append(route.request.url)
                route.abort()

        page.route("**/*", route)
        yield page, external
    finally:
        with contextlib.suppress(Exception):
            chromium.close()


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


def measure_contrast(page: Any) -> list[dict[str, Any]]:
    """Every visible text on the page with its contrast ratio (see CONTRAST_JS)."""
    return list(page.evaluate(CONTRAST_JS))
