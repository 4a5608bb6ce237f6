"""The notebooks as committed: executed, and a browser's saved state shows its curves.

nbval (run on ``notebooks/`` by the suite's ``addopts``) re-executes each
notebook and compares its text outputs. These checks are about the saved
files themselves, which is what a reader of the repository sees without a
kernel (GitHub, nbviewer, JupyterLab before running anything).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WITH_BROWSER = [path for path in NOTEBOOKS if "TrainingBrowser(" in path.read_text(encoding="utf-8")]


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 4 and len(WITH_BROWSER) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_committed_with_every_code_cell_run_in_order(path: Path) -> None:
    counts = [cell["execution_count"] for cell in read(path)["cells"] if cell["cell_type"] == "code"]
    assert counts and None not in counts, f"{path.name}: rebuild it with scripts/build_notebooks.py"
    assert counts == list(range(1, len(counts) + 1))


@pytest.mark.parametrize("path", WITH_BROWSER, ids=lambda path: path.name)
def test_a_saved_browser_shows_its_curves(path: Path) -> None:
    notebook = read(path)
    state = notebook["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    images = [model for model in state.values() if model["model_name"] == "ImageModel"]
    assert images, f"{path.name}: no saved image widget"
    for image in images:
        (buffer,) = [buffer for buffer in image.get("buffers", []) if buffer["path"] == ["value"]]
        png = base64.b64decode(buffer["data"])
        assert png.startswith(PNG_MAGIC) and len(png) > 5_000, f"{path.name}: the browser's curve image is empty"
