"""Model-based test: a hypothesis state machine drives real handlers on a real file against a plain dict.

Rules: ``append``, ``save_trained_data``, ``save``, ``clear``, ``batch()``
blocks that succeed or raise inside, reopening a handler, and a second handler
on the same file; CrewAI's own pattern (``load()``, change one agent's entry,
``save(the whole dict)``) and appends of big records, so that on a pickle store
tails are written, chained and compacted. The pickle model also lets CrewAI
rewrite the file in place and leaves uncommitted tails as a crashed writer
would. After every step each handler's ``load()`` equals the model — with the
same types and order, not only ``==`` — and so does plain ``pickle.load`` of the file.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.reliability_lib import STORE_BACKENDS, make_store, store_file

AGENTS = st.sampled_from(["agent-a", "agent-b", "agent-c"])
ROLES = st.sampled_from(["Writer", "Critic"])
ITERATIONS = st.integers(0, 4)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=5))
RECORDS = st.dictionaries(st.sampled_from(["initial_output", "human_feedback", "loss", "weights"]), LEAVES, max_size=3)
WHOLE_STORES = st.dictionaries(AGENTS, st.dictionaries(ITERATIONS, RECORDS, max_size=2), max_size=2)
HANDLER = st.sampled_from([0, 1])


def typed(value: Any) -> Any:
    """``value`` spelled out with its types and order, so ``1``, ``1.0`` and ``True`` (or reordered keys) differ."""
    if type(value) is dict:
        return ("dict", [(typed(key), typed(item)) for key, item in value.items()])
    if type(value) in (list, tuple):
        return (type(value).__name__, [typed(item) for item in value])
    return (type(value).__name__, repr(value))


class BlockFailed(Exception):
    """Raised inside a ``batch()`` block on purpose."""


class StoreModel(RuleBasedStateMachine):
    backend = "pickle"

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="crewtrain-model-"))
        self.path = store_file(self.backend, self.directory, "training_data")
        self.handlers = [make_store(self.backend, self.path), make_store(self.backend, self.path)]
        self.model: dict[Any, Any] = {}

    def teardown(self) -> None:
        for handler in self.handlers:
            handler.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(which=HANDLER, iteration=ITERATIONS, agent=AGENTS, record=RECORDS)
    def append(self, which: int, iteration: int, agent: str, record: dict[str, Any]) -> None:
        self.handlers[which].append(iteration, agent, record)
        self.model.setdefault(agent, {})[iteration] = copy.deepcopy(record)
        record["mutated after append"] = True  # must not reach the store

    @rule(which=HANDLER, role=ROLES, value=RECORDS)
    def save_trained_data(self, which: int, role: str, value: dict[str, Any]) -> None:
        self.handlers[which].save_trained_data(role, value)
        self.model[role] = copy.deepcopy(value)

    @rule(which=HANDLER, data=WHOLE_STORES)
    def save(self, which: int, data: dict[Any, Any]) -> None:
        self.handlers[which].save(data)
        self.model = copy.deepcopy(data)

    @rule(which=HANDLER)
    def clear(self, which: int) -> None:
        self.handlers[which].clear()
        self.model = {}

    @rule(
        which=HANDLER,
        appends=st.lists(st.tuples(ITERATIONS, AGENTS, RECORDS), max_size=4),
        role=st.none() | ROLES,
        fail=st.booleans(),
    )
    def batch(self, which: int, appends: list[tuple[int, str, dict[str, Any]]], role: str | None, fail: bool) -> None:
        handler = self.handlers[which]
        expected = copy.deepcopy(self.model)
        try:
            with handler.batch():
                for iteration, agent, record in appends:
                    handler.append(iteration, agent, record)
                    expected.setdefault(agent, {})[iteration] = copy.deepcopy(record)
                if role is not None:
                    handler.save_trained_data(role, {"quality": 5.0})
                    expected[role] = {"quality": 5.0}
                assert handler.load() == expected  # the block sees its own pending writes
                if fail:
                    raise BlockFailed
        except BlockFailed:
            return  # nothing was written: the model stays as it was
        self.model = expected

    @rule(which=HANDLER, agent=AGENTS, iteration=ITERATIONS, record=RECORDS, replace=st.booleans())
    def crewai_pattern(self, which: int, agent: str, iteration: int, record: dict[str, Any], replace: bool) -> None:
        """CrewAI 1.x's training step: load(), change one agent's entry, save(the whole dict)."""
        handler = self.handlers[which]
        data = handler.load()
        entry = data.get(agent)
        if replace or not isinstance(entry, dict):
            data[agent] = {iteration: record}
        else:
            entry[iteration] = record
        handler.save(data)
        self.model = copy.deepcopy(data)
        record["mutated after save"] = True  # must not reach the store

    @rule(which=HANDLER, agent=AGENTS, iteration=st.integers(5, 40), size=st.integers(100, 3000))
    def append_big(self, which: int, agent: str, iteration: int, size: int) -> None:
        """A record big enough that tails soon outgrow the compacted file (the compaction rule then rewrites it)."""
        record = {"initial_output": "z" * size, "loss": float(size)}
        self.handlers[which].append(iteration, agent, record)
        self.model.setdefault(agent, {})[iteration] = record

    @rule(which=HANDLER)
    def reopen(self, which: int) -> None:
        self.handlers[which].close()
        self.handlers[which] = make_store(self.backend, self.path)

    @rule(which=HANDLER)
    def mutate_a_loaded_copy(self, which: int) -> None:
        loaded = self.handlers[which].load()
        loaded["intruder"] = {0: {}}
        for value in loaded.values():
            if isinstance(value, dict):
                value.clear()

    @invariant()
    def every_handler_loads_the_model(self) -> None:
        for handler in self.handlers:
            assert typed(handler.load()) == typed(self.model)

    @invariant()
    def the_file_is_a_plain_pickle_of_the_model(self) -> None:
        if self.path.exists():
            with open(self.path, "rb") as file:
                assert typed(pickle.load(file)) == typed(self.model)
        else:
            assert self.model == {}


class PickleStoreModel(StoreModel):
    """The rules, plus what only a pickle file meets: CrewAI writing it in place, and a crashed tail writer."""

    @rule()
    def crewai_writes_in_place(self) -> None:
        """CrewAI's handler appends the way it does: pickle.load, change, pickle.dump over the same file."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as file:
            data = pickle.load(file)
        entry = data.get("agent-crewai")
        data["agent-crewai"] = {**(entry if isinstance(entry, dict) else {}), len(data): {"initial_output": "crewai"}}
        with open(self.path, "r+b") as file:  # same inode, as CrewAI's open(path, "wb")
            file.truncate(0)
            pickle.dump(data, file)
        self.model = copy.deepcopy(data)

    @rule(junk=st.binary(max_size=40))
    def a_writer_dies_between_tail_and_commit(self, junk: bytes) -> None:
        """What a writer killed after writing its tail, before the commit byte, leaves: ignored, then overwritten."""
        if self.path.exists():
            with open(self.path, "ab") as file:
                file.write(b"1" + junk)


