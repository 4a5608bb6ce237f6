"""The demo generators: seeded, deterministic, and shaped as CrewAI writes its files."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from crewtrain_nb.crewai import FEEDBACK_KEYS, is_trained_entry
from crewtrain_nb.demo import CREWAI_SCENARIOS, make_crewai_run, write_crewai_run


@pytest.mark.parametrize("scenario", CREWAI_SCENARIOS)
def test_crewai_runs_are_deterministic_and_seeded(scenario: str) -> None:
    assert make_crewai_run(scenario, seed=4) == make_crewai_run(scenario, seed=4)
    if scenario != "failed":
        assert make_crewai_run(scenario, seed=4) != make_crewai_run(scenario, seed=5)
    # The same in a fresh interpreter (no dependence on hash randomisation).
    code = f"from crewtrain_nb.demo import make_crewai_run; print(repr(make_crewai_run({scenario!r}, seed=4)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == repr(make_crewai_run(scenario, seed=4))


@pytest.mark.parametrize("scenario", CREWAI_SCENARIOS)
def test_crewai_runs_have_crewais_shapes(scenario: str) -> None:
    run = make_crewai_run(scenario, iterations=4)
    for agent, records in run["training"].items():
        assert len(agent) == 36 and agent.count("-") == 4  # str(uuid4)
        assert list(records) == [0, 1, 2, 3]  # iterations ascending
        for record in records.values():
            extra = {"agent", "agent_role"} if scenario == "crewai_086" else set()
            assert set(record) <= {*FEEDBACK_KEYS, *extra} and set(record) >= {"initial_output", "human_feedback"}
            assert all(isinstance(value, str) for value in record.values())
    for role, entry in run["trained"].items():
        assert is_trained_entry(entry) and set(entry) == {"suggestions", "quality", "final_summary"}
        assert type(entry["quality"]) is float and 0 <= entry["quality"] <= 10
        assert isinstance(role, str) and all(isinstance(s, str) for s in entry["suggestions"])
    # The trained file never holds more roles than the crew has, except a stale file's extra one.
    roles = {info["role"] for info in run["agents"].values()}
    assert set(run["trained"]) - roles == ({"Data Analyst"} if scenario == "stale_trained" else set())
    assert list(run["agents"]) == list(run["training"])


def test_written_files_are_plain_pickles(tmp_path: Path) -> None:
    for scenario in CREWAI_SCENARIOS:
        paths = write_crewai_run(tmp_path / scenario, scenario)
        run = make_crewai_run(scenario)
        for kind, path in paths.items():
            payload = path.read_bytes()
            assert payload[:2] == b"\x80\x04"  # protocol 4, as CrewAI writes
            assert pickle.loads(payload) == run[kind]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="scenario must be one of 'paraphrased'"):
        make_crewai_run("nope")
    with pytest.raises(ValueError, match="iterations must be an int from 1 to 4"):
        make_crewai_run(iterations=5)
