"""The lazy read API (store/_lazy.py) on both backends: agents, iterations, get, entry, records, stats."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import (
    CrewTrainingHandler,
    PickleHandler,
    StoreFormatError,
)

from .test_store import crewai_dump


@pytest.fixture(params=["pkl", "db"])
def mixed_store(request: pytest.FixtureRequest, tmp_path: Path, training_data: dict[str, Any]) -> CrewTrainingHandler:
    """Training records of three agents plus one trained-agent entry, on each backend."""
    handler = CrewTrainingHandler(tmp_path / f"mixed.{request.param}")
    handler.save(training_data)
    handler.save_trained_data("Writer", {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"})
    handler.append(20, "late", {"loss": 1.0})
    handler.append(3, "late", {"loss": 0.5})
    return handler


def test_lazy_reads_agree_with_load(mixed_store: CrewTrainingHandler) -> None:
    data = mixed_store.load()
    assert mixed_store.agents() == list(data)
    record_agents = [agent for agent in data if agent != "Writer"]
    for agent in record_agents:
        assert mixed_store.iterations(agent) == list(data[agent])  # stored order
        assert mixed_store.entry(agent) == data[agent]
        for iteration, record in data[agent].items():
            assert mixed_store.get(agent, iteration) == record
    assert mixed_store.iterations("late") == [20, 3]
    assert mixed_store.entry("Writer") == data["Writer"]
    expected = [(agent, iteration, record) for agent in record_agents for iteration, record in data[agent].items()]
    assert list(mixed_store.records()) == expected
    assert list(mixed_store.records("late")) == [("late", 20, {"loss": 1.0}), ("late", 3, {"loss": 0.5})]
    assert len(mixed_store) == len(expected) == 3 * 13 + 2
    assert bool(mixed_store) and bool(CrewTrainingHandler(Path(mixed_store.file_path).with_name("none.pkl")))


def test_lazy_reads_return_copies(mixed_store: CrewTrainingHandler) -> None:
    agent = mixed_store.agents()[0]
    record = mixed_store.get(agent, 0)
    record["initial_output"] = "changed"
    mixed_store.entry(agent)[0]["initial_output"] = "changed"
    next(mixed_store.records(agent))[2]["initial_output"] = "changed"
    assert mixed_store.get(agent, 0)["initial_output"] != "changed"
    assert mixed_store.load()[agent][0]["initial_output"] != "changed"


def test_unknown_agent_or_iteration_is_a_key_error_listing_what_exists(mixed_store: CrewTrainingHandler) -> None:
    with pytest.raises(KeyError, match=r"no agent 'nobody' in .*; its agents are '.*', 'Writer', 'late'") as caught:
        mixed_store.get("nobody", 0)
    assert mixed_store.file_path in str(caught.value)
    with pytest.raises(KeyError, match=r"agent 'late' has no iteration 4; it has 20, 3"):
        mixed_store.get("late", 4)
    with pytest.raises(KeyError, match="no agent 'nobody'"):
        mixed_store.iterations("nobody")
    with pytest.raises(KeyError, match="no agent 'nobody'"):
        mixed_store.entry("nobody")
    with pytest.raises(StoreFormatError, match="'Writer' holds .* not a dict of iterations.*entry"):
        mixed_store.iterations("Writer")
    with pytest.raises(StoreFormatError, match="not a dict of iterations"):
        mixed_store.get("Writer", 0)


def test_long_lists_in_key_errors_are_truncated(tmp_path: Path) -> None:
    for suffix in ("pkl", "db"):
        handler = CrewTrainingHandler(tmp_path / f"many.{suffix}")
        with handler.batch():
            for iteration in range(50):
                handler.append(iteration, f"agent-{iteration:02}", {})
                handler.append(iteration, "agent-00", {})
        listed = r"its agents are 'agent-00', .* 'agent-09', \.\.\. \(50 in all\)$"
        with pytest.raises(KeyError, match=listed) as caught:
            handler.get("x", 0)
        assert "agent-10" not in str(caught.value)
        with pytest.raises(KeyError, match=r"it has 0, 1, .*, 9, \.\.\. \(50 in all\)"):
            handler.get("agent-00", 99)


@pytest.mark.parametrize("suffix", ["pkl", "db"])
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda h: h.get("a", True), TypeError, "iteration must be an int, got bool"),
        (lambda h: h.get("a", 1.0), TypeError, "iteration must be an int, got float"),
        (lambda h: h.get(5, 0), TypeError, "agent_id must be a str"),
        (lambda h: h.iterations(None), TypeError, "agent_id must be a str"),
        (lambda h: h.entry(""), ValueError, "agent_id must be a non-empty str"),
        (lambda h: list(h.records(3)), TypeError, "agent_id must be a str"),
    ],
)

def test_lazy_reads_check_arguments(tmp_path: Path, suffix: str, call: Any, error: type, match: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t.{suffix}")
    handler.append(0, "a", {})
    with pytest.raises(error, match=match):
        call(handler)


def test_stats_counts_records_agents_bytes_and_last_change(mixed_store: CrewTrainingHandler) -> None:
    import datetime as dt

    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    stats = mixed_store.stats()
    assert (stats.records, stats.agents) == (3 * 13 + 2, 5)
    assert stats.bytes >= os.path.getsize(mixed_store.file_path) > 0
    assert stats.changed is not None and stats.changed.tzinfo is dt.timezone.utc and stats.changed >= before
    with pytest.raises(AttributeError):
        stats.records = 0  # type: ignore[misc]  # frozen
    mixed_store.append(99, "late", {"loss": 0.1})
    assert mixed_store.stats().records == stats.records + 1


def test_lazy_reads_of_a_non_dict_pickle_say_so(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    crewai_dump(path, [1, 2])
    handler = PickleHandler(path)
    with pytest.raises(StoreFormatError, match="holds a list, not a dict of agents"):
        handler.agents()
    assert handler.stats().records == 0
