"""Hostile pickles: every payload of ``tests/hostile_corpus.py`` is refused and nothing runs.

The payloads are loaded in a fresh child process with a ``sys.addaudithook``
hook (hooks cannot be removed, and a payload that got through could crash the
interpreter), under an address-space limit. ``test_store.py`` covers the basic
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