class SQLiteStoreModel(StoreModel):
    """The same rules on a SQLite store, checked against SQLite itself instead of ``pickle.load``."""

    backend = "sqlite"

    @invariant()
    def the_file_is_a_plain_pickle_of_the_model(self) -> None:
        """Replaced: the database, read with ``sqlite3`` alone, holds the model's records and agents."""
        if not self.path.exists():
            assert self.model == {}
            return
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            if not conn.execute("SELECT name FROM sqlite_master WHERE name = 'agents'").fetchall():
                assert self.model == {}  # created by a batch() that raised before any table was made
                return
            agents = [name for (name,) in conn.execute("SELECT name FROM agents ORDER BY position")]
            rows = conn.execute(
                "SELECT a.name, r.iteration, r.record FROM records r JOIN agents a ON a.position = r.agent "
                "ORDER BY a.position, r.id"
            ).fetchall()
        assert agents == list(self.model)
        expected = [
            (agent, iteration, record)
            for agent, entry in self.model.items()
            if agent.startswith("agent-")
            for iteration, record in entry.items()
        ]
        assert [(agent, iteration, pickle.loads(blob)) for agent, iteration, blob in rows] == expected


PickleStoreModel.TestCase.settings = settings(
    max_examples=600, stateful_step_count=30, deadline=None, derandomize=True, database=None
)
# Each SQLite write is an fsynced commit: fewer runs keep the test's time near the pickle one's.
SQLiteStoreModel.TestCase.settings = settings(
    max_examples=300, stateful_step_count=30, deadline=None, derandomize=True, database=None
)
#: One model per backend, by name (the report script counts their runs).
MODELS = {"pickle": PickleStoreModel, "sqlite": SQLiteStoreModel}
assert set(MODELS) == set(STORE_BACKENDS), "add a StoreModel subclass per backend (backend = name)"
assert all(model.backend == name for name, model in MODELS.items())
TestStoreModel = PickleStoreModel.TestCase
TestSQLiteStoreModel = SQLiteStoreModel.TestCase
