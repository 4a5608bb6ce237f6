"""audit=True: one hash-chained JSON line per write; verify_audit finds tampering."""

from __future__ import annotations

import datetime
import errno
import getpass
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import AuditReport, CrewTrainingHandler, StoreError, StoreWriteError, verify_audit
from crewtrain_nb.store import _audit
from crewtrain_nb.store._audit import GENESIS, audit_path


def read_entries(store: CrewTrainingHandler) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(audit_path(store.file_path)).read_text().splitlines()]


def file_facts(path: str) -> tuple[int, str]:
    content = Path(path).read_bytes()
    return len(content), hashlib.sha256(content).hexdigest()


def rewrite_lines(store: CrewTrainingHandler, change: Any) -> None:
    log = Path(audit_path(store.file_path))
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(change(lines)))


def rehash(line: str, **fields: Any) -> str:
    """A forged line: fields changed and its own hash recomputed, as a careful tamperer would."""
    entry = json.loads(line)
    entry.update(fields)
    entry["hash"] = _audit._entry_hash(entry)
    return _audit._canonical(entry).decode() + "\n"


@pytest.fixture
def audited(tmp_path: Path) -> CrewTrainingHandler:
    """Six writes of every kind, each line checked against the file right after it."""
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", audit=True)
    handler.initialize_file()
    handler.append(0, "agent-a", {"initial_output": "a0", "human_feedback": "f"})
    handler.append(1, "agent-a", {"initial_output": "a1", "human_feedback": "f"})
    handler.save_trained_data("Writer", {"suggestions": ["s"], "quality": 8.0, "final_summary": "x"})
    with handler.batch():
        for iteration in range(5):
            handler.append(iteration, "agent-b", {"initial_output": f"b{iteration}", "human_feedback": "f"})
    handler.save({"agent-c": {0: {"initial_output": "c", "human_feedback": "f"}}})
    return handler


