"""Run the store, safe-loading, frames and codec tests on every other supported CPython found (``make test``).

Usage: ``.venv/bin/python scripts/test_pythons.py`` (the Makefile runs it before the main interpreter's whole suite).

It prints which supported versions it found and which are missing, and fails
if the main one (3.11, the ``.venv``) is missing. Each other version gets a
venv ``.venv-3.X`` with the light ``test-core`` extra (no crewai, Voila or
Playwright), brought up to date when pyproject.toml changes; the oldest version also gets
``.venv-3.10-numpy1.24`` with the oldest numpy the package allows. pytest runs
there without the suite's notebook and doctest options (nbval is not installed).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pythons import (  # noqa: E402
    MAIN,
    OLDEST_NUMPY,
    ROOT,
    SUPPORTED,
    find_interpreters,
    oldest_numpy_python,
    venv_python,
)

CORE_TESTS = ["tests/test_store.py", "tests/test_unpickle.py", "tests/test_lazy.py", "tests/test_source.py",
              "tests/test_pieces.py", "tests/test_hostile_pickles.py", "tests/test_fuzz_loader.py",
              "tests/test_frames.py", "tests/test_codec.py"]  # fmt: skip


def ensure_venv(base: str, venv: Path, *extra: str) -> Path:
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= (ROOT / "pyproject.toml").stat().st_mtime:
        return python
    print(f"test_pythons: installing {venv.name} ({base})", flush=True)
    if not python.exists():
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-e", f"{ROOT}[test-core]", *extra], check=True)
    stamp.touch()
    return python


def run_core(python: Path, label: str) -> bool:
    version = "import numpy; print(numpy.__version__)"
    numpy = subprocess.run([str(python), "-c", version], capture_output=True, text=True)
    print(f"test_pythons: {label}, numpy {numpy.stdout.strip()}: {' '.join(CORE_TESTS)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra", *CORE_TESTS], cwd=ROOT
    )
    print(f"test_pythons: {label} took {time.monotonic() - started:.0f} s", flush=True)
    return result.returncode == 0


def main() -> int:
    found = find_interpreters()
    missing = [version for version in SUPPORTED if version not in found]
    print(f"test_pythons: found CPython {', '.join(f'{v} ({p})' for v, p in found.items()) or 'none'}")
    print(f"test_pythons: missing CPython {', '.join(missing) or 'none'}")
    main_version = "{}.{}".format(*sys.version_info[:2])
    if MAIN not in found or main_version != MAIN:
        print(f"test_pythons: the main CPython {MAIN} is missing (this is {main_version}); install it", file=sys.stderr)
        return 1
    runs: list[tuple[str, Path]] = []
    for version in (v for v in SUPPORTED if v in found and v != MAIN):
        runs.append((f"CPython {version}", ensure_venv(found[version], venv_python(version).parent.parent)))
    oldest = next(v for v in SUPPORTED if v in found)
    if oldest in ("3.10", "3.11"):
        python = ensure_venv(found[oldest], oldest_numpy_python(oldest).parent.parent, f"numpy=={OLDEST_NUMPY}.*")
        runs.append((f"CPython {oldest} with numpy {OLDEST_NUMPY}", python))
    failed = [label for label, python in runs if not run_core(python, label)]
    if failed:
        print(f"test_pythons: failed on {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
