"""The package as a user installs it: ``python -m build`` makes a wheel that installs and runs in a clean venv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import crewtrain_nb

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # The clean venv must not see this checkout or this environment's packages.
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MPLBACKEND"] = "Agg"
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_built_wheel_installs_and_runs_in_a_clean_venv(tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves build/ and *.egg-info beside the sources it builds.
    source = tmp_path / "source"
    junk = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "demo-output")
    shutil.copytree(ROOT, source, ignore=junk)
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, source)
    wheels = sorted(dist.glob("crewtrain_nb-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    # The version is written once (crewtrain_nb.__version__); the wheel's name and metadata carry it.
    assert wheels[0].name == f"crewtrain_nb-{crewtrain_nb.__version__}-py3-none-any.whl"

    env_dir = tmp_path / "clean-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheels[0])

    work = tmp_path / "work"
    work.mkdir()
    # The console script and the package both come from the wheel, not from this checkout.
    location = run(python, "-c", "import crewtrain_nb; print(crewtrain_nb.__file__)", cwd=work).stdout.strip()
    assert Path(location).is_relative_to(env_dir), location
    run(env_dir / "bin" / "crewtrain-nb", "demo", "stores", cwd=work)
    script = (
        "from crewtrain_nb import feedback_frame, plot_feedback\n"
        "import importlib.resources\n"
        "frame = feedback_frame('stores/training_data.pkl')\n"
        "assert len(frame) > 0, frame\n"
        "plot_feedback('stores/training_data.pkl').savefig('feedback.png')\n"
        "assert importlib.resources.files('crewtrain_nb').joinpath('py.typed').is_file()\n"
        "import crewtrain_nb, importlib.metadata\n"
        "assert importlib.metadata.version('crewtrain-nb') == crewtrain_nb.__version__, crewtrain_nb.__version__\n"
    )
    run(python, "-c", script, cwd=work)
    assert (work / "feedback.png").stat().st_size > 0
