"""check_training: every finding code where CrewAI's shapes call for it, and nowhere else."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import CrewTrainingHandler, Finding, check_training, write_sidecar
from crewtrain_nb.crewai import FINDING_CODES
from crewtrain_nb.demo import CREWAI_SCENARIOS, make_crewai_run, write_crewai_run
from crewtrain_nb.errors import StoreFormatError


def ids(run: dict[str, Any]) -> list[str]:
    return list(run["training"])


def expected(scenario: str, run: dict[str, Any]) -> set[tuple[str, str | None, int | None]]:
    """What each scenario's files must produce: (code, agent, iteration)."""
    a = ids(run)
    if scenario == "paraphrased":
        return set()
    if scenario == "repeated_correction":
        return {("repeated_feedback", a[1], 1), ("repeated_feedback", a[1], 2)} | {
            ("unchanged_output", a[2], 1),
            ("unchanged_output", a[2], 2),
        }
    if scenario == "shared_role":
        return {("shared_role", a[0], None), ("shared_role", a[1], None)}
    if scenario == "shared_agent":
        return {("shared_agent", a[0], None)}  # seen only through the sidecar
    if scenario == "interrupted":
        return {("no_improved_output", a[-1], max(run["training"][a[-1]])), ("trained_empty", None, None)}
    if scenario == "empty_feedback":
        return {("no_feedback", a[1], 0), ("trained_empty", None, None)}
    if scenario == "failed":
        return {("empty_training", None, None)}
    if scenario == "crewai_086":
        return {("crewai_086", None, None)} | {
            ("no_improved_output", agent, iteration) for agent in a for iteration in run["training"][agent]
        }
    assert scenario == "stale_trained"
    return {("unmatched_role", "Data Analyst", None)}


@pytest.mark.parametrize("scenario", CREWAI_SCENARIOS)
@pytest.mark.parametrize("seed", [0, 1])
def test_each_code_where_expected_and_nowhere_else(tmp_path: Path, scenario: str, seed: int) -> None:
    paths = write_crewai_run(tmp_path, scenario, seed=seed)
    run = make_crewai_run(scenario, seed=seed)
    write_sidecar(paths["training"], run["agents"])  # what training recorded (shared_agent needs it)
    findings = check_training(paths["training"], paths["trained"])
    got = {(finding.code, finding.agent, finding.iteration) for finding in findings}
    assert got == expected(scenario, run)
    assert len(got) == len(findings)  # no finding twice
    for finding in findings:
        assert finding.code in FINDING_CODES
        assert finding.message and finding.what_to_do


def test_every_code_is_produced_by_some_scenario() -> None:
    codes = set()
    for scenario in CREWAI_SCENARIOS:
        run = make_crewai_run(scenario)
        codes |= {code for code, _, _ in expected(scenario, run)}
    assert codes == set(FINDING_CODES) - {"no_initial_output"}  # CrewAI writes no such record on its own


def test_no_initial_output_and_crewais_exact_rule() -> None:
    # CrewAI's evaluator rejects a falsy field: a missing or "" answer; whitespace passes its `all(...)`.
    run = make_crewai_run("paraphrased")
    training = copy.deepcopy(run["training"])
    agent = ids(run)[0]
    training[agent][1]["initial_output"] = ""
    training[agent][2]["human_feedback"] = "   "
    found = {(f.code, f.agent, f.iteration) for f in check_training(training, run["trained"])}
    assert found == {("no_initial_output", agent, 1)}


def test_without_the_trained_file_or_the_sidecar(tmp_path: Path) -> None:
    run = make_crewai_run("shared_role")
    assert {f.code for f in check_training(run["training"])} == set()  # roles need the trained file
    paths = write_crewai_run(tmp_path, "shared_agent")
    assert check_training(paths["training"], paths["trained"]) == []  # tasks need the sidecar
    run = make_crewai_run("shared_agent")
    assert [f.code for f in check_training(paths["training"], paths["trained"], sidecar=run["agents"])] == [
        "shared_agent"
    ]


