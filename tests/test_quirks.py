"""CPython's spurious ``bytearray`` ``SystemError`` never reaches the user: on every CPython the machine has."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import pytest

from crewtrain_nb.store._quirks import BYTEARRAY_BUG_MESSAGE, quiet_bytearray_bug
from tests.pythons import MAIN, ROOT, find_interpreters, installed, venv_python


def interpreters() -> dict[str, Path]:
    """The main interpreter and every other supported CPython whose venv ``make test`` built."""
    found = {MAIN: Path(sys.executable)}
    for version in find_interpreters():
        if version != MAIN and installed(venv_python(version)):
            found[version] = venv_python(version)
    return found


def run_child(python: Path, mode: str) -> tuple[dict[str, int], str]:
    child = subprocess.run(
        [str(python), "-m", "tests.bytearray_bug", mode], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert child.returncode == 0, f"{python} {mode}: {child.stderr[-2000:]}"
    return json.loads(child.stdout), child.stderr


#: CPythons checked by hand to print the message on the bare harness (the pyenv builds ``make test`` uses).
KNOWN_AFFECTED = {"3.10.13", "3.11.7", "3.12.1", "3.13.0"}


def full_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.parametrize("version", sorted(interpreters()))
def test_a_failing_huge_bytearray_prints_nothing_through_our_loaders(version: str) -> None:
    python = interpreters()[version]
    bare, bare_stderr = run_child(python, "bare")
    bug_present = BYTEARRAY_BUG_MESSAGE in bare_stderr
    assert bug_present == (bare["last_value_set"] > 0)
    if full_version(python) in KNOWN_AFFECTED:
        # Without a reproduction this test would pass on unguarded code.
        assert bug_present, f"CPython {version}: the harness no longer reproduces the bug"
    for mode in ("safe", "trusted"):
        ours, stderr = run_child(python, mode)
        assert stderr == "", f"CPython {version}, {mode} loads printed: {stderr[-2000:]}"
        assert ours == {"loads": bare["loads"], "last_value_set": 0}


def test_other_exceptions_and_a_users_hook_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def users_hook(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        seen.append(f"{kind.__name__}: {value}")

    monkeypatch.setattr(sys, "excepthook", users_hook)
    monkeypatch.setattr(sys, "last_value", ValueError("earlier"), raising=False)
    with quiet_bytearray_bug():
        assert sys.excepthook is not users_hook
        sys.excepthook(SystemError, SystemError(BYTEARRAY_BUG_MESSAGE), None)  # kept back
        sys.excepthook(SystemError, SystemError("something else"), None)
        sys.excepthook(ValueError, ValueError(BYTEARRAY_BUG_MESSAGE), None)
        sys.last_value = SystemError(BYTEARRAY_BUG_MESSAGE)  # as PyErr_Print leaves it
    assert sys.excepthook is users_hook
    assert seen == ["SystemError: something else", f"ValueError: {BYTEARRAY_BUG_MESSAGE}"]
    assert str(sys.last_value) == "earlier"


def test_a_hook_installed_during_a_load_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    def ipython_hook(kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> None:
        pass

    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    with quiet_bytearray_bug():
        sys.excepthook = ipython_hook
    assert sys.excepthook is ipython_hook
