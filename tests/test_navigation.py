"""Pure selection logic of the browser: options, labels, filtering, stepping."""

from __future__ import annotations

from typing import Any

import pytest

from crewtrain_nb.demo import DEMO_ROLES, demo_agent_names, make_metrics_data, make_training_data
from crewtrain_nb.navigation import (
    agent_options,
    agent_role,
    iteration_options,
    record_matches,
    resolve_agent,
    step_iteration,
)


def test_agent_options_use_given_names_and_keep_store_order(training_data: dict[str, Any]) -> None:
    names = demo_agent_names(training_data)
    options = agent_options(training_data, names=names)
    assert [value for _, value in options] == list(training_data)
    for (label, agent), role in zip(options, DEMO_ROLES, strict=True):
        assert label == f"{role} · {agent[:8]}"


def test_agent_options_without_names_show_the_id(training_data: dict[str, Any]) -> None:
    assert agent_options(training_data) == [(agent, agent) for agent in training_data]


def test_role_comes_from_crewai_086_records_or_a_role_keyed_store(training_data: dict[str, Any]) -> None:
    agent, records = next(iter(training_data.items()))
    legacy = {iteration: {**record, "agent_role": "Analyst"} for iteration, record in records.items()}
    assert agent_role(agent, legacy) == "Analyst"
    assert agent_role("Writer", {0: {"loss": 1}}, trained={"Writer": {}}) == "Writer"
    assert agent_role(agent, records, trained={"Writer": {}}) is None


def test_agent_options_skip_entries_that_are_not_iteration_dicts() -> None:
    assert agent_options({"a": {0: {}}, "b": [1, 2]}) == [("a", "a")]


def test_iterations_are_numeric_order_with_gaps() -> None:
    records = {10: {}, 2: {}, 9: {}, 0: {}, 12: {}}
    assert iteration_options(records) == [0, 2, 9, 10, 12]


def test_text_filter_narrows_iterations(training_data: dict[str, Any]) -> None:
    records = next(iter(training_data.values()))
    word = "trade-offs"
    expected = [key for key, record in sorted(records.items()) if any(word in str(v).lower() for v in record.values())]
    assert expected, "the seeded demo data should contain the word"
    assert iteration_options(records, text="Trade-Offs") == expected
    assert iteration_options(records, text="   ") == sorted(records)
    assert iteration_options(records, text="no such words anywhere") == []


def test_filter_searches_nested_values_and_keys() -> None:
    data = make_metrics_data(agents=("a",), iterations=3)
    assert record_matches(data["a"][0], "metrics")
    assert record_matches({"notes": ["first", {"deep": "Needle"}]}, "needle")
    assert not record_matches({"loss": 0.1}, "0.1")  # numbers are not text


def test_step_iteration_moves_and_clamps() -> None:
    options = [0, 3, 4, 8]
    assert step_iteration(options, 3, 1) == 4
    assert step_iteration(options, 3, -1) == 0
    assert step_iteration(options, 0, -1) == 0
    assert step_iteration(options, 8, 1) == 8
    assert step_iteration(options, 5, 1) == 0  # a value no longer present restarts at the first
    assert step_iteration([], 1, 1) is None


def test_inputs_are_not_mutated() -> None:
    data = make_training_data(agents=2, iterations=3)
    snapshot = repr(data)
    agent_options(data, names={next(iter(data)): "x"})
    for records in data.values():
        iteration_options(records, text="a")
    assert repr(data) == snapshot


def test_curve_frame_uses_metrics_or_feedback_numbers(
    metrics_data: dict[str, Any], training_data: dict[str, Any]
) -> None:
    from crewtrain_nb.frames import metrics_frame
    from crewtrain_nb.navigation import FEEDBACK_CURVES, curve_frame

    curves = curve_frame(metrics_data, "coder")
    expected = metrics_frame(metrics_data, agents="coder")
    assert curves.equals(expected)
    agent = next(iter(training_data))
    feedback_curves = curve_frame(training_data, agent)
    assert set(feedback_curves["metric"]) <= set(FEEDBACK_CURVES)
    initial = feedback_curves[feedback_curves["metric"] == "initial_chars"].set_index("iteration")["value"]
    for iteration, record in training_data[agent].items():
        assert initial[iteration] == len(record["initial_output"])
    # Every iteration has a row of each curve; what CrewAI did not record is NaN (a gap in the plot).
    for metric in FEEDBACK_CURVES:
        rows = feedback_curves[feedback_curves["metric"] == metric]
        assert rows["iteration"].tolist() == sorted(training_data[agent])
    similarity = feedback_curves[feedback_curves["metric"] == "similarity"].set_index("iteration")["value"]
    without_improved = [i for i, r in training_data[agent].items() if "improved_output" not in r]
    assert without_improved and similarity[without_improved].isna().all()
    assert similarity.drop(index=without_improved).notna().all()
    assert feedback_curves["value"].dtype == "float64"


