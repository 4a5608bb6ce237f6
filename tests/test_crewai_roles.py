"""Which role each agent id had: recorded (sidecar), record (CrewAI 0.86), inferred (feedback ~ suggestions)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pandas as pd
import pytest

from crewtrain_nb import CrewTrainingHandler, match_roles
from crewtrain_nb.crewai import MIN_ROLE_SCORE, assign_roles, role_scores, text_similarity, write_sidecar
from crewtrain_nb.crewai import roles as roles_module
from crewtrain_nb.demo import make_crewai_run, write_crewai_run
from crewtrain_nb.errors import StoreError, StoreFormatError


def truth(run: dict) -> list[str]:
    return [info["role"] for info in run["agents"].values()]


@pytest.mark.parametrize("seed", range(6))
def test_match_roles_recovers_every_role_of_the_paraphrased_run(seed: int) -> None:
    run = make_crewai_run("paraphrased", seed=seed)
    # The trained file follows the crew's agent order, the training file the task order: they differ.
    assert list(run["trained"]) != truth(run)
    frame = match_roles(run["training"], run["trained"])
    assert frame.columns.tolist() == ["agent", "role", "how", "score"]
    assert frame.agent.tolist() == list(run["training"])
    assert frame.role.tolist() == truth(run)
    assert set(frame.how) == {"inferred"}
    assert (frame.score >= MIN_ROLE_SCORE).all()


def test_order_is_not_what_decides(tmp_path: Path) -> None:
    # Reverse the trained file: the roles stay with their agents (order breaks ties only).
    run = make_crewai_run("paraphrased", seed=3)
    reversed_trained = dict(reversed(list(run["trained"].items())))
    assert match_roles(run["training"], reversed_trained).role.tolist() == truth(run)
    shuffled = list(run["training"].items())
    random.Random(1).shuffle(shuffled)
    frame = match_roles(dict(shuffled), run["trained"])
    assert frame.role.tolist() == [run["agents"][agent]["role"] for agent, _ in shuffled]


def test_the_suggestions_paraphrase_rather_than_quote_the_feedback() -> None:
    from crewtrain_nb.crewai import similarity

    run = make_crewai_run("paraphrased", seed=0)
    for agent, records in run["training"].items():
        role = run["agents"][agent]["role"]
        for record in records.values():
            feedback = record["human_feedback"]
            assert feedback not in run["trained"][role]["suggestions"]
            assert max(similarity(feedback, s) for s in run["trained"][role]["suggestions"]) < 0.5


def test_unknown_when_the_trained_file_is_empty_or_missing(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "interrupted")
    assert CrewTrainingHandler(paths["trained"]).load() == {}
    for trained in (paths["trained"], None):
        frame = match_roles(paths["training"], trained)
        assert len(frame) == 3
        assert frame.role.isna().all() and frame.how.isna().all()
        assert frame.score.isna().all()  # nothing to compare with: no score at all


def test_a_failed_run_has_no_agents(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "failed")
    frame = match_roles(paths["training"], paths["trained"])
    assert frame.empty and frame.columns.tolist() == ["agent", "role", "how", "score"]


def test_threshold_both_sides() -> None:
    run = make_crewai_run("paraphrased", seed=0)
    scores = assign_roles(run["training"], run["trained"])
    weakest = min(scores, key=lambda match: match.score)
    above = assign_roles(run["training"], run["trained"], min_score=weakest.score)
    below = assign_roles(run["training"], run["trained"], min_score=math.nextafter(weakest.score, 1.0))
    assert [m.role for m in above] == truth(run)
    assert [m.role for m in below if m.agent != weakest.agent] == [
        r for m, r in zip(scores, truth(run), strict=True) if m.agent != weakest.agent
    ]
    unknown = next(m for m in below if m.agent == weakest.agent)
    assert unknown.role is None and unknown.how is None and unknown.score == weakest.score


def test_the_default_threshold_separates_own_roles_from_others_on_the_demo_runs() -> None:
    for scenario in ("paraphrased", "repeated_correction", "shared_agent", "stale_trained"):
        for seed in range(4):
            run = make_crewai_run(scenario, seed=seed)
            for agent, row in role_scores(run["training"], run["trained"]).items():
                own = run["agents"][agent]["role"]
                assert row[own] >= 2 * MIN_ROLE_SCORE, (scenario, seed, own)
                assert all(score < MIN_ROLE_SCORE for role, score in row.items() if role != own)


def test_unrelated_feedback_gets_no_role() -> None:
    run = make_crewai_run("paraphrased", seed=0)
    analyst = make_crewai_run("stale_trained", seed=0)["trained"]["Data Analyst"]  # a role of another crew
    frame = match_roles(run["training"], {"Data Analyst": analyst})
    assert frame.role.isna().all()
    assert (frame.score < MIN_ROLE_SCORE).all()


def test_a_role_goes_to_two_agents_only_when_there_are_more_agents_than_roles() -> None:
    run = make_crewai_run("shared_role", seed=0)
    assert len(run["training"]) == 3 and len(run["trained"]) == 2
    frame = match_roles(run["training"], run["trained"])
    assert frame.role.tolist() == truth(run) == ["Market Researcher", "Market Researcher", "Report Writer"]
    # With as many roles as agents, no role is given twice, even where one role scores best for two.
    paraphrased = make_crewai_run("paraphrased", seed=0)
    researcher = next(a for a, i in paraphrased["agents"].items() if i["role"] == "Market Researcher")
    twin = dict(paraphrased["training"])
    writer = next(a for a, i in paraphrased["agents"].items() if i["role"] == "Report Writer")
    twin[writer] = paraphrased["training"][researcher]  # two agents with a researcher's feedback
    roles = match_roles(twin, paraphrased["trained"]).role
    assert roles.dropna().is_unique


def test_recorded_roles_come_first_then_records(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased", seed=2)
    run = make_crewai_run("paraphrased", seed=2)
    first = next(iter(run["agents"]))
    write_sidecar(paths["training"], {first: {"role": "Report Writer"}})  # a recorded role beats the text
    frame = match_roles(paths["training"], paths["trained"])
    assert frame.loc[0, "role"] == "Report Writer" and frame.loc[0, "how"] == "recorded" and frame.loc[0, "score"] == 1
    # The other agents share the remaining roles; the sidecar's role is not given again.
    assert "Report Writer" not in frame.role[1:].tolist()
    ignored = match_roles(paths["training"], paths["trained"], sidecar=False)
    assert ignored.role.tolist() == truth(run)

    old = make_crewai_run("crewai_086", seed=2)
    frame = match_roles(old["training"], old["trained"])
    assert frame.role.tolist() == truth(old) and set(frame.how) == {"record"}


def test_sources_and_bad_input(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    run = make_crewai_run("paraphrased")
    by_path = match_roles(paths["training"], paths["trained"])
    by_handler = match_roles(CrewTrainingHandler(paths["training"]), CrewTrainingHandler(paths["trained"]))
    by_dict = match_roles(run["training"], run["trained"])
    pd.testing.assert_frame_equal(by_path, by_handler)
    pd.testing.assert_frame_equal(by_path, by_dict)
    with pytest.raises(StoreFormatError, match="trained-agents file.*trained="):
        match_roles(paths["trained"], paths["training"])
    with pytest.raises(StoreFormatError, match="this is training data"):
        match_roles(paths["training"], paths["training"])
    with pytest.raises(StoreError, match="no such file: .*nope.pkl"):
        match_roles(tmp_path / "nope.pkl")


def test_match_roles_does_not_mutate_its_inputs() -> None:
    import copy

    run = make_crewai_run("shared_role", seed=1)
    before = copy.deepcopy(run)
    match_roles(run["training"], run["trained"], sidecar=run["agents"])
    assert run == before


def test_exact_search_finds_the_best_total_where_greedy_does_not() -> None:
    # Greedy takes the 0.9 pair and leaves 0.1 + 0.0; the best total (0.8 + 0.8) pairs the other way.
    scores = [[0.9, 0.8], [0.8, 0.0]]
    assert roles_module._best_assignment(scores, reuse=False) == [1, 0]
    assert roles_module._greedy_assignment(scores, reuse=False) == [0, 1]
    # With reuse every role is still given at least once.
    assert sorted(set(roles_module._best_assignment([[0.9, 0.1], [0.9, 0.2], [0.9, 0.3]], reuse=True))) == [0, 1]


def test_text_similarity_matches_stems_not_just_words() -> None:
    [[stems, unrelated]] = text_similarity(
        ["Mark every claim you could not verify."],
        ["Flag each unverified claim.", "Use headings so the reader can skim."],
    )
    assert stems > 3 * unrelated


def test_role_label_marks_inferred_roles() -> None:
    from crewtrain_nb.crewai import role_label
    from crewtrain_nb.navigation import agent_label

    agent = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert role_label(agent, "Writer", "recorded") == agent_label(agent, "Writer") == "Writer · 0f8fad5b"
    assert role_label(agent, "Writer", "inferred") == "Writer · 0f8fad5b (inferred)"
    assert role_label(agent, None, None) == agent and role_label("Writer", "Writer", "record") == "Writer"


def test_a_sqlite_training_store(tmp_path: Path) -> None:
    from crewtrain_nb import convert

    paths = write_crewai_run(tmp_path, "paraphrased", seed=5)
    convert(paths["training"], tmp_path / "training_data.db")
    frame = match_roles(tmp_path / "training_data.db", paths["trained"])
    assert frame.role.tolist() == truth(make_crewai_run("paraphrased", seed=5))
