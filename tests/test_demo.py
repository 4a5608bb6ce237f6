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


def test_structured_run_loads_as_placeholders_and_shows_as_fields(tmp_path: Path) -> None:
    from crewtrain_nb import CrewTrainingHandler, OpaqueObject, feedback_frame, to_frame
    from crewtrain_nb.demo import STRUCTURED_CLASS, make_structured_run, write_structured_run
    from crewtrain_nb.render import record_html

    run = make_structured_run()
    assert run == make_structured_run() and run != make_structured_run(seed=1)
    paths = write_structured_run(tmp_path)
    payload = paths["training"].read_bytes()
    assert payload[:2] == b"\x80\x04" and b"ebike_crew.models" in payload
    with pytest.raises(ModuleNotFoundError, match="ebike_crew"):
        pickle.loads(payload)  # as CrewAI's file: plain pickle needs the user's classes
    loaded = CrewTrainingHandler(paths["training"]).load()
    assert loaded == run["training"]
    researcher = next(iter(loaded))
    facts = loaded[researcher][1]["improved_output"]
    assert type(facts) is OpaqueObject and (facts.module, facts.qualname) == STRUCTURED_CLASS
    assert set(facts.state) == {"__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__"}
    assert facts.fields["sources"][0].class_name == "ebike_crew.models.MarketFacts.Source"
    frame = to_frame(paths["training"], agents=researcher)
    assert {"improved_output.title", "improved_output.confidence", "improved_output.market_size_eur_bn"} <= set(
        frame.columns
    )
    assert frame["improved_output.confidence"].tolist() == [0.6, 0.7, 0.8]
    page = record_html(loaded[researcher][0], title="structured")
    assert "The European e-bike market" in page and "https://example.org/survey" in page and "__pydantic" not in page
    assert feedback_frame(paths["training"])["improved_output"].str.startswith("MarketFacts {").sum() == 3


def test_structured_run_loads_as_the_real_models_where_the_classes_are(tmp_path: Path) -> None:
    from crewtrain_nb.demo import write_structured_run

    paths = write_structured_run(tmp_path / "run")
    package = tmp_path / "code" / "ebike_crew"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        "from pydantic import BaseModel\n\n"
        "class MarketFacts(BaseModel):\n"
        "    class Source(BaseModel):\n"
        "        name: str\n"
        "        url: str\n"
        "    title: str\n    facts: list[str]\n    sources: list[Source]\n"
        "    market_size_eur_bn: float\n    confidence: float\n"
    )
    code = (
        "import pickle, sys; from ebike_crew.models import MarketFacts\n"
        f"data = pickle.load(open({str(paths['training'])!r}, 'rb'))\n"
        "facts = next(iter(data.values()))[2]['improved_output']\n"
        "assert isinstance(facts, MarketFacts) and isinstance(facts.sources[0], MarketFacts.Source)\n"
        "print(facts.model_dump_json())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path / "code", capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert '"title":"The European e-bike market"' in result.stdout and '"confidence":0.8' in result.stdout
