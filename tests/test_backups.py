"""backups=N, versions() and restore(): previous versions kept in <store>.versions/."""

from __future__ import annotations

import datetime
import errno
import os
import pickle
import random
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import CorruptStoreError, CrewTrainingHandler, StoreVersionError, StoreWriteError
from crewtrain_nb.demo import make_training_data
from crewtrain_nb.store import _atomic, _backups
from crewtrain_nb.store._backups import versions_dir

from .test_store import fail_with, temp_files


def saves(count: int) -> list[dict[str, Any]]:
    """``count`` different stores, one per save."""
    return [make_training_data(agents=2, iterations=n + 1, seed=n) for n in range(count)]


@pytest.mark.parametrize("keep", [1, 3])
def test_n_plus_three_saves_keep_exactly_n_previous_versions(tmp_path: Path, keep: int) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=keep)
    written = saves(keep + 3)
    sizes = []
    for data in written:
        handler.save(data)
        sizes.append(os.path.getsize(handler.file_path))
    kept = handler.versions()
    assert len(kept) == keep
    assert [version.id for version in kept] == list(range(keep + 2, 2, -1))  # newest first, ids never reused
    for offset, version in enumerate(kept):
        expected = written[-2 - offset]  # the newest version is the save before the current one
        with open(version.path, "rb") as file:
            assert pickle.load(file) == expected
        assert version.size == sizes[-2 - offset] == os.path.getsize(version.path)
        assert version.time.tzinfo == datetime.timezone.utc
        assert abs((datetime.datetime.now(datetime.timezone.utc) - version.time).total_seconds()) < 600
        assert stat.S_IMODE(os.stat(version.path).st_mode) == 0o600
    assert [v.time for v in kept] == sorted((v.time for v in kept), reverse=True)
    assert handler.load() == written[-1]
    assert stat.S_IMODE(os.stat(versions_dir(handler.file_path)).st_mode) == 0o700
    assert sorted(os.listdir(versions_dir(handler.file_path))) == [
        f"{version.id:06d}-training_data.pkl" for version in reversed(kept)
    ]


def test_backups_zero_keeps_nothing(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl")
    for data in saves(3):
        handler.save(data)
    assert handler.versions() == []
    assert not os.path.exists(versions_dir(handler.file_path))


def test_every_append_is_one_version_and_a_batch_is_one(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=10)
    handler.append(0, "a", {"x": 0})  # first write: nothing to keep yet
    handler.append(1, "a", {"x": 1})
    handler.save_trained_data("Writer", {"quality": 1.0})
    assert len(handler.versions()) == 2
    with handler.batch():
        for iteration in range(2, 50):
            handler.append(iteration, "a", {"x": iteration})
    kept = handler.versions()
    assert len(kept) == 3
    with open(kept[0].path, "rb") as file:
        assert pickle.load(file) == {"a": {0: {"x": 0}, 1: {"x": 1}}, "Writer": {"quality": 1.0}}


def test_versions_of_a_crewai_file_are_owner_only_and_the_store_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "training_data.pkl"
    with open(path, "wb") as file:
        pickle.dump({"a": {0: {"x": 0}}}, file)  # as CrewAI writes it
    os.chmod(path, 0o644)
    handler = CrewTrainingHandler(path, backups=2)
    handler.append(1, "a", {"x": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    (version,) = handler.versions()
    assert stat.S_IMODE(os.stat(version.path).st_mode) == 0o600
    with open(version.path, "rb") as file:
        assert pickle.load(file) == {"a": {0: {"x": 0}}}


def test_restore_brings_back_a_version_byte_for_byte_and_keeps_the_current(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl.gz", backups=3)
    written = saves(4)
    for data in written:
        handler.save(data)
    before = Path(handler.file_path).read_bytes()
    oldest = handler.versions()[-1]
    oldest_bytes = Path(oldest.path).read_bytes()
    handler.restore(oldest.id)
    assert Path(handler.file_path).read_bytes() == oldest_bytes
    assert handler.load() == written[0]
    newest = handler.versions()[0]
    assert Path(newest.path).read_bytes() == before  # the replaced current file is itself a version
    assert len(handler.versions()) == 3
    handler.restore(str(newest.id))  # undo the restore, by id text
    assert handler.load() == written[-1]
    assert temp_files(tmp_path) == []


def test_restore_with_backups_zero_still_keeps_the_replaced_file(tmp_path: Path) -> None:
    path = tmp_path / "training_data.pkl"
    writer = CrewTrainingHandler(path, backups=1)
    writer.save({"v": 1})
    writer.save({"v": 2})
    handler = CrewTrainingHandler(path)  # backups=0
    handler.restore(handler.versions()[0])
    assert handler.load() == {"v": 1}
    assert [pickle.loads(Path(v.path).read_bytes()) for v in handler.versions()] == [{"v": 2}, {"v": 1}]


def test_unknown_version_lists_what_exists(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=2)
    for data in saves(4):
        handler.save(data)
    before = Path(handler.file_path).read_bytes()
    for missing in (99, "nope", 0, True):
        with pytest.raises(StoreVersionError, match="versions kept are: 3, 2") as caught:
            handler.restore(missing)  # type: ignore[arg-type]
        assert handler.file_path in str(caught.value) and isinstance(caught.value, LookupError)
    with pytest.raises(StoreVersionError, match="versions kept are: none"):
        CrewTrainingHandler(tmp_path / "other.pkl").restore(1)
    assert Path(handler.file_path).read_bytes() == before


def test_a_corrupt_version_is_not_restored(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=2)
    for data in saves(3):
        handler.save(data)
    before = Path(handler.file_path).read_bytes()
    version = handler.versions()[0]
    Path(version.path).write_bytes(Path(version.path).read_bytes()[:-10])
    with pytest.raises(CorruptStoreError) as caught:
        handler.restore(version.id)
    assert version.path in str(caught.value)
    assert Path(handler.file_path).read_bytes() == before
    assert len(handler.versions()) == 2


def test_restore_inside_batch_is_refused(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=2)
    handler.save({"v": 1})
    handler.save({"v": 2})
    with pytest.raises(RuntimeError, match="batch"), handler.batch():
        handler.restore(1)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_backups_must_be_a_count(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="backups"):
        CrewTrainingHandler(tmp_path / "x.pkl", backups=bad)


# -- faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        # os.link fails and so does the copy fallback: the version cannot be made at all
        pytest.param({(_backups.os, "link"): errno.EIO, (_backups.os, "write"): errno.ENOSPC}, id="rotation"),
        # the version was made, then replacing the store fails: the new version is discarded
        pytest.param({(_atomic.os, "replace"): errno.EIO}, id="replace-after-rotation"),
    ],
)
def test_a_failing_save_leaves_the_store_and_its_versions_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: dict[tuple[Any, str], int]
) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=3)
    for data in saves(2):
        handler.save(data)
    before = Path(handler.file_path).read_bytes()
    versions_before = handler.versions()
    with monkeypatch.context() as patch:
        for (module, name), code in failure.items():
            patch.setattr(module, name, fail_with(code))
        with pytest.raises(StoreWriteError, match=os.strerror(max(failure.values()))):
            handler.append(9, "new", {"x": 1})
    assert Path(handler.file_path).read_bytes() == before
    assert handler.versions() == versions_before
    assert os.listdir(versions_dir(handler.file_path)) == [os.path.basename(versions_before[0].path)]
    assert temp_files(tmp_path) == []
    handler.append(9, "new", {"x": 1})  # and the handler carries on
    assert len(handler.versions()) == 2