def test_resolve_agent_takes_exact_ids_and_unique_prefixes(training_data: dict[str, Any]) -> None:
    agents = list(training_data)
    assert resolve_agent(agents, agents[1]) == agents[1]
    assert resolve_agent(agents, agents[1][:8]) == agents[1]
    with pytest.raises(ValueError, match="no agent 'zzz' in the store; its agents are '" + agents[0]):
        resolve_agent(agents, "zzz")
    with pytest.raises(ValueError, match="ambiguous"):
        resolve_agent(["run-1", "run-2"], "run-")
    with pytest.raises(ValueError, match="no agent '' in the store"):
        resolve_agent(agents, "")


def test_resolve_agent_takes_an_id_then_a_role_then_a_unique_prefix() -> None:
    agents = ["ab-1", "ab-2", "Writer"]
    roles = {"ab-1": "Writer", "ab-2": "ab"}
    assert resolve_agent(agents, "Writer", roles=roles) == "Writer"  # an exact id wins over ab-1's role
    assert resolve_agent(agents, "ab", roles=roles) == "ab-2"  # a role wins over a prefix of two ids
    with pytest.raises(ValueError, match="'ab-' is ambiguous: 2 agent ids in the store start with it: 'ab-1', 'ab-2'"):
        resolve_agent(agents, "ab-", roles=roles)
    both = "'Editor' is ambiguous: the role 'Editor' names 2 agents in x.pkl: 'ab-1', 'ab-2'; give one of their ids"
    with pytest.raises(ValueError, match=both):
        resolve_agent(agents, "Editor", roles={"ab-1": "Editor", "ab-2": "Editor"}, path="x.pkl")
    looked_up: list[int] = []
    assert resolve_agent(agents, "ab-1", roles=lambda: looked_up.append(1) or roles) == "ab-1"
    assert looked_up == []  # roles are read only when a name is not an id


def test_one_unknown_agent_message_wherever_an_agent_is_named(tmp_path: Any, metrics_data: dict[str, Any]) -> None:
    from crewtrain_nb import CrewTrainingHandler, TrainingBrowser, feedback_frame, metrics_frame, to_frame
    from crewtrain_nb.plots import plot_metrics

    handler = CrewTrainingHandler(tmp_path / "m.db")
    handler.save(metrics_data)
    listed = "its agents are 'planner', 'coder', 'critic'"
    where = f"no agent 'ghost' in {handler.file_path}; {listed}"
    failures: list[BaseException] = []
    for call in (
        lambda: to_frame(handler, agents="ghost"),
        lambda: feedback_frame(handler.file_path, agents=["ghost"]),
        lambda: plot_metrics(handler, agents="ghost"),
        lambda: TrainingBrowser(handler, draw_in_background=False).select("ghost"),
        lambda: handler.entry("ghost"),
        lambda: resolve_agent(handler.agents(), "ghost", path=handler.file_path),
    ):
        with pytest.raises((ValueError, KeyError)) as caught:
            call()
        failures.append(caught.value)
    assert all(where in str(failure) for failure in failures), [str(failure) for failure in failures]
    with pytest.raises(ValueError, match=f"agents: no agent 'ghost' in the store; {listed}"):
        metrics_frame(metrics_data, agents="ghost")


def test_agent_labels_match_roles_from_the_trained_file_and_say_inferred(tmp_path: Any) -> None:
    from crewtrain_nb import write_sidecar
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run
    from crewtrain_nb.navigation import agent_labels

    run = make_crewai_run("paraphrased")
    truth = {agent: info["role"] for agent, info in run["agents"].items()}
    assert agent_labels(run["training"], trained=run["trained"]) == {
        agent: f"{role} · {agent[:8]} (inferred)" for agent, role in truth.items()
    }
    assert agent_labels(run["training"]) == {agent: agent for agent in truth}  # nothing to go by: the id
    first = next(iter(truth))
    named = agent_labels(run["training"], trained=run["trained"], names={first: "Lead"})
    assert named[first] == f"Lead · {first[:8]}"  # what the user says comes first
    # The sidecar beside the file: recorded roles are facts, labelled without "(inferred)".
    paths = write_crewai_run(tmp_path, "paraphrased")
    write_sidecar(paths["training"], run["agents"])
    assert agent_labels(run["training"], path=str(paths["training"])) == {
        agent: f"{role} · {agent[:8]}" for agent, role in truth.items()
    }
    # A trained file of {} (a failed or interrupted run) infers nothing.
    interrupted = make_crewai_run("interrupted")
    assert agent_labels(interrupted["training"], trained=interrupted["trained"]) == {
        agent: agent for agent in interrupted["training"]
    }


def test_check_agent_names_warns_when_no_name_is_an_agent() -> None:
    import warnings

    from crewtrain_nb.navigation import check_agent_names

    with pytest.warns(UserWarning, match=r"matches no agent id \(it names 'mine'\); the agents are 'a', 'b'"):
        check_agent_names({"mine": "Writer"}, ["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_agent_names({"a": "Writer", "other": "x"}, ["a", "b"])  # one matches: labels take effect
        check_agent_names(None, ["a"])
        check_agent_names({}, ["a"])