def test_recorded_roles_reveal_a_shared_role_inference_cannot(tmp_path: Path) -> None:
    run = make_crewai_run("paraphrased")
    first, second, _ = ids(run)
    roles = {agent: info["role"] for agent, info in run["agents"].items()}
    roles[second] = roles[first]
    codes = [(f.code, f.agent) for f in check_training(run["training"], run["trained"], sidecar=roles)]
    assert ("shared_role", first) in codes and ("shared_role", second) in codes
    assert ("unmatched_role", run["agents"][second]["role"]) in codes


def test_findings_are_frozen_and_inputs_untouched(tmp_path: Path) -> None:
    run = make_crewai_run("repeated_correction")
    before = copy.deepcopy(run)
    findings = check_training(run["training"], run["trained"])
    assert run == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        findings[0].code = "other"  # type: ignore[misc]
    assert isinstance(findings[0], Finding)


def test_the_wrong_file_is_said(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    with pytest.raises(StoreFormatError, match=r"trained_agents_data\.pkl: this is a trained-agents file"):
        check_training(paths["trained"])
    metrics = CrewTrainingHandler(tmp_path / "metrics.pkl")
    metrics.append(0, "planner", {"loss": 0.5})
    with pytest.raises(StoreFormatError, match="not a CrewAI feedback record"):
        check_training(metrics)


def test_record_findings_are_what_crewais_evaluator_rejects(tmp_path: Path) -> None:
    from .crewai_run import run_crewai_evaluator

    scenarios = ("paraphrased", "interrupted", "empty_feedback", "crewai_086")
    paths = [write_crewai_run(tmp_path / scenario, scenario)["training"] for scenario in scenarios]
    blank = make_crewai_run("paraphrased", seed=3)["training"]
    first = next(iter(blank))
    blank[first][1]["initial_output"] = ""
    blank[first][2]["human_feedback"] = "  "  # not falsy: CrewAI accepts it
    with CrewTrainingHandler(tmp_path / "blank.pkl") as handler:
        handler.save(blank)
    paths.append(tmp_path / "blank.pkl")
    record_codes = {"no_initial_output": "initial_output", "no_feedback": "human_feedback"}
    for path, rejected in zip(paths, run_crewai_evaluator(paths), strict=True):
        findings = [f for f in check_training(path) if f.iteration is not None and f.code.startswith("no_")]
        for agent, error in rejected.items():
            ours = [f for f in findings if f.agent == agent]
            if not ours:
                assert error is None, (path, agent, error)
                continue
            # CrewAI stops at the first bad iteration and names its missing fields.
            iteration = min(f.iteration for f in ours)
            fields = {record_codes.get(f.code, "improved_output") for f in ours if f.iteration == iteration}
            assert error is not None and error.startswith("Critical training data error"), (path, agent)
            assert f"for agent {agent} in iteration {iteration}." in error
            named = error.split("Missing fields (", 1)[1].split(")", 1)[0].split(", ")
            assert set(named) == fields


@pytest.mark.slow
def test_the_files_of_a_real_train_run(tmp_path: Path) -> None:
    # crewtrain_nb.crewai.train() with real CrewAI: its sidecar is read, and the Researcher's two tasks are found.
    import importlib.util

    if importlib.util.find_spec("crewai") is None:
        pytest.skip("crewai is not installed in this Python (tests/crewai_training_script.py needs it)")
    from crewtrain_nb import match_roles, read_sidecar

    from .test_crewai_training import scenario

    scenario("ok", tmp_path)
    training, trained = tmp_path / "training_data.pkl", tmp_path / "trained_agents_data.pkl"
    sidecar = read_sidecar(training)
    frame = match_roles(training, trained)
    assert set(frame.how) == {"recorded"}
    assert frame.role.tolist() == [sidecar.agents[agent].role for agent in frame.agent]
    researcher = next(agent for agent, info in sidecar.agents.items() if info.role == "Researcher")
    findings = check_training(training, trained)
    # The scripted person types "feedback N for ROLE on 'TASK'": lines that differ only in N repeat.
    assert {(f.code, f.agent, f.iteration) for f in findings} == {("shared_agent", researcher, None)} | {
        ("repeated_feedback", agent, 1) for agent in frame.agent
    }
