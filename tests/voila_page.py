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
from collections.abc import Iterator
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
def serve_notebook(folder: Path, code: str, *, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Write a one-cell notebook of ``code`` in ``folder``, serve it with Voila; yield its URL."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-test-tools (make test does)")
    notebook = nbformat.v4.new_notebook()
    notebook.cells.append(nbformat.v4.new_code_cell(code))
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
            [voila, "page.ipynb", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1", "--show_tracebacks=True"],
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
