"""What a source is (store/_source.py): open_source of handlers, paths and dicts; open_view of a pickle handler."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import (
    CrewTrainingHandler,
    StoreError,
    UnsafePickleError,
)

from .test_store import crewai_dump
from .test_unpickle import Exploit


def test_open_source_accepts_handlers_paths_and_dicts(training_store: CrewTrainingHandler, tmp_path: Path) -> None:
    from crewtrain_nb.store import open_source

    expected = training_store.load()
    assert open_source(training_store) == (expected, training_store.file_path)
    assert open_source(training_store.file_path) == (expected, training_store.file_path)
    assert open_source(Path(training_store.file_path))[0] == expected
    assert open_source(expected) == (expected, None)
    with pytest.raises(StoreError, match="no such file: "):
        open_source(tmp_path / "typo.pkl")
    with pytest.raises(TypeError, match="source must be"):
        open_source([1, 2])
    unsafe = tmp_path / "unsafe.pkl"
    crewai_dump(unsafe, {"a": {0: Exploit(os.system, "true")}})
    with pytest.raises(UnsafePickleError):
        open_source(unsafe)


def test_open_view_of_a_pickle_handler_changes_after_its_own_appends(
    training_store: CrewTrainingHandler, training_data: dict[str, Any]
) -> None:

    from crewtrain_nb.store import open_view

    view, path = open_view(training_store)
    assert path == training_store.file_path and dict(view) == training_data
    assert open_view(training_store)[0] is view  # unchanged file: the same view, nothing re-read
    with pytest.raises(TypeError):
        view["new-agent"] = {}  # type: ignore[index]  # read-only
    agent = next(iter(training_data))
    training_store.append(99, agent, {"initial_output": "x", "human_feedback": "y"})
    again, _ = open_view(training_store)
    assert again is not view and 99 in again[agent]
