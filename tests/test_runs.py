"""The kept-runs folder and the feedback journal (crewtrain_nb.store's RunArchive and FeedbackJournal)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from crewtrain_nb import CorruptStoreError, CrewTrainingHandler, StoreError
from crewtrain_nb.demo import make_training_data
from crewtrain_nb.store import FeedbackJournal, RunArchive, read_journal


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_run_numbers_count_up_and_entries_update(tmp_path: Path) -> None:
    archive = RunArchive(tmp_path)
    first = archive.start({"outcome": "running", "pid": os.getpid(), "host": socket.gethostname()})
    second = archive.start({"outcome": "ok"})
    assert (first, second) == (1, 2)
    archive.update(first, outcome="failed", error="boom")
    assert [(entry["run"], entry["outcome"]) for entry in archive.entries()] == [(1, "failed"), (2, "ok")]
    assert archive.entry(1)["error"] == "boom"


def test_a_running_entry_whose_process_is_gone_reads_as_interrupted(tmp_path: Path) -> None:
    archive = RunArchive(tmp_path)
    alive = archive.start({"outcome": "running", "pid": os.getpid(), "host": socket.gethostname()})
    gone = archive.start({"outcome": "running", "pid": dead_pid(), "host": socket.gethostname()})
    outcomes = {entry["run"]: entry["outcome"] for entry in archive.entries()}
    assert outcomes == {alive: "running", gone: "interrupted"}
    assert archive.entry(gone)["outcome"] == "running"  # the stored entry is left as it was


def test_keep_copies_files_byte_for_byte_and_prune_keeps_the_newest(tmp_path: Path) -> None:
    store = tmp_path / "training_data.pkl"
    CrewTrainingHandler(store).save(make_training_data(agents=2, iterations=3, seed=1))
    archive = RunArchive(tmp_path)
    runs = [archive.start({"outcome": "ok"}) for _ in range(4)]
    assert archive.keep(runs[0], [store, tmp_path / "missing.pkl"]) == ["training_data.pkl"]
    kept = archive.file(runs[0], "training_data.pkl")
    assert kept is not None and Path(kept).read_bytes() == store.read_bytes()
    assert archive.entry(runs[0])["files"] == ["training_data.pkl"]
    assert archive.prune(2, protect=[runs[0]]) == [runs[1]]
    assert archive.numbers() == [runs[0], runs[2], runs[3]]


def test_unknown_run_names_the_runs_that_exist(tmp_path: Path) -> None:
    archive = RunArchive(tmp_path)
    archive.start({"outcome": "ok"})
    with pytest.raises(StoreError, match="no run 5; the runs kept are: 1"):
        archive.entry(5)


def test_journal_lines_are_whole_and_a_torn_last_line_is_reported(tmp_path: Path) -> None:
    journal = FeedbackJournal(tmp_path / "j.jsonl")
    journal.append({"feedback": "be brief", "iteration": 0})
    journal.append({"feedback": "ünïcode ✓", "iteration": 1})
    assert oct(os.stat(journal.path).st_mode & 0o777) == "0o600"
    with open(journal.path, "ab") as file:
        file.write(b'{"feedback": "half')  # what a crash mid-write could leave
    contents = read_journal(journal.path)
    assert [entry["feedback"] for entry in contents.entries] == ["be brief", "ünïcode ✓"]
    assert contents.torn_line == '{"feedback": "half'
    assert read_journal(tmp_path / "missing.jsonl").entries == []


def test_a_damaged_journal_line_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(CorruptStoreError, match=r"j.jsonl: line 2 is not JSON"):
        read_journal(path)


def test_journal_appends_from_many_processes_never_interleave(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    code = (
        "import sys\n"
        "from crewtrain_nb.store import FeedbackJournal\n"
        "journal = FeedbackJournal(sys.argv[1])\n"
        "for i in range(200):\n"
        "    journal.append({'writer': sys.argv[2], 'i': i, 'text': 'x' * 3000})\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), str(n)]) for n in range(4)]
    assert [writer.wait(120) for writer in writers] == [0] * 4
    entries = read_journal(path).entries
    assert len(entries) == 800
    for writer in map(str, range(4)):
        assert [entry["i"] for entry in entries if entry["writer"] == writer] == list(range(200))
