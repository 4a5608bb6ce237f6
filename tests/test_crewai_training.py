"""``crewtrain_nb.crewai.train()`` with a real CrewAI install: scripted model and person, real ``crew.train()``."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import CrewTrainingHandler
from crewtrain_nb.crewai import load_run, restore_run, runs, sidecar_path
from crewtrain_nb.crewai.training import journal_path
from crewtrain_nb.store import read_journal

SCRIPT = Path(__file__).with_name("crewai_training_script.py")
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def scenario(name: str, directory: Path) -> dict[str, Any]:
    """Run one scenario of tests/crewai_training_script.py in a fresh process; return its RESULT."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), name, str(directory)], capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


def load(path: Path) -> Any:
    with open(path, "rb") as file:
        return pickle.load(file)


@pytest.fixture(scope="module")
def ok_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("ok")
    return directory, scenario("ok", directory)


def test_files_equal_crewais_own_training_of_the_same_script(tmp_path: Path) -> None:
    plain, ours = tmp_path / "plain", tmp_path / "ours"
    plain.mkdir()
    ours.mkdir()
    scenario("plain", plain)  # CrewAI's own crew.train(), its own handler, feedback from stdin
    assert scenario("terminal", ours)["outcome"] == "ok"  # the same, through train(feedback=None)

    theirs, mine = load(plain / "training_data.pkl"), load(ours / "training_data.pkl")
    # Ids are fresh uuids of the training copy each time: compare everything else, in file order.
    assert list(mine.values()) == list(theirs.values())
    assert [type(key) for entry in mine.values() for key in entry] == [int] * 6
    assert load(ours / "trained_agents_data.pkl") == load(plain / "trained_agents_data.pkl")
    # The journal has every line typed, the first task of the two-task agent too (CrewAI's file keeps 6 of 8).
    typed = [line["feedback"] for line in read_journal(journal_path(ours / "training_data.pkl")).entries]
    assert typed == [f"feedback {index}" for index in range(8)]


def test_sidecar_maps_every_training_copy_id_to_its_role(ok_run: tuple[Path, dict[str, Any]]) -> None:
    directory, _ = ok_run
    sidecar = json.loads(Path(sidecar_path(directory / "training_data.pkl")).read_text())
    assert sidecar["format"] == "crewtrain_nb.agents" and sidecar["version"] == 1
    training = load(directory / "training_data.pkl")
    assert set(sidecar["agents"]) == set(training)
    for agent_id, records in training.items():
        role = sidecar["agents"][agent_id]["role"]
        # The feedback function put the role it was asked about into each line.
        assert all(f"for {role} on" in record["human_feedback"] for record in records.values())
    researcher = next(info for info in sidecar["agents"].values() if info["role"] == "Researcher")
    assert researcher["tasks"] == ["Research the topic {topic}.", "Research sources for {topic}."]


def test_a_run_is_kept_with_its_entry_and_every_feedback(ok_run: tuple[Path, dict[str, Any]]) -> None:
    directory, result = ok_run
    assert result["outcome"] == "ok" and result["cwd_unchanged"]
    assert result["frame_rows"] == 6
    assert "ok" in result["html"] and "Researcher" in result["html"]
    frame = runs(directory)
    assert frame[["run", "outcome", "n_iterations", "agents", "records"]].values.tolist() == [[1, "ok", 2, 3, 6]]
    run = load_run(1, directory)
    assert [line["feedback"] for line in run.feedback()] == result["typed"]
    assert len(result["typed"]) == 8
    assert set(run.kept_files) == {"training_data.pkl", "trained_agents_data.pkl", "training_data.pkl.agents.json"}
    assert load(Path(run.kept_files["training_data.pkl"])) == load(directory / "training_data.pkl")
    assert set(run.frame()["role"]) == {"Researcher", "Writer", "Reviewer"}
    assert [label.split(" · ")[0] for label in result["browser_labels"]] == ["Researcher", "Reviewer", "Writer"]


def test_evaluator_failure_loses_nothing_and_evaluate_rescues_the_run(tmp_path: Path) -> None:
    result = scenario("evaluator-fails", tmp_path)
    assert "error" in result, result
    # CrewAI's clear() ran: both live files are {} ...
    assert load(tmp_path / "training_data.pkl") == {}
    assert load(tmp_path / "trained_agents_data.pkl") == {}
    # ... yet every typed line is in the journal, and the files as they were before the wipe are kept.
    journal = read_journal(journal_path(tmp_path / "training_data.pkl")).entries
    assert [line["feedback"] for line in journal] == result["typed"] and len(journal) == 8
    frame = runs(tmp_path)
    failed = frame[frame.outcome == "failed"]
    assert len(failed) == 1 and failed.error.iloc[0]
    kept = load_run(int(failed.run.iloc[0]), tmp_path).kept_files
    assert len(load(Path(kept["training_data.pkl"]))) == 3

    rescued = scenario("evaluate", tmp_path)  # restore_run(failed) + evaluate(crew)
    assert set(rescued["written"]) == {"Researcher", "Writer", "Reviewer"}
    trained = load(tmp_path / "trained_agents_data.pkl")
    assert set(trained) == {"Researcher", "Writer", "Reviewer"}
    assert all(entry["quality"] == 7.5 for entry in trained.values())
    assert len(load(tmp_path / "training_data.pkl")) == 3  # the restored training data
    assert "kept" in set(runs(tmp_path).outcome)  # what the restore replaced was kept as a run first


