"""Hostile pickles: every payload of ``tests/hostile_corpus.py`` is refused and nothing runs.

The payloads are loaded in a fresh child process with a ``sys.addaudithook``
hook (hooks cannot be removed, and a payload that got through could crash the
interpreter), under an address-space limit. ``test_unpickle.py`` covers the basic
refusals in-process; this file covers the whole corpus.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.hostile_corpus import hostile_payloads
from tests.reliability_lib import audit_hostile_payloads

PAYLOADS = hostile_payloads("/nonexistent/marker")
EXPECTED_ERROR = {"unsafe": "UnsafePickleError", "corrupt": "CorruptStoreError"}


@pytest.fixture(scope="module")
def audit() -> dict[str, Any]:
    """One child loads the whole corpus; its findings by payload index, plus the positive control."""
    findings = audit_hostile_payloads()
    control = next(finding for finding in findings if finding.get("control"))
    return {"control": control, "payloads": {f["index"]: f for f in findings if "index" in f}}


def test_corpus_is_broad() -> None:
    assert len(PAYLOADS) >= 30
    assert {payload.protocol for payload in PAYLOADS} == set(range(6))
    names = " ".join(payload.name for payload in PAYLOADS)
    for needle in (
        "os.system", "posix.system", "builtins.eval", "builtins.exec", "getattr", "__import__", "subprocess.Popen",
        "subprocess.run", "subprocess.call", "subprocess.check_output", "importlib.import_module", "pickle.loads",
        "copyreg._reconstructor", "__reduce_ex__", "functools.partial", "operator.attrgetter", "operator.methodcaller",
        "numpy.load", "numpy object array", "_reconstruct", "inside a record", "inside a set", "as a dict key",
        "text GLOBAL", "INST opcode", "OBJ opcode", "BUILD", "EXT1", "EXT2", "EXT4",
    ):  # fmt: skip
        assert needle in names, needle


def test_the_audit_hook_sees_code_running(audit: dict[str, Any]) -> None:
    # Positive control: a trusted load of eval("1 + 1") is visible to the same hook.
    assert audit["control"]["outcome"] == "loaded"
    assert {"compile", "exec"} <= set(audit["control"]["events"])


@pytest.mark.parametrize(
    "index", range(len(PAYLOADS)), ids=[f"{i:02d}-p{p.protocol}-{p.name}" for i, p in enumerate(PAYLOADS)]
)
def test_hostile_payload_is_refused_and_runs_nothing(audit: dict[str, Any], index: int) -> None:
    finding = audit["payloads"][index]
    payload = PAYLOADS[index]
    assert finding["name"] == payload.name
    assert finding["outcome"] == EXPECTED_ERROR[payload.expected], finding["message"]
    assert finding["path"] in finding["message"]
    if payload.expected == "unsafe":
        assert "trusted=True" in finding["message"] or "persistent id" in finding["message"]
        assert finding["global_name"]
    # No os.system, subprocess, exec, compile, import or open of another file while loading.
    assert finding["violations"] == []
    assert not finding["marker"]
    # A later append refuses to overwrite the file, which stays byte-identical.
    assert finding["append_outcome"] == finding["outcome"]
    assert finding["unchanged"]


def test_numpy_payloads_that_crashed_numpy_are_refused_before_numpy_sees_them(audit: dict[str, Any]) -> None:
    # These crashed (segfault) or exhausted memory with the first allow-list, which trusted numpy's __setstate__.
    refused = Counter(
        finding["name"].split(" [")[0]
        for finding in audit["payloads"].values()
        if finding["outcome"] == "UnsafePickleError" and "numpy" in finding["name"]
    )
    for name in (
        "numpy object array with a short element list",
        "numpy dtype state with overlapping object fields",
        "numpy dtype state whose flags hide an object field",
        "numpy _reconstruct of a 2**31-element object array",
        "numpy.ndarray called with a huge object shape",
        "numpy object array of a huge subarray dtype",
    ):
        assert refused[name] == 2, name  # numpy.core and numpy._core spellings


def numpy_layouts() -> dict[str, Any]:
    import numpy as np

    return {
        "aligned struct": np.zeros(3, dtype=np.dtype([("x", "i1"), ("y", "f8")], align=True)),
        "titles": np.zeros(2, dtype=np.dtype({"names": ["a"], "formats": ["i4"], "titles": ["T"], "offsets": [4],
                                              "itemsize": 12})),
        "subarray and object fields": np.zeros(2, dtype=np.dtype([("v", "f4", (2, 3)), ("o", "O")])),
        "nested struct": np.zeros(1, dtype=[("n", [("q", "O"), ("r", "i2")])]),
        "big-endian": np.arange(4, dtype=">i4"),
        "datetime 10ns": np.array(["2020-01-01"], dtype="M8[10ns]"),
        "timedelta s": np.array([1], dtype="m8[s]"),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "strided": np.arange(10)[::2],
        "unicode": np.array(["ab", "c"]),
        "bytes": np.array([b"x"]),
        "complex": np.arange(3) + 1j,
        "void": np.zeros(2, dtype="V5"),
        "empty 2-d": np.zeros((0, 3)),
        "objects 2-d": np.array([[1, "x"], [None, 2.5]], dtype=object),
        "datetime scalar": np.datetime64("2020-01-01", "ns"),
        "float16 scalar": np.float16(1),
        "big-endian dtype": np.dtype(">U3"),
        "one dtype shared": [np.dtype("f8")] * 3,
    }  # fmt: skip


@pytest.mark.parametrize("protocol", range(6))
def test_checked_numpy_loading_matches_pickle_for_every_layout(protocol: int) -> None:
    import pickle

    import numpy as np

    from crewtrain_nb.store import safe_loads

    blob = pickle.dumps(numpy_layouts(), protocol=protocol)
    ours, reference = safe_loads(blob, path="layouts.pkl"), pickle.loads(blob)
    for key, expected in reference.items():
        got = ours[key]
        if isinstance(expected, np.ndarray):
            assert got.dtype == expected.dtype and got.dtype.isalignedstruct == expected.dtype.isalignedstruct, key
            assert got.shape == expected.shape and got.strides == expected.strides, key
            if expected.dtype.hasobject:
                assert pickle.dumps(got, protocol=4) == pickle.dumps(expected, protocol=4), key
            else:
                assert got.tobytes() == expected.tobytes(), key
        elif key == "one dtype shared":
            assert got == expected and got[0] is got[1] is got[2]  # the memo still shares one dtype
        else:
            assert got == expected and type(got) is type(expected), key
