"""The sidecar <training file>.agents.json: written atomically, read strictly, unknown keys ignored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crewtrain_nb import read_sidecar, write_sidecar
from crewtrain_nb.crewai import SIDECAR_FORMAT, SIDECAR_VERSION, AgentInfo, find_sidecar, sidecar_path
from crewtrain_nb.demo import make_crewai_run, write_crewai_run
from crewtrain_nb.errors import StoreError, StoreFormatError, StoreWriteError


def test_round_trip_beside_the_training_file(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "shared_agent")
    run = make_crewai_run("shared_agent")
    target = write_sidecar(paths["training"], run["agents"], crewai_version="1.15.30")
    assert target == str(paths["training"]) + ".agents.json" == sidecar_path(paths["training"])
    document = json.loads(Path(target).read_text(encoding="utf-8"))
    assert document["format"] == SIDECAR_FORMAT and document["version"] == SIDECAR_VERSION == 1
    assert document["crewai"] == "1.15.30" and document["written"].endswith("+00:00")
    sidecar = read_sidecar(paths["training"])
    assert read_sidecar(target) == sidecar
    assert list(sidecar.agents) == list(run["agents"])  # the order the agents ran
    for agent, info in run["agents"].items():
        assert sidecar.agents[agent] == AgentInfo(info["role"], info["goal"], tuple(info["tasks"]))
    assert sidecar.roles() == {agent: info["role"] for agent, info in run["agents"].items()}
    assert (os.stat(target).st_mode & 0o777) == 0o600  # as the store's files: the owner's only


def test_readers_ignore_unknown_keys(tmp_path: Path) -> None:
    target = write_sidecar(tmp_path / "training_data.pkl", {"a1": {"role": "Writer", "tasks": ["Write."]}})
    document = json.loads(Path(target).read_text(encoding="utf-8"))
    document["host"] = "laptop"
    document["agents"]["a1"]["llm"] = "gpt-4o"
    Path(target).write_text(json.dumps(document), encoding="utf-8")
    assert read_sidecar(target).agents["a1"] == AgentInfo("Writer", None, ("Write.",))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"format": "someone.else"}, "not a crewtrain_nb agents sidecar"),
        ({"version": 2}, "sidecar version 2 is not one this crewtrain_nb reads"),
        ({"version": "1"}, "sidecar version '1'"),
        ({"agents": []}, "'agents' must be an object"),
        ({"agents": {"a1": {"goal": "x"}}}, "agent 'a1': 'role' must be a non-empty str"),
        ({"agents": {"a1": {"role": "W", "tasks": "one"}}}, "'tasks' must be a list"),
    ],
)
def test_readers_refuse_unknown_formats_naming_the_file(tmp_path: Path, change: dict, needle: str) -> None:
    target = write_sidecar(tmp_path / "training_data.pkl", {"a1": "Writer"})
    document = {**json.loads(Path(target).read_text(encoding="utf-8")), **change}
    Path(target).write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(StoreFormatError) as error:
        read_sidecar(tmp_path / "training_data.pkl")
    assert needle in str(error.value) and str(error.value).startswith(target)


def test_not_json_and_missing(tmp_path: Path) -> None:
    target = Path(sidecar_path(tmp_path / "training_data.pkl"))
    with pytest.raises(StoreError, match="no sidecar"):
        read_sidecar(target)
    assert find_sidecar(None, str(tmp_path / "training_data.pkl")) is None  # missing is normal there
    target.write_text("{not json", encoding="utf-8")
    with pytest.raises(StoreFormatError, match="not a JSON sidecar"):
        read_sidecar(target)
    with pytest.raises(StoreFormatError, match="not a JSON sidecar"):
        find_sidecar(None, str(tmp_path / "training_data.pkl"))  # present but broken: said, not ignored


def test_writer_checks_the_agents(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="agents must be a dict"):
        write_sidecar(tmp_path / "t.pkl", ["Writer"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="agent 'a1': 'role'"):
        write_sidecar(tmp_path / "t.pkl", {"a1": {"role": ""}})
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_failed_write_keeps_the_old_sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    target = write_sidecar(tmp_path / "training_data.pkl", {"a1": "Writer"})

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StoreWriteError, match=r"\.pkl\.agents\.json: cannot write it \(No space left on device\)"):
        write_sidecar(tmp_path / "training_data.pkl", {"a1": "Editor"})
    monkeypatch.undo()
    assert read_sidecar(target).roles() == {"a1": "Writer"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["training_data.pkl.agents.json"]  # no temp left


def test_a_killed_writer_leaves_the_old_sidecar_or_the_new_one(tmp_path: Path) -> None:
    # A real process writes a large sidecar over and over and is killed; every read sees a whole document.
    training = tmp_path / "training_data.pkl"
    write_sidecar(training, {"a0": "Writer"})
    script = (
        "import sys\n"
        "from crewtrain_nb.crewai import write_sidecar\n"
        "agents = {f'a{n}': {'role': 'R' * 2000, 'tasks': ['t' * 2000] * 20} for n in range(50)}\n"
        "print('ready', flush=True)\n"
        "while True:\n"
        "    write_sidecar(sys.argv[1], agents)\n"
    )
    for _ in range(5):
        process = subprocess.Popen([sys.executable, "-c", script, str(training)], stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for _ in range(20):
            roles = read_sidecar(training).roles()
            assert roles == {"a0": "Writer"} or len(roles) == 50
        process.kill()
        process.wait()
        process.stdout.close()
        roles = read_sidecar(training).roles()
        assert roles == {"a0": "Writer"} or len(roles) == 50
