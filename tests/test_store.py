"""The store core: CrewAI compatibility, atomic saves, locking, caching, safe loading."""

from __future__ import annotations

import collections
import datetime
import decimal
import errno
import os
import pickle
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crewtrain_nb
from crewtrain_nb import (
    CorruptStoreError,
    CrewTrainingHandler,
    OpaqueObject,
    PickleHandler,
    StoreError,
    StoreFormatError,
    StoreLockTimeout,
    StoreWriteError,
    UnsafePickleError,
)
from crewtrain_nb.store import _atomic
from crewtrain_nb.store import _pickle_file as pickle_file_module

WORKERS = str(Path(__file__).with_name("workers.py"))


def crewai_dump(path: Path, data: Any) -> None:
    """What CrewAI's own ``PickleHandler.save`` does: ``pickle.dump`` in ``"wb"`` mode."""
    with open(path, "wb") as file:
        pickle.dump(data, file)


def temp_files(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


# -- paths ----------------------------------------------------------------------


def test_pkl_suffix_is_added_like_crewai(tmp_path: Path) -> None:
    assert CrewTrainingHandler(tmp_path / "training_data").file_path == str(tmp_path / "training_data.pkl")
    assert CrewTrainingHandler(tmp_path / "x.pkl").file_path == str(tmp_path / "x.pkl")
    assert CrewTrainingHandler(str(tmp_path / "x.json")).file_path == str(tmp_path / "x.json.pkl")


def test_relative_name_resolves_against_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    handler = CrewTrainingHandler("trained_agents_data.pkl")
    assert handler.file_path == str(tmp_path / "trained_agents_data.pkl")
    assert os.path.isabs(handler.file_path)


@pytest.mark.parametrize("bad", [b"x.pkl", 3, None])
def test_file_name_of_wrong_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="file_name"):
        CrewTrainingHandler(bad)  # type: ignore[arg-type]


def test_empty_file_name_is_refused() -> None:
    with pytest.raises(ValueError, match="file_name is empty"):
        CrewTrainingHandler("")


# -- compatibility --------------------------------------------------------------


def test_what_we_write_loads_with_plain_pickle(tmp_path: Path, training_data: dict[str, Any]) -> None:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl")
    for agent, records in training_data.items():
        for iteration, record in records.items():
            handler.append(iteration, agent, record)
    with open(handler.file_path, "rb") as file:
        assert pickle.load(file) == training_data
    with open(handler.file_path, "rb") as file:
        assert file.read(2) == b"\x80\x04"  # protocol 4, like CrewAI


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_files_written_by_crewais_algorithm_load(
    tmp_path: Path, training_data: dict[str, Any], trained_data: dict[str, Any], protocol: int
) -> None:
    for name, data in (("training_data.pkl", training_data), ("trained_agents_data.pkl", trained_data)):
        path = tmp_path / name
        with open(path, "wb") as file:
            pickle.dump(data, file, protocol=protocol)
        assert CrewTrainingHandler(path).load() == data


def test_crewai_empty_store_after_failed_train_loads(tmp_path: Path) -> None:
    path = tmp_path / "training_data.pkl"
    crewai_dump(path, {})  # CrewAI 1.x writes this 5-byte pickle when train() fails
    assert path.stat().st_size == 5
    assert CrewTrainingHandler(path).load() == {}


