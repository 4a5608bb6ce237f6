"""Stores behind fsspec URLs (memory://) and file:// URLs."""

from __future__ import annotations

import os
import pickle
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from crewtrain_nb import (
    CorruptStoreError,
    CrewTrainingHandler,
    DecryptionError,
    RemoteStoreWarning,
    StoreError,
    StoreWriteError,
    UnsafePickleError,
    verify_audit,
)
from crewtrain_nb.store import as_handler, open_source
from crewtrain_nb.store._codec import ENCRYPTED_MAGIC

from .test_unpickle import hostile_payloads

MEMORY = fsspec.filesystem("memory")


@pytest.fixture
def root() -> Iterator[str]:
    """A fresh folder in fsspec's process-wide memory filesystem, removed afterwards."""
    folder = f"/crewtrain-test-{uuid.uuid4().hex}"
    MEMORY.mkdir(folder)
    yield folder
    MEMORY.rm(folder, recursive=True)


def remote(url: str, **options: Any) -> CrewTrainingHandler:
    with pytest.warns(RemoteStoreWarning, match="atomic replacement and cross-process locking are not guaranteed"):
        return CrewTrainingHandler(url, **options)


def test_memory_round_trip(root: str, training_data: dict[str, Any], trained_data: dict[str, Any]) -> None:
    handler = remote(f"memory://{root}/training_data")  # one warning, at construction
    assert handler.file_path == f"memory://{root}/training_data.pkl"
    assert handler.load() == {}
    handler.initialize_file()
    for agent, records in training_data.items():
        for iteration, record in records.items():
            handler.append(iteration, agent, record)
    assert handler.load() == training_data
    assert pickle.loads(MEMORY.cat(f"{root}/training_data.pkl")) == training_data  # a plain pickle
    loaded = handler.load()
    loaded.clear()
    assert handler.load() == training_data  # copies, as for local files
    handler.save(trained_data)
    assert remote(f"memory://{root}/training_data.pkl").load() == trained_data
    handler.save_trained_data("Editor", {"suggestions": [], "quality": 5.0, "final_summary": ""})
    assert set(handler.load()) == set(trained_data) | {"Editor"}
    with handler.batch():
        for iteration in range(20):
            handler.append(iteration, "agent-x", {"loss": iteration})
        assert handler.load()["agent-x"][19] == {"loss": 19}
    assert sorted(handler.load()["agent-x"]) == list(range(20))
    handler.clear()
    assert handler.load() == {}
    assert [entry["name"] for entry in MEMORY.ls(root)] == [f"{root}/training_data.pkl"]  # no temp files


def test_a_failing_batch_writes_nothing(root: str) -> None:
    handler = remote(f"memory://{root}/t.pkl")
    handler.append(0, "a", {"x": 0})
    with pytest.raises(KeyError), handler.batch():
        handler.append(1, "a", {"x": 1})
        raise KeyError("stop")
    assert handler.load() == {"a": {0: {"x": 0}}}


