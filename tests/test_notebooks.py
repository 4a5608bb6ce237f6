"""The notebooks as committed: executed, and a browser's saved state shows its curves.

nbval (run on ``notebooks/`` by the suite's ``addopts``) re-executes each
notebook and compares its text outputs. These checks are about the saved
files themselves, which is what a reader of the repository sees without a
kernel (GitHub, nbviewer, JupyterLab before running anything).
"""

from __future__ import annotations

import base64
import json
import re
import runpy
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WITH_BROWSER = [path for path in NOTEBOOKS if "TrainingBrowser(" in path.read_text(encoding="utf-8")]
#: A call of one of the plot functions (not its name in an import list).
PLOT_CALL = re.compile(r"\bplot_(metrics|metric|feedback|quality)\(")
MAGIC = re.compile(r"^\s*%matplotlib", re.MULTILINE)


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 4 and len(WITH_BROWSER) >= 3
    assert len([path for path in NOTEBOOKS if PLOT_CALL.search(path.read_text(encoding="utf-8"))]) >= 4


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


def code_cells(path: Path) -> list[dict[str, Any]]:
    return [cell for cell in read(path)["cells"] if cell["cell_type"] == "code"]


def source(cell: dict[str, Any]) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_no_notebook_needs_the_matplotlib_magic(path: Path) -> None:
    assert not [source(cell) for cell in code_cells(path) if MAGIC.search(source(cell))], (
        f"{path.name}: figures show themselves; rebuild it with scripts/build_notebooks.py"
    )


def test_the_notebook_sources_use_no_matplotlib_magic() -> None:
    cells = runpy.run_path(str(ROOT / "scripts" / "build_notebooks.py"))["ALL"]
    assert not [(name, text) for name, sources in cells.items() for kind, text in sources if MAGIC.search(text)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_each_plot_cell_shows_exactly_one_png(path: Path) -> None:
    shown = {}
    for cell in code_cells(path):
        images = [output for output in cell["outputs"] if "image/png" in output.get("data", {})]
        for output in images:
            assert base64.b64decode(output["data"]["image/png"]).startswith(PNG_MAGIC)
        shown[source(cell)] = len(images)
    expected = {text: int(bool(PLOT_CALL.search(text))) for text in shown}
    assert shown == expected, f"{path.name}: a plot cell must show one image, other cells none"