def test_append_save_trained_data_clear_behave_as_crewai(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.pkl")
    handler.initialize_file()
    assert handler.load() == {}
    handler.append(0, "a", {"initial_output": "x", "human_feedback": "y"})
    handler.append(1, "a", {"initial_output": "x2", "human_feedback": "y2", "improved_output": "z2"})
    handler.append(0, "a", {"initial_output": "x3", "human_feedback": "y3"})  # same iteration replaces
    handler.append(0, "b", {"initial_output": "q", "human_feedback": "r"})
    handler.save_trained_data("Writer", {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"})
    assert handler.load() == {
        "a": {
            0: {"initial_output": "x3", "human_feedback": "y3"},
            1: {"initial_output": "x2", "human_feedback": "y2", "improved_output": "z2"},
        },
        "b": {0: {"initial_output": "q", "human_feedback": "r"}},
        "Writer": {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"},
    }
    handler.clear()
    assert handler.load() == {}
    with open(handler.file_path, "rb") as file:
        assert pickle.load(file) == {}


def test_pickle_handler_saves_any_picklable_object(tmp_path: Path) -> None:
    handler = PickleHandler(tmp_path / "any")
    handler.save([1, 2, {"a": (3, 4)}])
    assert handler.load() == [1, 2, {"a": (3, 4)}]


# -- load: missing, empty, corrupt -----------------------------------------------


def test_missing_and_empty_files_load_as_empty_dict(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "missing.pkl")
    assert handler.load() == {}
    assert not os.path.exists(handler.file_path)  # reading creates nothing
    (tmp_path / "empty.pkl").write_bytes(b"")
    assert CrewTrainingHandler(tmp_path / "empty.pkl").load() == {}


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda blob: blob[: len(blob) // 2], id="truncated-half"),
        pytest.param(lambda blob: blob[:-1], id="truncated-stop"),
        pytest.param(lambda blob: blob + b"garbage", id="trailing-bytes"),
        pytest.param(lambda blob: b"not a pickle at all", id="text"),
        pytest.param(lambda blob: b"\x80\x04" + bytes(range(256)) * 4, id="random"),
    ],
)
def test_corrupt_file_raises_and_is_never_overwritten(
    tmp_path: Path, training_data: dict[str, Any], damage: Any
) -> None:
    path = tmp_path / "training_data.pkl"
    path.write_bytes(damage(pickle.dumps(training_data, protocol=4)))
    before = path.read_bytes()
    handler = CrewTrainingHandler(path)
    with pytest.raises(CorruptStoreError) as caught:
        handler.load()
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    with pytest.raises(CorruptStoreError):
        handler.append(99, "new-agent", {"initial_output": "would erase the store"})
    with pytest.raises(CorruptStoreError):
        handler.save_trained_data("Writer", {"quality": 1.0})
    assert path.read_bytes() == before


def test_appending_to_a_non_dict_store_says_so(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    crewai_dump(path, [1, 2, 3])
    before = path.read_bytes()
    with pytest.raises(StoreFormatError, match="holds a list"):
        CrewTrainingHandler(path).append(0, "a", {})
    assert path.read_bytes() == before


def test_appending_into_a_trained_agents_entry_that_is_not_a_dict(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "x.pkl")
    handler.save({"Writer": ["not", "iterations"]})
    with pytest.raises(StoreFormatError, match="'Writer' holds a list"):
        handler.append(0, "Writer", {})


def test_directory_in_place_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "store.pkl").mkdir()
    with pytest.raises(StoreError, match="store.pkl"):
        CrewTrainingHandler(tmp_path / "store.pkl").load()


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "no" / "such" / "dir" / "t.pkl")
    with pytest.raises(StoreWriteError, match="does not exist; create it first"):
        handler.append(0, "a", {})


# -- safe loading -------------------------------------------------------------------


def plain_values() -> dict[str, Any]:
    return {
        "dict": {"a": 1},
        "list": [1, 2.5, "x"],
        "tuple": (1, (2, 3)),
        "set": {1, 2},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"ab"),
        "complex": 1 + 2j,
        "bool": True,
        "none": None,
        "big": 2**100,
        "nan-free float": 1e-300,
        "datetime": datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.timezone.utc),
        "naive": datetime.datetime(2026, 1, 1, 1, 2, 3, 4),
        "date": datetime.date(2026, 11, 24),
        "time": datetime.time(12, 30),
        "timedelta": datetime.timedelta(seconds=90),
        "tz": datetime.timezone(datetime.timedelta(hours=2), "CEST"),
        "decimal": decimal.Decimal("1.10"),
        "uuid": uuid.UUID(int=12345),
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
    }


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_loading_accepts_every_plain_type(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "plain.pkl"
    crewai_dump(path, None)
    with open(path, "wb") as file:
        pickle.dump(plain_values(), file, protocol=protocol)
    loaded = PickleHandler(path).load()
    assert loaded == plain_values()
    assert type(loaded["ordered"]) is collections.OrderedDict


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_loading_accepts_numpy(tmp_path: Path, protocol: int) -> None:
    values = {
        "floats": np.linspace(0, 1, 5),
        "ints": np.arange(6, dtype=np.int32).reshape(2, 3),
        "objects": np.array([1, "x", None], dtype=object),
        "structured": np.zeros(2, dtype=[("x", "i4"), ("y", "f8")]),
        "scalar": np.float32(1.5),
        "int scalar": np.int64(7),
        "dtype": np.dtype("datetime64[ns]"),
    }
    path = tmp_path / "numpy.pkl"
    with open(path, "wb") as file:
        pickle.dump(values, file, protocol=protocol)
    loaded = PickleHandler(path).load()
    for key, value in values.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype
        else:
            assert loaded[key] == value and type(loaded[key]) is type(value)



def numpy_scalar_records(count: int) -> dict[str, dict[int, dict[str, Any]]]:
    """ML-style records whose metrics are numpy scalars, as ``np.mean(...)`` and ``x.sum()`` return them."""
    rng = np.random.default_rng(7)
    return {
        f"agent-{agent}": {
            step: {
                "loss": np.float64(rng.random()),
                "accuracy": np.float32(rng.random()),
                "step": np.int64(step),
                "done": np.bool_(step % 2),
                "when": np.datetime64(1_700_000_000 + step, "s"),
            }
            for step in range(count)
        }
        for agent in range(3)
    }


@pytest.fixture
def checked_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many loads went to the pure-Python checked unpickler."""
    from crewtrain_nb.store import _unpickle

    made: list[int] = []
    original = _unpickle._CheckedUnpickler.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(_unpickle._CheckedUnpickler, "__init__", counting)
    return made


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_numpy_scalars_load_with_the_c_unpickler(checked_loads: list[int], protocol: int) -> None:
    from crewtrain_nb.store import safe_loads

    blob = pickle.dumps(numpy_scalar_records(50), protocol=protocol)
    loaded, reference = safe_loads(blob, path="scalars.pkl"), pickle.loads(blob)
    assert checked_loads == []  # dtypes and scalars were checked by the stand-ins the C unpickler called
    assert repr(loaded) == repr(reference)
    for agent, entry in reference.items():
        for step, record in entry.items():
            for key, value in record.items():
                assert type(loaded[agent][step][key]) is type(value) and loaded[agent][step][key] == value


def plain_array_layouts() -> dict[str, Any]:
    """Arrays of every plain (not object, not structured) layout numpy pickles, some nested, one shared."""
    from .test_hostile_pickles import numpy_layouts

    plain = {
        name: value
        for name, value in numpy_layouts().items()
        if isinstance(value, np.ndarray) and not value.dtype.hasobject and value.dtype.names is None
    }
    shared = np.arange(4, dtype=np.int16)
    return {
        **plain,
        "float": np.linspace(0, 1, 5),
        "bool": np.array([True, False]),
        "0-d": np.array(2.5),
        "in a list": [np.arange(2), {"nested": np.ones((2, 2), dtype=np.float32)}],
        "shared": [shared, shared],
    }


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_plain_arrays_load_with_the_c_unpickler(checked_loads: list[int], protocol: int) -> None:
    from crewtrain_nb.store import safe_loads

    blob = pickle.dumps(plain_array_layouts(), protocol=protocol)
    loaded, reference = safe_loads(blob, path="arrays.pkl"), pickle.loads(blob)
    assert checked_loads == []  # filled through fill_array's checks, put in place of the C unpickler's placeholders
    assert fingerprint(loaded) == fingerprint(reference)
    assert loaded["shared"][0] is loaded["shared"][1]  # one array, as in the file's memo


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(np.dtype("f8"), id="a bare dtype"),
        pytest.param({"loss": np.float64(0.5), "dtype": np.dtype(">i4")}, id="a dtype beside a scalar"),
        pytest.param([np.float64(1.0), np.dtype("f8"), np.dtype("f8")], id="a dtype shared"),
        pytest.param({"point": np.zeros(1, dtype=[("x", "f8"), ("y", "i4")])[0]}, id="a structured scalar"),
        pytest.param({"pair": (np.arange(3.0), 1)}, id="an array in a tuple"),
        pytest.param({"objects": np.array([1, "x", None], dtype=object)}, id="an array of objects"),
        pytest.param({"rows": np.zeros(2, dtype=[("x", "f8"), ("y", "i4")])}, id="a structured array"),
    ],
)
def test_numpy_the_c_unpickler_does_not_build_loads_with_the_checks(checked_loads: list[int], value: Any) -> None:
    from crewtrain_nb.store import safe_loads

    blob = pickle.dumps(value, protocol=4)
    loaded = safe_loads(blob, path="numpy.pkl")
    assert checked_loads == [1]  # the C unpickler's dtype placeholder was kept in the data, or the dtype is not plain
    assert fingerprint(loaded) == fingerprint(value)  # real numpy objects, equal to what was saved
    if isinstance(value, list):
        assert loaded[1] is loaded[2]  # the memo still shares one dtype


def test_build_on_a_numpy_stand_in_is_refused(checked_loads: list[int]) -> None:
    from crewtrain_nb.store import safe_loads

    # GLOBAL numpy dtype; {"x": 1}; BUILD: would set attributes on what find_class returned.
    blob = b"\x80\x04cnumpy\ndtype\n}\x8c\x01x\x94K\x01sb."
    with pytest.raises(UnsafePickleError, match="BUILD on a class or function"):
        safe_loads(blob, path="stand-in.pkl")
    assert checked_loads == [1]


def numpy_scalar_variants() -> dict[str, bytes]:
    """``np.float64(0.5)`` pickled (protocol 3: no frames to keep whole), and crafted variants of it."""
    blob = pickle.dumps(np.float64(0.5), protocol=3)
    state = b"(K\x03X\x01\x00\x00\x00<q\x05NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x06b"
    data = b"C\x08\x00\x00\x00\x00\x00\x00\xe0?"
    assert state in blob and data in blob and b"X\x02\x00\x00\x00f8q\x02\x89\x88\x87" in blob
    return {
        "as numpy writes it": blob,
        "dtype without copy=True": blob.replace(b"f8q\x02\x89\x88", b"f8q\x02\x89\x89"),
        "a dtype code numpy reads but never writes": blob.replace(b"X\x02\x00\x00\x00f8", b"X\x02\x00\x00\x00>f"),
        "scalar bytes shorter than the dtype": blob.replace(data, b"C\x04\x00\x00\xe0?"),
        "a dtype filled twice": blob.replace(state, state + state[:-1] + b"b"),
        "a dtype state of the wrong version": blob.replace(b"(K\x03X", b"(K\x07X"),
        "a structured dtype state": blob.replace(b"q\x05NNN", b"q\x05N)}"),
        "the scalar given no dtype": blob.replace(b"\x86q\x08R", b"\x85q\x08R"),
        "a dtype left unfilled": blob.replace(state, b""),
    }


def numpy_array_variants() -> dict[str, bytes]:
    """``np.arange(2.0)`` pickled (protocol 3), and crafted variants of it."""
    blob = pickle.dumps(np.arange(2.0), protocol=3)
    template = b"K\x00\x85q\x02C\x01bq\x03\x87"
    dtype_state = b"(K\x03X\x01\x00\x00\x00<q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb"
    data = b"C\x10" + bytes(8) + b"\x00\x00\x00\x00\x00\x00\xf0?"
    state = blob[blob.index(b"Rq\x05") + 3 : -1]  # (1, (2,), dtype, False, data) BUILD
    assert template in blob and dtype_state in blob and data in blob and state.endswith(b"b")
    return {
        "as numpy writes it": blob,
        "a template of another shape": blob.replace(b"K\x00\x85q\x02", b"K\x05\x85q\x02"),
        "a template of another type code": blob.replace(b"C\x01bq\x03", b"C\x01cq\x03"),
        "data shorter than the shape": blob.replace(data, b"C\x08" + bytes(8)),
        "a shape far larger than the data": blob.replace(b"K\x01K\x02\x85", b"K\x01J\xff\xff\xff\x7f\x85"),
        "an array filled twice": blob[:-1] + state + b".",
        "an array never filled": blob[: blob.index(b"Rq\x05") + 3] + b".",
        "a state of the wrong version": blob.replace(b"(K\x01K\x02", b"(K\x02K\x02"),
        "a dtype left unfilled": blob.replace(dtype_state, b""),
        "ndarray called directly": blob.replace(b"cnumpy._core.multiarray\n_reconstruct\nq\x00", b"").replace(
            b"q\x01K\x00\x85q\x02C\x01bq\x03\x87q\x04R", b"q\x01K\x00\x85q\x02\x85q\x04R"
        ),
    }


@pytest.mark.parametrize(
    ("variants", "name"),
    [(numpy_scalar_variants, name) for name in numpy_scalar_variants()]
    + [(numpy_array_variants, name) for name in numpy_array_variants()],
    ids=lambda value: value if isinstance(value, str) else value.__name__.removeprefix("numpy_"),
)
def test_crafted_numpy_meets_the_same_checks_on_the_fast_path(variants: Any, name: str) -> None:
    # The C unpickler's numpy stand-ins refuse nothing themselves: whatever they do not build as numpy would,
    # goes to the checked unpickler, so each outcome is exactly the checked unpickler's.
    from crewtrain_nb.store import safe_loads
    from crewtrain_nb.store._unpickle import _CheckedUnpickler, _load

    data = variants()[name]

    def outcome(load: Any) -> str:
        try:
            return repr(load())
        except StoreError as exc:
            return f"{type(exc).__name__}: {exc}"

    checked = outcome(
        lambda: _load(data, "v.pkl", lambda b: _CheckedUnpickler(b, path="v.pkl", payload_size=len(data)), safe=True)
    )
    assert outcome(lambda: safe_loads(data, path="v.pkl")) == checked
    if name in ("as numpy writes it", "a dtype left unfilled", "an array never filled"):
        assert "Error" not in checked  # numpy's constructors made whole objects: an empty array, a plain dtype
    else:
        assert "Error" in checked  # every other variant is refused, one way or the other


@pytest.mark.parametrize("content", ["scalars", "arrays"])
def test_mutated_numpy_pickles_load_only_what_the_checks_accept(content: str) -> None:
    # Differential: nothing the fast path (C unpickler + numpy stand-ins) accepts is refused by the pure-Python
    # checked unpickler, and where both read the bytes they build the same value. (The two parsers differ on
    # some malformed framing, which the C one reads and the Python one calls corrupt: a parsing difference of
    # CPython's, as for any pickle without numpy, not a check skipped.) Bytes are changed in place, so the
    # pickle's frame stays whole and the changes reach the values, dtype states and opcodes.
    import pickletools
    import random

    from crewtrain_nb.store import safe_loads
    from crewtrain_nb.store._unpickle import _CheckedUnpickler, _load

    def huge_memo_index(data: bytes) -> bool:  # the known gap of test_fuzz_loader.py: not this test's subject
        try:
            return any(
                op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > 100_000
                for op, arg, _ in pickletools.genops(data)
            )
        except Exception:  # noqa: BLE001 - malformed after the change: genops stops where the loaders will
            return False

    records = numpy_scalar_records(2) if content == "scalars" else plain_array_layouts()
    base = pickle.dumps(records, protocol=4)
    rng = random.Random(2025)
    compared = refused = 0
    for _ in range(5000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(11, len(data))] = rng.randrange(256)  # after the protocol and frame headers
        if huge_memo_index(bytes(data)):
            continue
        try:
            fast = fingerprint(safe_loads(bytes(data), path="m.pkl"))
        except StoreError:
            refused += 1
            continue
        try:
            checked = _load(
                bytes(data),
                "m.pkl",
                lambda buffer: _CheckedUnpickler(buffer, path="m.pkl", payload_size=len(base)),
                safe=True,
            )
        except CorruptStoreError:
            continue  # the Python parser stops earlier on this framing; it refused nothing
        compared += 1
        assert fingerprint(checked) == fast, bytes(data).hex()
    assert compared > 300 and refused > 300  # both outcomes are well represented


def fingerprint(value: Any, _path: tuple[int, ...] = ()) -> Any:
    """What a loaded value is, down to the bytes of its arrays and scalars (repr cannot show every array).

    A crafted pickle can build a dict or list that contains itself (a memo ``GET`` of a container not yet
    finished): where a container holds one of those it sits inside, the fingerprint says how many levels up.
    """
    if isinstance(value, (dict, list, tuple)):
        if id(value) in _path:
            return "cycle", len(_path) - _path.index(id(value))
        path = (*_path, id(value))
        if isinstance(value, dict):
            return type(value).__name__, {key: fingerprint(item, path) for key, item in value.items()}
        return type(value).__name__, [fingerprint(item, path) for item in value]
    if isinstance(value, np.dtype):
        return type(value).__name__, value
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        # An object array's bytes are pointers: compare its elements instead.
        objects = array.dtype.hasobject
        content = [fingerprint(item, _path) for item in array.ravel().tolist()] if objects else array.tobytes()
        return type(value).__name__, value.dtype, value.shape, array.strides, array.flags.writeable, content
    return repr(value)


class Exploit:
    """Unpickling this calls ``func(*args)``: what a malicious file does."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func = func
        self.args = args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def hostile_payloads(marker: Path) -> dict[str, Any]:
    import builtins
    import importlib
    import posix

    touch = f"touch {marker}"
    return {
        "os.system": Exploit(os.system, touch),
        "posix.system": Exploit(posix.system, touch),
        "builtins.eval": Exploit(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": Exploit(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": Exploit(subprocess.Popen, ["touch", str(marker)]),
        "importlib.import_module": Exploit(importlib.import_module, "antigravity"),
    }


@pytest.mark.parametrize("name", sorted(hostile_payloads(Path("x"))))
@pytest.mark.parametrize("where", ["top-level", "inside-record", "dict-key-set"])
def test_hostile_pickles_are_refused_and_run_nothing(tmp_path: Path, name: str, where: str) -> None:
    marker = tmp_path / "pwned"
    payload = hostile_payloads(marker)[name]
    if where == "top-level":
        data: Any = payload
    elif where == "inside-record":
        data = {"agent": {0: {"initial_output": "fine", "human_feedback": payload}}}
    else:
        data = {"agent": {0: {"tags": [payload]}}}
    path = tmp_path / "training_data.pkl"
    with open(path, "wb") as file:
        pickle.dump(data, file, protocol=4)
    before = path.read_bytes()
    with pytest.raises(UnsafePickleError) as caught:
        CrewTrainingHandler(path).load()
    message = str(caught.value)
    assert str(path) in message and "trusted=True" in message
    assert caught.value.global_name in message
    assert caught.value.global_name.split(".")[-1] in name or caught.value.global_name == name
    assert not marker.exists()
    with pytest.raises(UnsafePickleError):
        CrewTrainingHandler(path).append(1, "agent", {})
    assert path.read_bytes() == before


def test_codecs_encode_only_for_latin1(tmp_path: Path) -> None:
    # protocol 0 pickles bytes via _codecs.encode(text, 'latin1'); other codecs are refused
    evil = b"c_codecs\nencode\n(Vabc\nVrot13\ntR."
    path = tmp_path / "c.pkl"
    path.write_bytes(evil)
    with pytest.raises(UnsafePickleError, match="rot13") as caught:
        PickleHandler(path).load()
    assert caught.value.global_name == "_codecs.encode"


class UserRecord:
    """A user's own class, like a pydantic output model stored in a CrewAI record."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserRecord) and other.text == self.text


def test_user_classes_load_as_placeholders_safely_and_as_themselves_when_trusted_or_allowed(tmp_path: Path) -> None:
    path = tmp_path / "structured.pkl"
    crewai_dump(path, {"agent": {0: {"initial_output": UserRecord("hi")}}})
    placeholder = CrewTrainingHandler(path).load()["agent"][0]["initial_output"]
    assert type(placeholder) is OpaqueObject
    assert placeholder.class_name == "tests.test_store.UserRecord" and placeholder.fields == {"text": "hi"}
    real = {"agent": {0: {"initial_output": UserRecord("hi")}}}
    assert CrewTrainingHandler(path, trusted=True).load() == real
    assert CrewTrainingHandler(path, allowed_classes=[UserRecord]).load() == real


# -- cache ----------------------------------------------------------------------------


def count_unpickles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = pickle_file_module.safe_loads

    def counting(payload: bytes, *, path: str, **options: Any) -> Any:
        calls.append(len(payload))
        return real(payload, path=path, **options)

    monkeypatch.setattr(pickle_file_module, "safe_loads", counting)
    return calls


def test_load_uses_the_cache_while_the_file_is_unchanged(
    training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_unpickles(monkeypatch)
    first = training_store.load()
    second = training_store.load()
    assert first == second
    assert len(calls) == 1
    training_store.append(50, next(iter(first)), {"initial_output": "new"})
    assert len(calls) == 1  # the append reuses the snapshot
    assert training_store.load()[next(iter(first))][50] == {"initial_output": "new"}
    assert len(calls) == 1  # ... and so does the load after our own write


def test_mutating_a_loaded_dict_never_changes_the_store(training_store: CrewTrainingHandler) -> None:
    original = training_store.load()
    mutated = training_store.load()
    agent = next(iter(mutated))
    mutated[agent][0]["human_feedback"] = "changed"
    mutated[agent][999] = {"x": 1}
    mutated["intruder"] = {}
    assert training_store.load() == original
    training_store.append(1, agent, {"initial_output": "a"})
    expected = original
    expected[agent][1] = {"initial_output": "a"}
    assert training_store.load() == expected


def test_mutating_appended_data_afterwards_is_not_stored(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.pkl")
    record = {"metrics": {"f1": 0.5}, "weights": [1.0, 2.0]}
    handler.append(0, "a", record)
    record["metrics"]["f1"] = 0.0
    record["weights"].append(3.0)
    handler.append(1, "a", {"loss": 1.0})
    assert handler.load()["a"][0] == {"metrics": {"f1": 0.5}, "weights": [1.0, 2.0]}


def test_a_change_by_another_writer_is_seen(training_store: CrewTrainingHandler, tmp_path: Path) -> None:
    training_store.load()
    crewai_dump(Path(training_store.file_path), {"other": {0: {"initial_output": "theirs"}}})
    assert training_store.load() == {"other": {0: {"initial_output": "theirs"}}}
    other = CrewTrainingHandler(training_store.file_path)
    other.append(1, "other", {"initial_output": "second"})
    assert set(training_store.load()["other"]) == {0, 1}
    training_store.append(2, "other", {"initial_output": "third"})
    assert set(other.load()["other"]) == {0, 1, 2}


def test_load_after_the_file_is_deleted_is_empty(training_store: CrewTrainingHandler) -> None:
    assert training_store.load()
    os.unlink(training_store.file_path)
    assert training_store.load() == {}


# -- argument checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iteration", "agent", "error", "match"),
    [
        (True, "a", TypeError, "train_iteration must be an int, got bool"),
        (1.0, "a", TypeError, "train_iteration must be an int, got float"),
        ("3", "a", TypeError, "train_iteration must be an int, got str"),
        (-1, "a", ValueError, "train_iteration must be >= 0, got -1"),
        # Frames, exports and SQLite keep iterations as int64; CrewAI counts from 0 one by one.
        (2**63, "a", ValueError, r"train_iteration must be at most 2\*\*63 - 1 \(an int64.*got 9223372036854775808"),
        (10**30, "a", ValueError, r"at most 2\*\*63 - 1.*got 1000000000000000000000000000000"),
        (np.uint64(2**63), "a", ValueError, r"at most 2\*\*63 - 1"),
        (0, 5, TypeError, "agent_id must be a str"),
        (0, uuid.UUID(int=1), TypeError, "agent_id must be a str"),
        (0, "", ValueError, "agent_id must be a non-empty str"),
    ],
)
@pytest.mark.parametrize("suffix", [".pkl", ".db"])  # both backends check the same way
def test_append_checks_arguments_before_writing(
    tmp_path: Path, iteration: Any, agent: Any, error: type[Exception], match: str, suffix: str
) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    with pytest.raises(error, match=match):
        handler.append(iteration, agent, {})
    assert not os.path.exists(handler.file_path)


@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_the_largest_int64_iteration_is_stored(tmp_path: Path, suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    handler.append(2**63 - 1, "a", {"loss": 1.0})
    assert handler.load() == {"a": {2**63 - 1: {"loss": 1.0}}}
    assert crewtrain_nb.to_frame(handler)["iteration"].tolist() == [2**63 - 1]


@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_numpy_integer_iteration_is_stored_as_int(tmp_path: Path, suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    handler.append(np.int64(3), "a", {})
    (key,) = handler.load()["a"]
    assert key == 3 and type(key) is int


@pytest.mark.parametrize("suffix", [".pkl", ".db"])
def test_save_trained_data_checks_agent_id(tmp_path: Path, suffix: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t{suffix}")
    with pytest.raises(TypeError, match="agent_id must be a str"):
        handler.save_trained_data(None, {})  # type: ignore[arg-type]
    assert not os.path.exists(handler.file_path)


# -- batch -------------------------------------------------------------------------------


def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    writes: list[int] = []
    real = pickle_file_module.write_atomic

    def counting(path: str, payload: bytes) -> Any:
        writes.append(len(payload))
        return real(path, payload)

    monkeypatch.setattr(pickle_file_module, "write_atomic", counting)
    return writes


def test_batch_writes_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metrics_data: dict[str, Any]) -> None:
    handler = CrewTrainingHandler(tmp_path / "m.pkl")
    writes = count_writes(monkeypatch)
    with handler.batch():
        for agent, records in metrics_data.items():
            for iteration, record in records.items():
                handler.append(iteration, agent, record)
        handler.save_trained_data("role", {"quality": 9.0})
        assert handler.load()["role"] == {"quality": 9.0}  # load inside sees the pending state
        assert not os.path.exists(handler.file_path)
    assert len(writes) == 1
    assert handler.load() == {**metrics_data, "role": {"quality": 9.0}}


def test_batch_that_raises_writes_nothing(training_store: CrewTrainingHandler) -> None:
    before = Path(training_store.file_path).read_bytes()
    original = training_store.load()
    with pytest.raises(RuntimeError, match="boom"), training_store.batch():
        training_store.append(100, "a", {"x": 1})
        training_store.clear()
        raise RuntimeError("boom")
    assert Path(training_store.file_path).read_bytes() == before
    assert training_store.load() == original


def test_nested_batch_joins_the_outer_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = CrewTrainingHandler(tmp_path / "t.pkl")
    writes = count_writes(monkeypatch)
    with handler.batch():
        handler.append(0, "a", 1)
        with handler.batch():
            handler.append(1, "a", 2)
    assert len(writes) == 1
    assert handler.load() == {"a": {0: 1, 1: 2}}


def test_empty_batch_writes_nothing(training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    writes = count_writes(monkeypatch)
    with training_store.batch():
        training_store.load()
    assert writes == []


# -- permissions ----------------------------------------------------------------------------


def test_new_files_are_owner_only_and_existing_modes_are_kept(tmp_path: Path) -> None:
    previous = os.umask(0)  # even a umask that lets everything through: stores stay private
    try:
        handler = CrewTrainingHandler(tmp_path / "new.pkl", backups=2, audit=True)
        handler.append(0, "a", {})
        handler.append(1, "a", {})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(handler.file_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(handler.lock_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(handler.file_path + ".audit.jsonl").st_mode) == 0o600
    assert [stat.S_IMODE(os.stat(version.path).st_mode) for version in handler.versions()] == [0o600]
    shared = tmp_path / "shared.pkl"
    crewai_dump(shared, {})
    os.chmod(shared, 0o644)
    CrewTrainingHandler(shared).append(0, "a", {})
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o644


# -- failures while saving --------------------------------------------------------------------


def fail_with(code: int) -> Any:
    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return failing


@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC])
@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_a_failing_save_leaves_the_old_file_byte_identical(
    training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch, step: str, code: int
) -> None:
    path = Path(training_store.file_path)
    before = path.read_bytes()
    original = training_store.load()
    agent = next(iter(original))
    with monkeypatch.context() as patch:
        patch.setattr(_atomic.os, step, fail_with(code))
        with pytest.raises(StoreWriteError) as caught:
            training_store.append(77, agent, {"initial_output": "lost?"})
    assert os.strerror(code) in str(caught.value) and str(path) in str(caught.value)
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []
    # the handler is still consistent: the failed record is not in its cache
    assert training_store.load() == original
    training_store.append(78, agent, {"initial_output": "kept"})
    assert 77 not in training_store.load()[agent] and 78 in training_store.load()[agent]


def test_unpicklable_data_leaves_the_file_unchanged(training_store: CrewTrainingHandler) -> None:
    path = Path(training_store.file_path)
    before = path.read_bytes()
    with pytest.raises(StoreWriteError, match="cannot be pickled"):
        training_store.append(5, "a", {"fn": lambda: None})
    with pytest.raises(StoreWriteError, match="cannot be pickled"):
        training_store.save({"fn": lambda: None})
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []
    assert "a" not in training_store.load() or 5 not in training_store.load()["a"]


def test_interrupt_during_save_leaves_the_old_file(
    training_store: CrewTrainingHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Path(training_store.file_path)
    before = path.read_bytes()

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_atomic.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        training_store.save({"replaced": {}})
    assert path.read_bytes() == before
    assert temp_files(path.parent) == []


def test_stale_temp_files_of_dead_writers_are_swept(training_store: CrewTrainingHandler) -> None:
    path = Path(training_store.file_path)
    stale = path.parent / f"{_atomic.temp_prefix(str(path))}deadbeef.tmp"
    stale.write_bytes(b"half a pickle")
    unrelated = path.parent / "notes.tmp"
    unrelated.write_bytes(b"keep me")
    training_store.append(1, "a", {})
    assert not stale.exists()
    assert unrelated.exists()


# -- real processes -----------------------------------------------------------------------------


def run_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, WORKERS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_processes_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "training_data.pkl"
    workers = [run_worker("append", str(path), f"agent-{n}", "100") for n in range(4)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    data = CrewTrainingHandler(path).load()
    assert sorted(data) == [f"agent-{n}" for n in range(4)]
    for n in range(4):
        assert sorted(data[f"agent-{n}"]) == list(range(100))
    assert temp_files(tmp_path) == []


def test_lock_held_by_a_stuck_process_times_out(training_store: CrewTrainingHandler) -> None:
    path = Path(training_store.file_path)
    before = path.read_bytes()
    holder = run_worker("hold-lock", str(path), "30")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        impatient = CrewTrainingHandler(path, lock_timeout=0.3)
        with pytest.raises(StoreLockTimeout) as caught:
            impatient.append(0, "a", {})
        assert "lock_timeout" in str(caught.value) and str(path) in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
        assert impatient.load() == training_store.load()  # reading needs no lock
    finally:
        holder.kill()
        holder.communicate()
    assert path.read_bytes() == before


def test_kill_minus_nine_never_loses_an_acknowledged_append(tmp_path: Path) -> None:
    import random

    rng = random.Random(2026)
    path = tmp_path / "training_data.pkl"
    acknowledged: set[int] = set()
    next_iteration = 0
    kills = 0
    while kills < 25:
        worker = run_worker("append", str(path), "agent", "100000", str(next_iteration))
        assert worker.stdout is not None
        # wait for the child to be appending, then kill it at a random moment
        first = worker.stdout.readline()
        assert first.startswith("ack"), worker.stderr.read() if worker.stderr else first
        acknowledged.add(int(first.split()[1]))
        import time

        time.sleep(rng.uniform(0.0, 0.08))
        worker.kill()
        out, _ = worker.communicate()
        for line in out.splitlines():
            if line.startswith("ack "):
                acknowledged.add(int(line.split()[1]))
        kills += 1
        stored = CrewTrainingHandler(path).load()
        assert acknowledged <= set(stored["agent"]), sorted(acknowledged - set(stored["agent"]))[:5]
        next_iteration = max(stored["agent"]) + 1
    assert kills >= 20
    CrewTrainingHandler(path).append(next_iteration, "agent", {})
    assert temp_files(tmp_path) == []


def test_public_namespace() -> None:
    for name in crewtrain_nb.__all__:
        assert hasattr(crewtrain_nb, name), name
    assert issubclass(CorruptStoreError, StoreError)
    assert issubclass(UnsafePickleError, StoreError)
    assert issubclass(StoreLockTimeout, StoreError)


def test_add_suffix_false_uses_the_name_as_given(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "run.pickle", add_suffix=False)
    handler.append(0, "a", {})
    assert handler.file_path == str(tmp_path / "run.pickle")
    assert os.path.exists(tmp_path / "run.pickle")


def test_peek_returns_the_snapshot_without_copying(training_store: CrewTrainingHandler) -> None:
    assert training_store.peek() is training_store.peek()
    assert training_store.peek() == training_store.load()
    assert training_store.load() is not training_store.peek()


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


# -- incremental pickling ------------------------------------------------------------


def test_pieced_pickle_is_a_plain_pickle_of_the_dict(
    training_data: dict[str, Any], metrics_data: dict[str, Any]
) -> None:
    import io

    from crewtrain_nb.store._pieces import dumps_dict

    shared = ["same", "list"]
    for data in (training_data, metrics_data, {}, {"a": shared, "b": shared, 3: (b"x", {1.5}, None)}):
        payload = dumps_dict(data, {})
        assert payload.startswith(b"\x80\x04")
        assert pickle.loads(payload) == data
        assert pickle._Unpickler(io.BytesIO(payload)).load() == data  # the pure-Python unpickler agrees
    aliased = pickle.loads(dumps_dict({"a": {"x": shared, "y": shared}}, {}))
    assert aliased["a"]["x"] is aliased["a"]["y"]  # references inside one agent survive


def test_only_changed_agents_are_repickled_and_the_file_stays_exact(
    tmp_path: Path, metrics_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from crewtrain_nb.store import _pieces

    handler = CrewTrainingHandler(tmp_path / "m.pkl")
    handler.save(metrics_data)
    handler.load()
    handler.append(100, "planner", {"loss": 0.1})  # first write after a read pickles every agent
    repickled: list[Any] = []
    real_piece = _pieces.pickle_piece
    monkeypatch.setattr(
        _pieces, "pickle_piece", lambda key, value, **where: repickled.append(key) or real_piece(key, value, **where)
    )
    handler.append(101, "coder", {"loss": 0.2})
    handler.save_trained_data("critic", {"quality": 7.5})
    with handler.batch():
        handler.append(102, "planner", {"loss": 0.3})
        handler.append(103, "planner", {"loss": 0.4})
    assert repickled == ["coder", "critic", "planner"]
    expected = {**metrics_data, "critic": {"quality": 7.5}}
    expected["planner"] = {**metrics_data["planner"], 100: {"loss": 0.1}, 102: {"loss": 0.3}, 103: {"loss": 0.4}}
    expected["coder"] = {**metrics_data["coder"], 101: {"loss": 0.2}}
    with open(handler.file_path, "rb") as file:
        assert pickle.load(file) == expected
    # another writer changes the file: our pieces must not be reused for it
    other = CrewTrainingHandler(handler.file_path)
    other.append(104, "coder", {"loss": 0.5})
    handler.append(105, "planner", {"loss": 0.6})
    expected["coder"][104] = {"loss": 0.5}
    expected["planner"][105] = {"loss": 0.6}
    with open(handler.file_path, "rb") as file:
        assert pickle.load(file) == expected


# -- lazy access (both backends) ----------------------------------------------------------


@pytest.fixture(params=["pkl", "db"])
def mixed_store(request: pytest.FixtureRequest, tmp_path: Path, training_data: dict[str, Any]) -> CrewTrainingHandler:
    """Training records of three agents plus one trained-agent entry, on each backend."""
    handler = CrewTrainingHandler(tmp_path / f"mixed.{request.param}")
    handler.save(training_data)
    handler.save_trained_data("Writer", {"suggestions": ["s"], "quality": 8.0, "final_summary": "f"})
    handler.append(20, "late", {"loss": 1.0})
    handler.append(3, "late", {"loss": 0.5})
    return handler


def test_lazy_reads_agree_with_load(mixed_store: CrewTrainingHandler) -> None:
    data = mixed_store.load()
    assert mixed_store.agents() == list(data)
    record_agents = [agent for agent in data if agent != "Writer"]
    for agent in record_agents:
        assert mixed_store.iterations(agent) == list(data[agent])  # stored order
        assert mixed_store.entry(agent) == data[agent]
        for iteration, record in data[agent].items():
            assert mixed_store.get(agent, iteration) == record
    assert mixed_store.iterations("late") == [20, 3]
    assert mixed_store.entry("Writer") == data["Writer"]
    expected = [(agent, iteration, record) for agent in record_agents for iteration, record in data[agent].items()]
    assert list(mixed_store.records()) == expected
    assert list(mixed_store.records("late")) == [("late", 20, {"loss": 1.0}), ("late", 3, {"loss": 0.5})]
    assert len(mixed_store) == len(expected) == 3 * 13 + 2
    assert bool(mixed_store) and bool(CrewTrainingHandler(Path(mixed_store.file_path).with_name("none.pkl")))


def test_lazy_reads_return_copies(mixed_store: CrewTrainingHandler) -> None:
    agent = mixed_store.agents()[0]
    record = mixed_store.get(agent, 0)
    record["initial_output"] = "changed"
    mixed_store.entry(agent)[0]["initial_output"] = "changed"
    next(mixed_store.records(agent))[2]["initial_output"] = "changed"
    assert mixed_store.get(agent, 0)["initial_output"] != "changed"
    assert mixed_store.load()[agent][0]["initial_output"] != "changed"


def test_unknown_agent_or_iteration_is_a_key_error_listing_what_exists(mixed_store: CrewTrainingHandler) -> None:
    with pytest.raises(KeyError, match=r"no agent 'nobody' in .*; its agents are '.*', 'Writer', 'late'") as caught:
        mixed_store.get("nobody", 0)
    assert mixed_store.file_path in str(caught.value)
    with pytest.raises(KeyError, match=r"agent 'late' has no iteration 4; it has 20, 3"):
        mixed_store.get("late", 4)
    with pytest.raises(KeyError, match="no agent 'nobody'"):
        mixed_store.iterations("nobody")
    with pytest.raises(KeyError, match="no agent 'nobody'"):
        mixed_store.entry("nobody")
    with pytest.raises(StoreFormatError, match="'Writer' holds .* not a dict of iterations.*entry"):
        mixed_store.iterations("Writer")
    with pytest.raises(StoreFormatError, match="not a dict of iterations"):
        mixed_store.get("Writer", 0)


def test_long_lists_in_key_errors_are_truncated(tmp_path: Path) -> None:
    for suffix in ("pkl", "db"):
        handler = CrewTrainingHandler(tmp_path / f"many.{suffix}")
        with handler.batch():
            for iteration in range(50):
                handler.append(iteration, f"agent-{iteration:02}", {})
                handler.append(iteration, "agent-00", {})
        listed = r"its agents are 'agent-00', .* 'agent-09', \.\.\. \(50 in all\)$"
        with pytest.raises(KeyError, match=listed) as caught:
            handler.get("x", 0)
        assert "agent-10" not in str(caught.value)
        with pytest.raises(KeyError, match=r"it has 0, 1, .*, 9, \.\.\. \(50 in all\)"):
            handler.get("agent-00", 99)


@pytest.mark.parametrize("suffix", ["pkl", "db"])
@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda h: h.get("a", True), TypeError, "iteration must be an int, got bool"),
        (lambda h: h.get("a", 1.0), TypeError, "iteration must be an int, got float"),
        (lambda h: h.get(5, 0), TypeError, "agent_id must be a str"),
        (lambda h: h.iterations(None), TypeError, "agent_id must be a str"),
        (lambda h: h.entry(""), ValueError, "agent_id must be a non-empty str"),
        (lambda h: list(h.records(3)), TypeError, "agent_id must be a str"),
    ],
)
def test_lazy_reads_check_arguments(tmp_path: Path, suffix: str, call: Any, error: type, match: str) -> None:
    handler = CrewTrainingHandler(tmp_path / f"t.{suffix}")
    handler.append(0, "a", {})
    with pytest.raises(error, match=match):
        call(handler)


def test_stats_counts_records_agents_bytes_and_last_change(mixed_store: CrewTrainingHandler) -> None:
    import datetime as dt

    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    stats = mixed_store.stats()
    assert (stats.records, stats.agents) == (3 * 13 + 2, 5)
    assert stats.bytes >= os.path.getsize(mixed_store.file_path) > 0
    assert stats.changed is not None and stats.changed.tzinfo is dt.timezone.utc and stats.changed >= before
    with pytest.raises(AttributeError):
        stats.records = 0  # type: ignore[misc]  # frozen
    mixed_store.append(99, "late", {"loss": 0.1})
    assert mixed_store.stats().records == stats.records + 1


def test_lazy_reads_of_a_non_dict_pickle_say_so(tmp_path: Path) -> None:
    path = tmp_path / "list.pkl"
    crewai_dump(path, [1, 2])
    handler = PickleHandler(path)
    with pytest.raises(StoreFormatError, match="holds a list, not a dict of agents"):
        handler.agents()
    assert handler.stats().records == 0


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


def test_the_handler_alone_loads_no_dataframe_or_plotting_library(tmp_path: Path) -> None:
    # A training script that uses the drop-in handler should not pay for pandas, matplotlib or
    # ipywidgets (nor need them to work): everything above the store is imported on first use.
    script = (
        "import sys\n"
        "from crewtrain_nb import CrewTrainingHandler\n"
        f"handler = CrewTrainingHandler({str(tmp_path / 'run')!r})\n"
        "handler.append(0, 'agent', {'loss': 0.5})\n"
        "assert handler.load() == {'agent': {0: {'loss': 0.5}}}\n"
        "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib', 'ipywidgets') if m in sys.modules))\n"
        "import crewtrain_nb\n"
        "print(crewtrain_nb.to_frame.__module__, 'pandas' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == ["[]", "crewtrain_nb.frames True"]
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        crewtrain_nb.no_such_name  # noqa: B018