def test_keyboard_interrupt_marks_the_run_and_keeps_the_journal(tmp_path: Path) -> None:
    result = scenario("interrupt", tmp_path)
    assert result["interrupted"]
    journal = read_journal(journal_path(tmp_path / "training_data.pkl")).entries
    assert [line["feedback"] for line in journal] == result["typed"] and len(journal) == 2
    assert runs(tmp_path).outcome.tolist() == ["interrupted"]
    assert result["restored"]  # CrewAI's own handler is back in its modules after the interrupt


def test_a_second_train_keeps_the_first_run(tmp_path: Path) -> None:
    result = scenario("twice", tmp_path)
    assert result["runs"] == [1, 2]
    frame = runs(tmp_path)
    assert frame.outcome.tolist() == ["ok", "ok"]
    first = load_run(1, tmp_path).kept_files
    assert load(Path(first["training_data.pkl"])) != load(tmp_path / "training_data.pkl")  # new ids each run
    assert len(read_journal(journal_path(tmp_path / "training_data.pkl")).entries) == 16


def test_a_crewai_of_unknown_layout_is_refused(tmp_path: Path) -> None:
    refused = scenario("old-version", tmp_path)["refused"]
    assert "crewai 0.86.0 is installed" in refused and "1.14 to 1.x" in refused
    assert not (tmp_path / "training_runs").exists()  # refused before anything was written


def test_a_second_train_in_the_same_process_is_refused(tmp_path: Path) -> None:
    result = scenario("concurrent", tmp_path)
    assert "already running" in result["second"]


def test_kill_after_a_feedback_line_loses_nothing_from_the_journal(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "kill-after-feedback", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 300
        seen = 0
        while seen < 3 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("TYPED "):
                seen = int(line.split()[1])
        assert seen == 3
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
        if process.stdout is not None:
            process.stdout.close()
    journal = read_journal(journal_path(tmp_path / "training_data.pkl"))
    assert journal.torn_line is None
    assert [line["feedback"].split(" for ")[0] for line in journal.entries] == [f"feedback {i}" for i in range(3)]
    # Its entry still says running; its process is gone, so a reader sees it interrupted.
    assert runs(tmp_path).outcome.tolist() == ["interrupted"]


def test_restore_run_puts_a_runs_files_back_without_crewai(ok_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    directory, _ = ok_run
    copy = tmp_path / "copy"
    # A notebook's environment usually has no crewai: runs() and restore_run() must not need it.
    code = (
        "import shutil, sys\n"
        "sys.modules['crewai'] = None\n"
        "from crewtrain_nb.crewai import restore_run, runs, train\n"
        f"shutil.copytree({str(directory)!r}, {str(copy)!r})\n"
        "CrewTrainingHandler = __import__('crewtrain_nb').CrewTrainingHandler\n"
        f"CrewTrainingHandler({str(copy / 'training_data.pkl')!r}).save({{}})\n"
        f"kept = restore_run(1, {str(copy)!r})\n"
        f"print(kept.run, runs({str(copy)!r}).outcome.tolist())\n"
        "try:\n"
        "    train(object(), 1)\n"
        "except ImportError as exc:\n"
        "    print('ImportError:', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()
    assert first == "2 ['ok', 'kept']", first
    assert "pip install 'crewtrain-nb[crewai]'" in second
    assert CrewTrainingHandler(copy / "training_data.pkl").load() == load(directory / "training_data.pkl")


def test_restore_run_names_the_runs_that_exist(tmp_path: Path) -> None:
    from crewtrain_nb import StoreError

    with pytest.raises(StoreError, match="no run 7; the runs kept are: none"):
        restore_run(7, tmp_path)


def test_feedback_in_the_notebook_widget_reaches_the_files(tmp_path: Path) -> None:
    result = scenario("notebook", tmp_path)
    assert result["outcome"] == "ok"
    assert result["empty_refused"]
    assert len(result["typed"]) == 4 and result["progress"] == [4, 4]
    training = load(tmp_path / "training_data.pkl")
    stored = [record["human_feedback"] for records in training.values() for record in records.values()]
    assert sorted(stored) == sorted(result["typed"])  # exactly the text typed, nothing else
    # The output is Markdown with its raw HTML escaped, and the agent's earlier feedback is shown.
    assert all("<strong>" in output and "&lt;script&gt;" in output for output in result["outputs"])
    assert not any("<script>" in output for output in result["outputs"])
    assert result["previous"][0] == "" and result["typed"][0] in result["previous"][2]
    assert "Training finished" in result["status"]


def test_stop_in_the_notebook_widget_ends_the_run_without_a_wipe(tmp_path: Path) -> None:
    result = scenario("notebook-stop", tmp_path)
    assert result["outcome"] == "interrupted"
    training = load(tmp_path / "training_data.pkl")  # CrewAI did not clear it: the two answered steps are there
    stored = sorted(record["human_feedback"] for records in training.values() for record in records.values())
    assert stored == sorted(result["typed"]) and len(stored) == 2
    assert runs(tmp_path).outcome.tolist() == ["interrupted"]
