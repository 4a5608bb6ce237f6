"""The CPythons ``make test`` runs the suite on, and each one's venv (stdlib only: scripts/test_pythons.py uses it).

An interpreter is found on ``PATH`` as ``python3.X`` or as a pyenv build
(``$PYENV_ROOT/versions/3.X.*``, newest patch release first). Each but the main
one gets a venv ``.venv-3.X`` in the checkout with the ``test-core`` extra.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "MAIN",
    "OLDEST_NUMPY",
    "ROOT",
    "SUPPORTED",
    "find_interpreters",
    "installed",
    "oldest_numpy_python",
    "venv_python",
]

#: Every CPython the package supports and tests; ``requires-python`` in pyproject.toml says the same.
SUPPORTED: tuple[str, ...] = ("3.10", "3.11", "3.12", "3.13")
#: The one that runs the whole suite (the ``.venv`` of the Makefile).
MAIN = "3.11"
#: The oldest numpy ``dependencies`` allows, also tested on the oldest Python found (it has no wheels past 3.11).
OLDEST_NUMPY = "1.24"
ROOT = Path(__file__).resolve().parent.parent


def _version_of(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2], sys.implementation.name)"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if len(out) == 2 and out[1] == "cpython" else None


def find_interpreters() -> dict[str, str]:
    """The base interpreter of each supported version found on this machine, by version ("3.10": path)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found: dict[str, str] = {}
    for version in SUPPORTED:
        candidates = []
        if pyenv.is_dir():
            builds = [p for p in pyenv.iterdir() if re.fullmatch(rf"{re.escape(version)}\.\d+", p.name)]
            builds.sort(key=lambda p: int(p.name.rsplit(".", 1)[1]), reverse=True)
            candidates += [str(p / "bin" / f"python{version}") for p in builds]
        on_path = shutil.which(f"python{version}")
        if on_path:
            candidates.append(on_path)
        for candidate in candidates:
            if os.access(candidate, os.X_OK) and _version_of(candidate) == version:
                found[version] = candidate
                break
    return found


def venv_python(version: str) -> Path:
    """The python of the test venv of ``version`` (the main version's is ``.venv``)."""
    return ROOT / (".venv" if version == MAIN else f".venv-{version}") / "bin" / "python"


def installed(python: Path) -> bool:
    """Whether the venv of ``python`` is complete (its ``.installed`` stamp, written last, as the Makefile's)."""
    return (python.parent.parent / ".installed").exists()


def oldest_numpy_python(version: str) -> Path:
    """The python of the venv of ``version`` with :data:`OLDEST_NUMPY`."""
    return ROOT / f".venv-{version}-numpy{OLDEST_NUMPY}" / "bin" / "python"


if __name__ == "__main__":
    for version, path in find_interpreters().items():
        print(version, path)
    sys.exit(0)
