"""The store contract (``store/_contract.py``): both backends implement it as siblings.

``CrewTrainingHandler(name)`` picks the backend by suffix; ``isinstance`` with CrewAI's class names holds for
both; the capability flags and the public attributes say what a backend does; the change token tells a cache
when to re-read.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import crewtrain_nb
from crewtrain_nb import CrewTrainingHandler, PickleHandler, SQLiteHandler
from crewtrain_nb.demo import make_trained_agents_data, make_training_data
from crewtrain_nb.store import TrainingStore, open_view

SUFFIXES = {"pickle": ".pkl", "sqlite": ".db"}

#: What each backend declares: (supports_lazy_reads, supports_versions, supports_audit, supports_any_object).
CAPABILITIES = {"pickle": (False, True, True, True), "sqlite": (True, False, False, False)}


@pytest.fixture(params=sorted(SUFFIXES))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(tmp_path: Path, backend: str) -> Any:
    handler = CrewTrainingHandler(tmp_path / f"store{SUFFIXES[backend]}")
    handler.save(make_training_data(agents=2, iterations=3, seed=3))
    yield handler
    handler.close()


# -- which class, and isinstance ---------------------------------------------------------------


@pytest.mark.parametrize(
    "constructor", [CrewTrainingHandler, PickleHandler], ids=["CrewTrainingHandler", "PickleHandler"]
)
def test_the_crewai_names_pick_the_backend_by_suffix(tmp_path: Path, backend: str, constructor: type) -> None:
    handler = constructor(tmp_path / f"store{SUFFIXES[backend]}")
    expected = SQLiteHandler if backend == "sqlite" else constructor
    assert type(handler) is expected
    handler.close()


@pytest.mark.parametrize("name", ["runs.db", "runs.sqlite", "runs.SQLITE3", "runs.pkl", "runs.pkl.gz", "runs"])
def test_every_backend_is_an_instance_of_crewais_class_names_and_of_the_contract(tmp_path: Path, name: str) -> None:
    handler = CrewTrainingHandler(tmp_path / name)
    assert isinstance(handler, CrewTrainingHandler)
    assert isinstance(handler, PickleHandler)
    assert isinstance(handler, TrainingStore)
    assert issubclass(type(handler), CrewTrainingHandler)
    handler.close()
    # PickleHandler(name) is CrewAI's base class: a pickle store gets it, a SQLite store the same SQLite handler.
    plain = PickleHandler(tmp_path / name)
    assert isinstance(plain, PickleHandler) and isinstance(plain, TrainingStore)
    assert isinstance(plain, CrewTrainingHandler) == (type(plain) is SQLiteHandler)
    plain.close()


def test_a_sqlite_handler_made_directly_counts_as_crewais_classes_too(tmp_path: Path) -> None:
    handler = SQLiteHandler(tmp_path / "runs.db")
    assert isinstance(handler, CrewTrainingHandler) and isinstance(handler, PickleHandler)
    assert issubclass(SQLiteHandler, PickleHandler) and issubclass(SQLiteHandler, TrainingStore)
    handler.close()


def test_sqlite_is_a_sibling_that_inherits_nothing_of_the_pickle_handler(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "runs.db")
    assert PickleHandler not in type(handler).__mro__
    assert CrewTrainingHandler not in type(handler).__mro__
    assert TrainingStore in type(handler).__mro__
    # None of the pickle file mechanics reach it (they belong to the pickle handler's component).
    for internal in ("_file", "_mutate", "_describing", "_pending", "_expect_dict"):
        assert not hasattr(handler, internal), internal
    handler.close()


def test_the_pickle_file_mechanics_are_a_component_the_handler_holds_not_a_base(tmp_path: Path) -> None:
    from crewtrain_nb.store._pickle_file import PickleFile

    handler = CrewTrainingHandler(tmp_path / "runs.pkl")
    assert isinstance(handler._file, PickleFile)
    assert PickleFile not in type(handler).__mro__
    assert handler.lock_path == handler._file.lock_path


def test_the_contract_is_abstract_and_both_backends_implement_all_of_it() -> None:
    with pytest.raises(TypeError, match="abstract"):
        TrainingStore()  # type: ignore[abstract]
    assert not PickleHandler.__abstractmethods__
    assert not CrewTrainingHandler.__abstractmethods__
    assert not SQLiteHandler.__abstractmethods__

    class Partial(TrainingStore):  # a new backend that forgot its capability flags and most methods
        pass

    with pytest.raises(TypeError, match="supports_lazy_reads"):
        Partial()  # type: ignore[abstract]


def test_the_contract_is_exported_from_the_store_package() -> None:
    assert "TrainingStore" in crewtrain_nb.store.__all__


# -- capabilities and public attributes ----------------------------------------------------------


def test_each_backend_declares_its_capabilities(store: Any, backend: str) -> None:
    flags = (store.supports_lazy_reads, store.supports_versions, store.supports_audit, store.supports_any_object)
    assert flags == CAPABILITIES[backend]
    assert all(type(flag) is bool for flag in flags)
    # Constant per backend: the class says the same as the instance.
    cls = type(store)
    assert (cls.supports_lazy_reads, cls.supports_versions, cls.supports_audit, cls.supports_any_object) == flags


def test_the_capabilities_say_what_the_backend_does(store: Any, backend: str, tmp_path: Path) -> None:
    from crewtrain_nb import StoreError, StoreFormatError

    if store.supports_versions:
        assert store.versions() == []
    else:
        with pytest.raises(StoreError, match="no versions"):
            store.versions()
    if store.supports_any_object:
        store.save([1, 2, 3])
        assert store.load() == [1, 2, 3]
    else:
        with pytest.raises(StoreFormatError, match="dict of agents"):
            store.save([1, 2, 3])
    options: dict[str, Any] = {"audit": True}
    if store.supports_audit:
        CrewTrainingHandler(tmp_path / f"audited{SUFFIXES[backend]}", **options).append(0, "a", {})
        assert (tmp_path / f"audited{SUFFIXES[backend]}.audit.jsonl").exists()
    else:
        with pytest.raises(ValueError, match="audit"):
            CrewTrainingHandler(tmp_path / f"audited{SUFFIXES[backend]}", **options)


def test_every_backend_has_the_public_attributes_of_the_contract(store: Any, backend: str) -> None:
    assert store.file_path.endswith(SUFFIXES[backend])
    assert store.trusted is False
    assert store.lock_timeout == crewtrain_nb.store.DEFAULT_LOCK_TIMEOUT
    assert store.allowed_classes == ()
    assert isinstance(store.read_retry_timeout, float)
    assert store.backups == 0
    assert store.audit is False
    if backend == "pickle":
        assert store.lock_path == store.file_path + ".lock"
    else:  # SQLite locks the database itself
        assert store.lock_path is None


def test_companion_paths_are_the_lock_file_or_sqlites_log_files(store: Any, backend: str) -> None:
    companions = store.companion_paths()
    expected = (
        [store.file_path + ".lock"] if backend == "pickle" else [store.file_path + "-wal", store.file_path + "-shm"]
    )
    assert companions == expected
    store.append(9, "agent-x", {"loss": 0.1})
    assert all(Path(path).exists() for path in companions)  # SQLite's exist while its connection is open


def test_an_empty_store_handler_is_still_true(tmp_path: Path, backend: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"empty{SUFFIXES[backend]}")
    assert len(handler) == 0
    assert bool(handler) is True
    with handler as entered:
        assert entered is handler


# -- the change token ---------------------------------------------------------------------------------------


def _trained_entry() -> Any:
    """One trained agent's entry, as CrewAI writes it to trained_agents_data.pkl."""
    return next(iter(make_trained_agents_data(seed=1).values()))


