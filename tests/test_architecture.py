"""The package's shape, read from its source with ``ast``: imports form no cycle, and no module reads
another module's underscore names.

Both tests parse every ``crewtrain_nb/**/*.py`` and look at every import in it, at module level and inside
functions, relative and absolute. Imports under ``if TYPE_CHECKING:`` are left out of the cycle test: they
never run, and naming a type a higher layer defines is how a lower one annotates a callback without
importing it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import crewtrain_nb

PACKAGE = Path(crewtrain_nb.__file__).parent

#: Import edges allowed in a cycle for now, each with why (a stale entry fails the test).
KNOWN_CYCLE_EDGES: dict[tuple[str, str], str] = {}

#: ``(importing module, module.name read)`` pairs allowed across modules, each with why (a stale entry fails).
KNOWN_PRIVATE_READS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One name an import statement binds: what it names, where, and whether only a type checker sees it."""

    importer: str  # the module whose source holds the import
    module: str  # the module imported from (``crewtrain_nb.store`` for ``from ..store import x``)
    name: str | None  # the name taken from it (None for ``import x``)
    bound: str  # the local name it is bound to
    line: int
    type_checking: bool


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every module of ``package`` (a folder with ``__init__.py``)."""
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """The ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            inside |= {id(child) for statement in node.body for child in ast.walk(statement)}
    return inside


