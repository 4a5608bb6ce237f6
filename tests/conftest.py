"""Shared fixtures: stores are built by the seeded generators in ``crewtrain_nb.demo``."""

from __future__ import annotations

import os
import pickle
from fractions import Fraction

# Headless everywhere; plots never need a display.
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path  # noqa: E402
from typing import Any

import pytest

from crewtrain_nb import CrewTrainingHandler
from crewtrain_nb.demo import make_metrics_data, make_trained_agents_data, make_training_data, make_training_data_086


@pytest.fixture
def training_data() -> dict[str, Any]:
    """A CrewAI ``training_data.pkl``-shaped dict, some records without ``improved_output``."""
    return make_training_data(agents=3, iterations=13, seed=7)


@pytest.fixture
def trained_data() -> dict[str, Any]:
    """A CrewAI ``trained_agents_data.pkl``-shaped dict."""
    return make_trained_agents_data(seed=7)


@pytest.fixture
def metrics_data() -> dict[str, Any]:
    """An ML-style store with nested metrics and weight lists."""
    return make_metrics_data(iterations=25, seed=7)


@pytest.fixture
def training_store(tmp_path: Path, training_data: dict[str, Any]) -> CrewTrainingHandler:
    """``training_data.pkl`` on disk, written by our handler."""
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl")
    handler.save(training_data)
    return handler


@pytest.fixture
def metrics_store(tmp_path: Path, metrics_data: dict[str, Any]) -> CrewTrainingHandler:
    """``metrics.pkl`` on disk, logged with ``append`` the way users do."""
    handler = CrewTrainingHandler(tmp_path / "metrics.pkl")
    with handler.batch():
        for agent, records in metrics_data.items():
            for iteration, record in records.items():
                handler.append(iteration, agent, record)
    return handler


#: Agent ids in the order a store file holds them: not sorted, so a view that sorts shows it.
STORE_ORDER = ("zeta", "alpha", "mid")


@pytest.fixture
def store_order() -> tuple[str, ...]:
    """The agent order of the ``unsorted_*`` stores' files."""
    return STORE_ORDER


def _append_all(handler: CrewTrainingHandler, data: dict[str, Any]) -> CrewTrainingHandler:
    with handler.batch():
        for agent, records in data.items():
            for iteration, record in records.items():
                handler.append(iteration, agent, record)
    return handler


@pytest.fixture(params=["pkl", "db"])
def unsorted_training_store(request: pytest.FixtureRequest, tmp_path: Path) -> CrewTrainingHandler:
    """CrewAI training records of agents ``zeta``, ``alpha``, ``mid`` (in that order), as pickle and SQLite."""
    entries = make_training_data(agents=len(STORE_ORDER), iterations=5, seed=3).values()
    data = dict(zip(STORE_ORDER, entries, strict=True))
    return _append_all(CrewTrainingHandler(tmp_path / f"training_data.{request.param}"), data)


@pytest.fixture(params=["pkl", "db"])
def unsorted_metrics_store(request: pytest.FixtureRequest, tmp_path: Path) -> CrewTrainingHandler:
    """Metric logs of agents ``zeta``, ``alpha``, ``mid`` (in that order), as pickle and SQLite."""
    data = make_metrics_data(agents=STORE_ORDER, iterations=6, weights=2, seed=3)
    return _append_all(CrewTrainingHandler(tmp_path / f"metrics.{request.param}"), data)


@pytest.fixture
def sqlite_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make reading a whole SQLite store fail the test; return the agents read one by one (``entry``)."""
    from crewtrain_nb import SQLiteHandler

    read: list[str] = []
    real_entry = SQLiteHandler.entry

    def whole_store(self: Any) -> Any:
        raise AssertionError("the whole store was read")

    monkeypatch.setattr(SQLiteHandler, "peek", whole_store)
    monkeypatch.setattr(SQLiteHandler, "load", whole_store)
    monkeypatch.setattr(SQLiteHandler, "entry", lambda self, agent: read.append(agent) or real_entry(self, agent))
    return read


@pytest.fixture
def training_data_086() -> dict[str, Any]:
    """CrewAI 0.86 records: ``agent`` and ``agent_role`` in each, no ``improved_output``, some feedback ``""``."""
    return make_training_data_086(iterations=5, seed=7, empty_feedback=0.2)


@pytest.fixture
def training_store_086(tmp_path: Path, training_data_086: dict[str, Any]) -> CrewTrainingHandler:
    """The 0.86 file on disk, written the way CrewAI 0.86 does: ``{}`` at start, then one append per answer.

    Each iteration runs the crew once, its tasks in order: iterations outside, agents inside.
    """
    folder = tmp_path / "crewai-0.86"
    folder.mkdir()
    handler = CrewTrainingHandler(folder / "training_data.pkl")
    handler.initialize_file()
    for iteration in range(max(len(records) for records in training_data_086.values())):
        for agent, records in training_data_086.items():
            handler.append(iteration, agent, records[iteration])
    return handler


#: The roles :func:`crewai_086_data` gives its three agents: one unique role, one that names two agents.
CREWAI_086_ROLES = ("Researcher", "Writer", "Writer")


@pytest.fixture
def crewai_086_data(training_data: dict[str, Any]) -> dict[str, Any]:
    """``training_data`` as CrewAI 0.86 writes it: every record carries ``agent`` (the id) and ``agent_role``."""
    return {
        agent: {i: {**record, "agent": agent, "agent_role": role} for i, record in training_data[agent].items()}
        for agent, role in zip(training_data, CREWAI_086_ROLES, strict=True)
    }


@pytest.fixture
def beyond_int64_stores(tmp_path: Path, training_data: dict[str, Any], metrics_data: dict[str, Any]) -> dict[str, Path]:
    """A training and a metrics file as a foreign writer leaves them (plain ``pickle``), each with one
    iteration key no int64 holds (``append`` refuses such keys): ``{"training": path, "metrics": path}``."""
    paths = {}
    for name, data in (("training", training_data), ("metrics", metrics_data)):
        agent = next(iter(data))
        grown = {**data, agent: {**data[agent], 10**30: next(iter(data[agent].values()))}}
        paths[name] = tmp_path / f"{name}_beyond_int64.pkl"
        with open(paths[name], "wb") as file:
            pickle.dump(grown, file, protocol=4)
    return paths


@pytest.fixture
def untrusted_stores(
    tmp_path: Path, training_data: dict[str, Any], metrics_data: dict[str, Any], trained_data: dict[str, Any]
) -> dict[str, Path]:
    """Training, metrics and trained-agents files holding a ``fractions.Fraction``: safe loading refuses
    them, ``trusted=True`` reads them. ``{"training": path, "metrics": path, "trained": path}``."""
    stores = {
        "training": {
            agent: {i: {**record, "score": Fraction(i, 3)} for i, record in records.items()}
            for agent, records in training_data.items()
        },
        "metrics": {
            agent: {i: {**record, "loss": Fraction(1, i + 1)} for i, record in records.items()}
            for agent, records in metrics_data.items()
        },
        "trained": {role: {**entry, "quality": Fraction(15, 2)} for role, entry in trained_data.items()},
    }
    paths = {}
    for name, data in stores.items():
        paths[name] = tmp_path / f"untrusted_{name}.pkl"
        CrewTrainingHandler(paths[name]).save(data)
    return paths