#: Every write of the CrewAI API, each a change a cache must see.
WRITES: list[tuple[str, Callable[[Any], None]]] = [
    ("append", lambda store: store.append(7, "agent-new", {"loss": 0.25})),
    ("append the same again", lambda store: store.append(7, "agent-new", {"loss": 0.25})),
    ("replace a record", lambda store: store.append(7, "agent-new", {"loss": 0.5})),
    ("save_trained_data", lambda store: store.save_trained_data("Writer", _trained_entry())),
    ("save", lambda store: store.save(make_training_data(agents=1, iterations=2, seed=9))),
    ("initialize_file", lambda store: store.initialize_file()),
    ("initialize_file again", lambda store: store.initialize_file()),
    ("clear", lambda store: store.clear()),
]

#: Every read; none may change the token.
READS: list[Callable[[Any], object]] = [
    lambda store: store.load(),
    lambda store: store.peek(),
    lambda store: store.exists(),
    lambda store: store.agents(),
    lambda store: [store.iterations(agent) for agent in store.agents()],
    lambda store: [store.entry(agent) for agent in store.agents()],
    lambda store: [store.get(agent, store.iterations(agent)[0]) for agent in store.agents()],
    lambda store: list(store.records()),
    lambda store: len(store),
    lambda store: store.stats(),
    lambda store: open_view(store),
]