def test_without_hard_links_versions_are_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=2)
    handler.save({"v": 1})
    first_written = os.stat(handler.file_path).st_mtime_ns
    monkeypatch.setattr(_backups.os, "link", fail_with(errno.EPERM))
    handler.save({"v": 2})
    (version,) = handler.versions()
    assert pickle.loads(Path(version.path).read_bytes()) == {"v": 1}
    assert os.stat(version.path).st_nlink == 1
    assert os.stat(version.path).st_mtime_ns == first_written
    assert stat.S_IMODE(os.stat(version.path).st_mode) == 0o600
    assert [name for name in os.listdir(versions_dir(handler.file_path)) if "partial" in name] == []


def test_copies_go_through_the_one_atomic_writer_and_a_dead_copys_leftovers_are_swept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", backups=3)
    handler.save({"v": 1})
    folder = versions_dir(handler.file_path)
    monkeypatch.setattr(_backups.os, "link", fail_with(errno.EPERM))
    written: list[str] = []
    real = _atomic.write_atomic

    def counting(path: str, payload: bytes, **options: Any) -> Any:
        written.append(path)
        return real(path, payload, **options)

    monkeypatch.setattr(_backups, "write_atomic", counting)
    handler.save({"v": 2})
    (version,) = handler.versions()
    assert written == [version.path]
    # What a copy killed mid-way leaves (write_atomic's temporary name; .partial from older releases) is
    # removed by the next rotation, under the store's lock; the versions themselves stay.
    leftovers = [_atomic.temp_prefix(version.path) + "0123abcd.tmp", "000009-training_data.pkl.partial"]
    for name in leftovers:
        Path(folder, name).write_bytes(b"half a copy")
    handler.save({"v": 3})
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(item.path) for item in handler.versions())
    assert [pickle.loads(Path(item.path).read_bytes()) for item in handler.versions()] == [{"v": 2}, {"v": 1}]


CHILD = """
import sys
from crewtrain_nb import CrewTrainingHandler
handler = CrewTrainingHandler(sys.argv[1], backups=2)
for iteration in range(int(sys.argv[2]), 10**6):
    handler.append(iteration, "agent", {"value": iteration, "text": "x" * 300})
    print("ack", iteration, flush=True)
"""


def test_kill_minus_nine_during_rotation_never_loses_the_store(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "training_data.pkl"
    acknowledged: set[int] = set()
    start = 0
    for _ in range(10):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        first = child.stdout.readline()
        assert first.startswith("ack"), child.stderr.read() if child.stderr else first
        acknowledged.add(int(first.split()[1]))
        time.sleep(rng.uniform(0.0, 0.05))
        child.kill()
        out, _ = child.communicate()
        acknowledged.update(int(line.split()[1]) for line in out.splitlines() if line.startswith("ack "))
        stored = CrewTrainingHandler(path).load()["agent"]
        assert acknowledged <= set(stored)
        kept = CrewTrainingHandler(path).versions()
        assert 1 <= len(kept) <= 3  # at worst one extra version
        for version in kept:  # every version is a whole store, older or (killed before the replace) equal
            with open(version.path, "rb") as file:
                assert set(pickle.load(file)["agent"]) <= set(stored)
        start = max(stored) + 1
    handler = CrewTrainingHandler(path, backups=2)
    handler.append(start, "agent", {})
    assert len(handler.versions()) == 2
    assert temp_files(tmp_path) == []
