"""Safe loading (store/_unpickle.py, _allowlist.py, _numpy_checks.py): every plain type, numpy on the C fast path
and through the checked unpickler, crafted and mutated numpy pickles, hostile pickles, user classes as placeholders.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import os
import pickle
import subprocess
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from crewtrain_nb import (
    CorruptStoreError,
    CrewTrainingHandler,
    OpaqueObject,
    PickleHandler,
    StoreError,
    UnsafePickleError,
)

from .test_store import crewai_dump


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
    assert placeholder.class_name == "tests.test_unpickle.UserRecord" and placeholder.fields == {"text": "hi"}
    real = {"agent": {0: {"initial_output": UserRecord("hi")}}}
    assert CrewTrainingHandler(path, trusted=True).load() == real
    assert CrewTrainingHandler(path, allowed_classes=[UserRecord]).load() == real
