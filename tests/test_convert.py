"""pickle <-> SQLite conversion (store/_convert.py): lossless both ways, no overwrite unless asked, bad arguments."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from crewtrain_nb import (
    CrewTrainingHandler,
    SQLiteHandler,
    StoreError,
    StoreFormatError,
    UnsafePickleError,
    convert,
)
from crewtrain_nb.demo import make_trained_agents_data, make_training_data

from .test_sqlite import assert_same_store
from .test_unpickle import Exploit


def test_convert_pkl_to_db_to_pkl_is_lossless(tmp_path: Path) -> None:
    data = make_training_data(agents=3, iterations=20, seed=3)
    agent = next(iter(data))
    assert any("improved_output" not in record for record in data[agent].values())
    data[agent][5]["embedding"] = np.linspace(0, 1, 7, dtype=np.float32)
    data["metrics"] = {9: {"loss": 0.5, "weights": np.arange(6).reshape(2, 3)}, 2: {"loss": 0.7}}
    data.update(make_trained_agents_data(seed=3))
    CrewTrainingHandler(tmp_path / "a.pkl").save(data)
    db = convert(tmp_path / "a.pkl", tmp_path / "a.db")
    assert db == str(tmp_path / "a.db") and type(CrewTrainingHandler(db)) is SQLiteHandler
    assert_same_store(CrewTrainingHandler(db).load(), data)
    convert(tmp_path / "a.db", tmp_path / "back.pkl")
    with open(tmp_path / "back.pkl", "rb") as file:
        assert_same_store(pickle.load(file), data)  # a plain pickle again, as CrewAI reads it


def test_convert_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    CrewTrainingHandler(tmp_path / "a.pkl").save({"a": {0: 1}})
    CrewTrainingHandler(tmp_path / "b.db").save({"b": {0: 2}})
    with pytest.raises(StoreError, match="b.db: already exists; .*overwrite=True"):
        convert(tmp_path / "a.pkl", tmp_path / "b.db")
    assert CrewTrainingHandler(tmp_path / "b.db").load() == {"b": {0: 2}}
    convert(tmp_path / "a.pkl", tmp_path / "b.db", overwrite=True)
    assert CrewTrainingHandler(tmp_path / "b.db").load() == {"a": {0: 1}}


def test_convert_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store file"):
        convert(tmp_path / "missing.pkl", tmp_path / "x.db")
    CrewTrainingHandler(tmp_path / "a.pkl").save({"a": {0: 1}})
    with pytest.raises(StoreError, match="same file"):
        convert(tmp_path / "a.pkl", tmp_path / "a.pkl", overwrite=True)
    crewai_list = tmp_path / "list.pkl"
    with open(crewai_list, "wb") as file:
        pickle.dump([1, 2], file)
    with pytest.raises(StoreFormatError, match="not a list"):
        convert(crewai_list, tmp_path / "list.db")
    unsafe = tmp_path / "unsafe.pkl"
    with open(unsafe, "wb") as file:
        pickle.dump({"a": {0: Exploit(os.system, "true")}}, file)
    with pytest.raises(UnsafePickleError):
        convert(unsafe, tmp_path / "unsafe.db")
    assert not (tmp_path / "unsafe.db").exists()