def test_the_change_token_changes_at_every_write(store: Any) -> None:
    seen = [store.change_token()]
    for name, write in WRITES:
        write(store)
        token = store.change_token()
        assert token not in seen, name
        seen.append(token)


def test_reads_never_change_the_token(store: Any) -> None:
    before = store.change_token()
    for read in READS:
        read(store)
        assert store.change_token() == before
    # The same from a second handler of the file: a reader changes nothing for anyone.
    other = CrewTrainingHandler(store.file_path)
    for read in READS:
        read(other)
    assert store.change_token() == before
    other.close()


def test_the_change_token_changes_at_every_write_inside_a_batch(store: Any) -> None:
    seen = [store.change_token()]
    with store.batch():
        for iteration in range(3):
            store.append(100 + iteration, "agent-batch", {"step": iteration})
            token = store.change_token()
            assert token not in seen
            seen.append(token)
    assert store.change_token() not in seen[:-1]


def test_the_change_token_sees_another_processs_write(store: Any) -> None:
    store.load()
    before = store.change_token()
    assert store.change_token() == before
    script = (
        "import sys; from crewtrain_nb import CrewTrainingHandler; "
        "CrewTrainingHandler(sys.argv[1]).append(0, 'from-another-process', {'loss': 1.0})"
    )
    subprocess.run([sys.executable, "-c", script, store.file_path], check=True, timeout=120)
    assert store.change_token() != before
    assert "from-another-process" in store.agents()


# -- no cycle, no private names across the store's modules -------------------------------------------------

STORE = Path(crewtrain_nb.__file__).parent / "store"


def _store_imports() -> dict[str, set[tuple[str, str]]]:
    """module -> {(imported store module, name)} for every ``from .x import name`` in the store (any depth)."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(STORE.glob("*.py")):
        module = path.stem
        edges = found.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module is None:  # from . import x
                    edges.update((alias.name, "") for alias in node.names)
                else:
                    edges.update((node.module, alias.name) for alias in node.names)
    return found


def test_the_store_modules_import_each_other_without_a_cycle() -> None:
    graph = {module: {target for target, _ in edges} for module, edges in _store_imports().items()}
    assert "handler" not in graph["_sqlite"] and "handler" not in graph["_lazy"]
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " -> ".join([*visiting[visiting.index(module) :], module])
        visiting.append(module)
        for target in sorted(graph.get(module, ())):
            visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_store_module_imports_another_modules_underscore_names() -> None:
    private = sorted(
        f"{module} imports {name} from {target}"
        for module, edges in _store_imports().items()
        for target, name in edges
        if name.startswith("_")
    )
    assert private == []
