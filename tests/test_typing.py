"""The package's type checking (``mypy``, run by ``make test``): how it is configured and what it may skip.

Every ``# type: ignore`` names its error code and says why, on its line (after it) or in the comment line just
above; mypy's per-module overrides only cover third-party libraries that ship no types, never our own modules.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "crewtrain_nb"

_IGNORE = re.compile(r"type:\s*ignore")
#: ``# type: ignore[code, code]  # why``: the codes, then the reason as a comment of its own.
_EXPLAINED = re.compile(r"#\s*type:\s*ignore\[[a-z-]+(?:,\s*[a-z-]+)*\]\s*#\s*\S")
_CODED = re.compile(r"#\s*type:\s*ignore\[[a-z-]+(?:,\s*[a-z-]+)*\]\s*$")


def _unexplained_ignores(source: str) -> list[tuple[int, str]]:
    """``(line, comment)`` of each ``type: ignore`` comment in ``source`` without an error code or a reason."""
    lines = source.splitlines()
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT or not _IGNORE.search(token.string):
            continue
        row = token.start[0]
        above = lines[row - 2].strip() if row >= 2 else ""
        if _EXPLAINED.search(token.string):
            continue
        if _CODED.search(token.string) and above.startswith("#") and not _IGNORE.search(above):
            continue
        found.append((row, token.string))
    return found


def test_every_type_ignore_in_the_package_names_its_code_and_says_why() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}:{row}: {comment}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for row, comment in _unexplained_ignores(path.read_text(encoding="utf-8"))
    ]
    assert not unexplained, "type: ignore without an error code or a reason:\n" + "\n".join(unexplained)


def test_the_check_of_ignores_tells_an_explained_one_from_a_bare_one() -> None:
    source = (
        "a = f()  # type: ignore[misc]  # the library ships no types\n"
        "# typeshed declares only the public API\n"
        "b = g()  # type: ignore[attr-defined]\n"
        "c = h()  # type: ignore[no-any-return]\n"
        "d = i()  # type: ignore\n"
        "e = 'a string saying # type: ignore is not a comment'\n"
    )
    assert [row for row, _ in _unexplained_ignores(source)] == [4, 5]


def test_mypy_is_strict_on_the_package_and_overrides_only_untyped_libraries() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True
    assert config["files"] == ["crewtrain_nb"]
    for override in config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        ours = [module for module in modules if module.split(".")[0] == "crewtrain_nb"]
        assert not ours, f"a mypy override relaxes the package's own modules: {ours}"
        assert set(override) == {"module", "ignore_missing_imports"}, override


def test_make_test_type_checks_before_running_the_tests() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    steps = [line.strip() for line in recipe]
    assert "$(BIN)/mypy" in steps
    assert steps.index("$(BIN)/mypy") < steps.index("$(BIN)/python -m pytest")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert any(re.match(r"mypy\b", requirement) for requirement in project["optional-dependencies"]["dev"])