def test_threads_writing_one_url_lose_nothing(root: str) -> None:
    handlers = [remote(f"memory://{root}/t.pkl") for _ in range(4)]

    def work(number: int) -> None:
        for iteration in range(25):
            handlers[number].append(iteration, f"agent-{number}", {"x": iteration})

    threads = [threading.Thread(target=work, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = handlers[0].load()
    assert {agent: sorted(records) for agent, records in stored.items()} == {
        f"agent-{n}": list(range(25)) for n in range(4)
    }


def test_compressed_and_encrypted_remote_store(root: str, training_data: dict[str, Any]) -> None:
    key = os.urandom(32)
    handler = remote(f"memory://{root}/secret.pkl.xz", key=key)
    handler.save(training_data)
    assert MEMORY.cat(f"{root}/secret.pkl.xz").startswith(ENCRYPTED_MAGIC)
    assert remote(f"memory://{root}/secret.pkl.xz", key=key).load() == training_data
    with pytest.raises(DecryptionError):
        remote(f"memory://{root}/secret.pkl.xz", key=os.urandom(32)).load()


def test_safe_loading_applies_to_remote_files(root: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    MEMORY.pipe(f"{root}/evil.pkl", pickle.dumps({"a": {0: hostile_payloads(marker)["os.system"]}}))
    handler = remote(f"memory://{root}/evil.pkl")
    with pytest.raises(UnsafePickleError, match=f"memory://{root}/evil.pkl"):
        handler.load()
    with pytest.raises(UnsafePickleError):
        handler.append(1, "a", {})
    assert not marker.exists()
    MEMORY.pipe(f"{root}/broken.pkl", pickle.dumps({"a": 1})[:-3])
    with pytest.raises(CorruptStoreError, match=f"memory://{root}/broken.pkl"):
        remote(f"memory://{root}/broken.pkl").load()


def test_a_failing_remote_write_is_a_clear_error(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = remote(f"memory://{root}/t.pkl")
    handler.append(0, "a", {"x": 0})

    def failing(*args: Any, **kwargs: Any) -> None:
        raise OSError("the bucket said no")

    monkeypatch.setattr(type(MEMORY), "mv", failing)
    with pytest.raises(StoreWriteError, match="the bucket said no"):
        handler.append(1, "a", {"x": 1})
    monkeypatch.undo()
    assert handler.load() == {"a": {0: {"x": 0}}}
    assert [entry["name"] for entry in MEMORY.ls(root)] == [f"{root}/t.pkl"]


def test_remote_stores_refuse_backups_and_audit(root: str) -> None:
    for options in ({"backups": 2}, {"audit": True}):
        with pytest.raises(ValueError, match="need a local file"):
            CrewTrainingHandler(f"memory://{root}/t.pkl", **options)


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="nosuchfs://bucket/t.pkl: no usable fsspec filesystem"):
        CrewTrainingHandler("nosuchfs://bucket/t.pkl")


def test_missing_fsspec_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(ImportError, match=r"crewtrain-nb\[remote\]"):
        CrewTrainingHandler("memory://somewhere/t.pkl")


def test_open_source_and_as_handler_accept_urls(root: str, training_data: dict[str, Any]) -> None:
    remote(f"memory://{root}/t.pkl").save(training_data)
    with pytest.warns(RemoteStoreWarning):
        data, path = open_source(f"memory://{root}/t.pkl")
    assert (data, path) == (training_data, f"memory://{root}/t.pkl")
    with pytest.warns(RemoteStoreWarning):
        reader = as_handler(f"memory://{root}/t.pkl")
    assert reader.load() == training_data
    with pytest.raises(StoreError, match="no such file: "):
        open_source(f"memory://{root}/missing.pkl")


# -- file:// ------------------------------------------------------------------------


def test_file_urls_are_local_paths_with_every_guarantee(tmp_path: Path, training_data: dict[str, Any]) -> None:
    url = (tmp_path / "training_data.pkl").as_uri()
    handler = CrewTrainingHandler(url, backups=1, audit=True)  # no warning: it is local
    assert handler.file_path == str(tmp_path / "training_data.pkl")
    handler.save(training_data)
    handler.append(99, "agent-new", {"x": 1})
    assert os.path.exists(handler.lock_path)
    assert len(handler.versions()) == 1
    assert verify_audit(handler.file_path).ok
    assert open_source(url) == (handler.load(), str(tmp_path / "training_data.pkl"))
    assert CrewTrainingHandler("file://localhost" + str(tmp_path / "x.pkl")).file_path == str(tmp_path / "x.pkl")
    spaced = CrewTrainingHandler((tmp_path / "with space.pkl").as_uri())
    assert spaced.file_path == str(tmp_path / "with space.pkl")


def test_file_url_of_another_host_is_refused() -> None:
    with pytest.raises(ValueError, match="must name a local path"):
        CrewTrainingHandler("file://otherhost/data/t.pkl")


def test_frames_read_a_memory_url(root: str, training_data: dict[str, Any]) -> None:
    from crewtrain_nb import feedback_frame

    remote(f"memory://{root}/t.pkl").save(training_data)
    with pytest.warns(RemoteStoreWarning):
        frame = feedback_frame(f"memory://{root}/t.pkl")
    assert len(frame) == sum(len(records) for records in training_data.values())
