"""The README's Quickstart, run as written: its shell step, then its Python blocks in a real Jupyter kernel."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Quickstart\n(.*?)^## ", text, flags=re.S | re.M)
    assert match, "README.md has no '## Quickstart' section"
    return match.group(1)


def python_blocks(section: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_quickstart_names_the_demo_command_it_relies_on() -> None:
    section = quickstart_section()
    assert "crewtrain-nb demo stores/" in section
    assert len(python_blocks(section)) >= 2


@pytest.mark.slow
def test_quickstart_runs_as_written_after_the_demo_command(tmp_path: Path) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    # The shell step, exactly as the README gives it (the console script of this environment).
    command = Path(sys.executable).with_name("crewtrain-nb")
    demo = subprocess.run([str(command), "demo", "stores/"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr

    blocks = python_blocks(quickstart_section())
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(block) for block in blocks])
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources).execute()

    for cell in notebook.cells:
        errors = [output for output in cell.outputs if output.output_type == "error"]
        assert not errors, (cell.source, errors)
    # What the blocks say they make, made where a user would find it.
    assert (tmp_path / "training_data.csv").stat().st_size > 0
    assert (tmp_path / "metrics.pkl").stat().st_size > 0