def test_each_write_is_one_line_with_who_what_and_the_resulting_file(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl.gz", audit=True)
    facts = []
    steps: list[Any] = [
        lambda: handler.initialize_file(),
        lambda: handler.append(3, "agent-a", {"initial_output": "x", "human_feedback": "y"}),
        lambda: handler.save_trained_data("Writer", {"quality": 1.0}),
        lambda: handler.save({"k": 1}),
        lambda: handler.clear(),
    ]
    before = datetime.datetime.now(datetime.timezone.utc)
    for step in steps:
        step()
        facts.append(file_facts(handler.file_path))
    entries = read_entries(handler)
    assert [e["operation"] for e in entries] == ["initialize_file", "append", "save_trained_data", "save", "clear"]
    assert [(e["agent"], e["iteration"], e["count"]) for e in entries] == [
        (None, None, None),
        ("agent-a", 3, 1),
        ("Writer", None, 1),
        (None, None, None),
        (None, None, None),
    ]
    assert [(e["bytes"], e["sha256"]) for e in entries] == facts
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0]["prev"] == GENESIS
    assert [e["prev"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    for entry in entries:
        time = datetime.datetime.fromisoformat(entry["time"])
        assert time.utcoffset() == datetime.timedelta(0)
        assert before <= time <= datetime.datetime.now(datetime.timezone.utc)
        assert (entry["user"], entry["host"], entry["pid"]) == (getpass.getuser(), socket.gethostname(), os.getpid())
    assert stat.S_IMODE(os.stat(audit_path(handler.file_path)).st_mode) == 0o600
    assert verify_audit(handler.file_path) == AuditReport(True, 5, None, None, audit_path(handler.file_path))


def test_a_batch_is_one_line_with_its_count(audited: CrewTrainingHandler) -> None:
    batch = [e for e in read_entries(audited) if e["operation"] == "batch"]
    assert len(batch) == 1
    assert (batch[0]["agent"], batch[0]["iteration"], batch[0]["count"]) == ("agent-b", None, 5)
    with audited.batch():
        audited.append(9, "agent-x", {})
        audited.save_trained_data("Writer", {"quality": 2.0})
    last = read_entries(audited)[-1]
    assert (last["operation"], last["agent"], last["count"]) == ("batch", None, 2)
    with audited.batch():
        pass  # nothing written, nothing logged
    assert len(read_entries(audited)) == 7


def test_intact_log_verifies_from_the_store_or_the_log_path(audited: CrewTrainingHandler) -> None:
    report = verify_audit(audited.file_path)
    assert report.ok and bool(report) and report.lines == 6
    assert verify_audit(Path(audit_path(audited.file_path))).ok


@pytest.mark.parametrize(
    ("tamper", "line", "words"),
    [
        pytest.param(lambda lines: lines[1:], 1, "does not chain to the start", id="remove-first"),
        pytest.param(lambda lines: lines[:2] + lines[3:], 3, "does not chain to line 2", id="remove-middle"),
        pytest.param(lambda lines: lines[:-1], 5, "store file does not match", id="remove-last"),
        pytest.param(
            lambda lines: lines[:2] + [lines[2].replace('"agent-a"', '"agent-z"')] + lines[3:], 3, "edited", id="edit"
        ),
        pytest.param(
            lambda lines: [*lines[:-1], lines[-1].replace('"operation":"save"', '"operation":"clear"')],
            6,
            "edited",
            id="edit-last",
        ),
        pytest.param(
            lambda lines: lines[:2] + [rehash(lines[2], user="mallory")] + lines[3:], 4, "chain", id="edit-rehashed"
        ),
        pytest.param(lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], 2, "chain", id="reorder"),
        pytest.param(lambda lines: lines[:3] + [lines[2]] + lines[3:], 4, "chain", id="insert-copy"),
        pytest.param(
            lambda lines: lines[:3] + [rehash(lines[2], seq=4, prev=json.loads(lines[2])["hash"])] + lines[3:],
            5,
            "chain",
            id="insert-forged",
        ),
        pytest.param(lambda lines: [*lines[:-1], lines[-1][:-20]], 6, "cut short", id="truncated-line"),
        pytest.param(lambda lines: [*lines[:3], "not json\n", *lines[3:]], 4, "JSON", id="garbage-line"),
    ],
)
def test_tampering_is_found_at_the_right_line(audited: CrewTrainingHandler, tamper: Any, line: int, words: str) -> None:
    rewrite_lines(audited, tamper)
    report = verify_audit(audited.file_path)
    assert not report.ok and not report
    assert report.line == line, report
    assert report.problem is not None and words in report.problem


def test_a_store_changed_without_the_log_is_found(audited: CrewTrainingHandler) -> None:
    CrewTrainingHandler(audited.file_path).append(7, "agent-z", {})  # a writer without audit=True
    report = verify_audit(audited.file_path)
    assert (report.ok, report.line) == (False, 6)
    os.unlink(audited.file_path)
    assert "missing" in (verify_audit(audited.file_path).problem or "")


def test_missing_log_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no audit log"):
        verify_audit(tmp_path / "nothing.pkl")


def test_an_unreadable_last_line_stops_the_write_before_the_store_changes(audited: CrewTrainingHandler) -> None:
    rewrite_lines(audited, lambda lines: [*lines[:-1], lines[-1][:-10]])
    before = Path(audited.file_path).read_bytes()
    with pytest.raises(StoreWriteError, match="verify_audit"):
        audited.append(50, "agent-a", {})
    assert Path(audited.file_path).read_bytes() == before


def test_failing_audit_write_is_reported(audited: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    log_inode = os.stat(audit_path(audited.file_path)).st_ino
    real_write = os.write

    def failing_for_the_log(fd: int, data: Any) -> int:
        if os.fstat(fd).st_ino == log_inode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with monkeypatch.context() as patch:
        patch.setattr(_audit.os, "write", failing_for_the_log)
        with pytest.raises(StoreWriteError, match="audit line could not be written"):
            audited.append(50, "agent-a", {})
    assert 50 in audited.load()["agent-a"]  # saved
    assert not verify_audit(audited.file_path).ok  # and the gap is visible


def test_restore_is_logged_with_its_version(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", audit=True, backups=2)
    handler.save({"v": 1})
    handler.save({"v": 2})
    version = handler.versions()[0]
    handler.restore(version)
    last = read_entries(handler)[-1]
    assert (last["operation"], last["version"]) == ("restore", version.id)
    assert (last["bytes"], last["sha256"]) == file_facts(handler.file_path)
    assert verify_audit(handler.file_path).ok


CHILD = """
import sys
from crewtrain_nb import CrewTrainingHandler
handler = CrewTrainingHandler(sys.argv[1], audit=True)
for iteration in range(int(sys.argv[3])):
    handler.append(iteration, sys.argv[2], {"value": iteration})
"""


def test_processes_writing_at_once_keep_one_unbroken_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "training_data.pkl")
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, path, f"agent-{n}", "40"], stderr=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
    report = verify_audit(path)
    assert report.ok, report
    assert report.lines == 120
    assert {e["pid"] for e in read_entries(CrewTrainingHandler(path))} == {c.pid for c in children}