def imports_in(module: str, path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    guarded = type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        checking = id(node) in guarded
        if isinstance(node, ast.Import):
            for alias in node.names:  # ``import a.b`` binds ``a``; ``import a.b as c`` binds ``c`` to ``a.b``
                bound = alias.asname or alias.name.split(".")[0]
                found.append(Import(module, alias.name, None, bound, node.lineno, checking))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                found.append(Import(module, source, alias.name, alias.asname or alias.name, node.lineno, checking))
    return found


def import_graph(package: Path, *, with_type_checking: bool = False) -> dict[str, dict[str, int]]:
    """``{module: {module it imports: line}}`` over the package's own modules.

    ``from .store import x`` is an edge to ``crewtrain_nb.store`` (its ``__init__``), or to
    ``crewtrain_nb.store.x`` when ``x`` is a module; ``import crewtrain_nb.a.b`` is an edge to ``crewtrain_nb.a.b``.
    """
    modules = package_modules(package)
    graph: dict[str, dict[str, int]] = {module: {} for module in modules}
    for module, path in modules.items():
        for found in imports_in(module, path):
            if found.type_checking and not with_type_checking:
                continue
            target = found.module
            if found.name is not None and f"{found.module}.{found.name}" in modules:
                target = f"{found.module}.{found.name}"
            if target in modules and target != module:
                graph[module].setdefault(target, found.line)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (an iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        state[start] = 1
        stack = [iter(sorted(graph[start]))]
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return [*path[path.index(step) :], step]
            elif step not in state:
                state[step] = 1
                path.append(step)
                stack.append(iter(sorted(graph[step])))
    return None


def describe_cycle(cycle: list[str], graph: dict[str, dict[str, int]], package: Path) -> str:
    """Each step of ``cycle`` with the file and line of its import."""
    files = package_modules(package)
    steps = [
        f"  {importer} imports {imported} ({files[importer].relative_to(package.parent)}:{graph[importer][imported]})"
        for importer, imported in zip(cycle, cycle[1:], strict=False)
    ]
    return "import cycle:\n" + "\n".join(steps)


def test_the_package_imports_form_no_cycle() -> None:
    graph = import_graph(PACKAGE)
    for edge, why in KNOWN_CYCLE_EDGES.items():
        assert edge[1] in graph[edge[0]], f"{edge} is on KNOWN_CYCLE_EDGES ({why}) but is gone: remove the entry"
    pruned = {
        module: set(imported) - {b for a, b in KNOWN_CYCLE_EDGES if a == module} for module, imported in graph.items()
    }
    cycle = find_cycle(pruned)
    assert cycle is None, describe_cycle(cycle, graph, PACKAGE)
    for edge, why in KNOWN_CYCLE_EDGES.items():  # each allowed edge is allowed only because it closes a cycle
        with_edge = {**pruned, edge[0]: pruned[edge[0]] | {edge[1]}}
        assert find_cycle(with_edge) is not None, f"{edge} ({why}) closes no cycle any more: remove the entry"


def test_the_cycle_finder_finds_and_names_a_cycle() -> None:
    graph = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 1}, "d": {"a": 2}}
    cycle = find_cycle({module: set(imported) for module, imported in graph.items()})
    assert cycle == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def private_reads(package: Path) -> dict[tuple[str, str], str]:
    """``{(importing module, "module.name"): "file:line"}`` for every underscore name read from another module.

    Counted: ``from .x import _name`` (a name, not a submodule, of another module), ``from .x import _sub`` or
    ``import crewtrain_nb.x._sub`` from outside ``x`` (a package's private module), ``x._name`` where ``x``
    is bound to one of the package's modules, and ``obj._name`` (``obj`` not ``self``/``cls``) where
    ``_name`` is defined by another of the package's modules and not by this one: another class's private
    state. Underscore names of other libraries (``pickle._Unpickler``) are not counted.
    """
    modules = package_modules(package)
    trees = {
        module: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for module, path in modules.items()
    }
    defined = {module: private_attributes(tree) for module, tree in trees.items()}
    reads: dict[tuple[str, str], str] = {}
    for module, path in modules.items():
        where = str(path.relative_to(package.parent))
        imports = imports_in(module, path)
        bound_modules: dict[str, str] = {}
        for found in imports:
            full = found.module if found.name is None else f"{found.module}.{found.name}"
            if found.name is None:  # ``import crewtrain_nb.x`` binds ``crewtrain_nb``; ``... as y`` binds ``y``
                bound_to = full if found.bound != full.split(".")[0] else full.split(".")[0]
            else:
                bound_to = full
            if bound_to in modules:
                bound_modules[found.bound] = bound_to
            if not full.startswith(package.name + "."):
                continue
            parts = full.split(".")
            for depth, part in enumerate(parts[1:], start=1):
                if not part.startswith("_") or part.startswith("__"):
                    continue
                owner = ".".join(parts[:depth])
                if full in modules or ".".join(parts[: depth + 1]) in modules:
                    # A private module: readable from inside the package that holds it.
                    if module == owner or module.startswith(owner + "."):
                        continue
                elif owner == module:
                    continue
                reads.setdefault((module, ".".join(parts[: depth + 1])), f"{where}:{found.line}")
                break
        tree = trees[module]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in bound_modules:
                owner = bound_modules[node.value.id]
                if owner != module:
                    reads.setdefault((module, f"{owner}.{node.attr}"), f"{where}:{node.lineno}")
            elif ast.unparse(node.value) not in {"self", "cls", "super()"} and node.attr not in defined[module]:
                # Another object's private attribute that this module never defines: whose is it?
                owners = sorted(other for other, names in defined.items() if node.attr in names)
                if owners:
                    owner = owners[0] if len(owners) == 1 else "{" + ", ".join(owners) + "}"
                    reads.setdefault((module, f"{owner}.{node.attr}"), f"{where}:{node.lineno}")
    return reads


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_attributes(tree: ast.AST) -> set[str]:
    """The underscore names a module defines: functions, classes, attributes set on any object, assignments."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries, setattr(obj, "_name", ...)
    return {name for name in names if is_private(name)}


def test_no_module_reads_another_modules_underscore_names() -> None:
    reads = private_reads(PACKAGE)
    stale = {read: why for read, why in KNOWN_PRIVATE_READS.items() if read not in reads}
    assert not stale, f"on KNOWN_PRIVATE_READS but no longer read: remove {stale}"
    unexplained = {read: line for read, line in reads.items() if read not in KNOWN_PRIVATE_READS}
    assert not unexplained, "modules read other modules' underscore names:\n" + "\n".join(
        f"  {line}: {importer} reads {name}" for (importer, name), line in sorted(unexplained.items(), key=str)
    )


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "pkg"


def test_the_checks_find_cycles_and_private_reads_in_a_package(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "from .b import f\n",
            "b.py": "class Box:\n    def __init__(self):\n        self._state = 1\n\n\ndef f():\n    from . import c\n",
            "c.py": "from .b import _helper\n",  # a private name, and the import closes b -> c -> b
            "d.py": "from . import b\n\nb._helper()\n",
            "e.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .f import Thing\n",
            "f.py": "from . import e\n",  # only a type checker's import goes back: no cycle
            "g.py": "from .sub._impl import thing\nimport pkg.sub._impl as impl\n",
            "h.py": "def state(box):\n    return box._state\n",
            "sub/__init__.py": "from ._impl import thing\n",
            "sub/_impl.py": "thing = 1\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.b"] == {"pkg.c": 7} and graph["pkg.e"] == {}
    assert import_graph(package, with_type_checking=True)["pkg.e"] == {"pkg.f": 4}
    cycle = find_cycle({module: set(imported) for module, imported in graph.items()})
    assert cycle == ["pkg.b", "pkg.c", "pkg.b"]
    assert describe_cycle(cycle, graph, package) == (
        "import cycle:\n  pkg.b imports pkg.c (pkg/b.py:7)\n  pkg.c imports pkg.b (pkg/c.py:1)"
    )
    assert private_reads(package) == {
        ("pkg.c", "pkg.b._helper"): "pkg/c.py:1",
        ("pkg.d", "pkg.b._helper"): "pkg/d.py:3",
        ("pkg.g", "pkg.sub._impl"): "pkg/g.py:1",
        ("pkg.h", "pkg.b._state"): "pkg/h.py:2",
    }
