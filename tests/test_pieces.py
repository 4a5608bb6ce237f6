"""Strictly valid pickles: every file the store writes passes ``pickletools.dis`` and the pure-Python unpickler.

Before, each per-key piece numbered its memo from 0, so every file defined memo
slot 0 once per agent (``ValueError: memo key 0 already defined`` in
``pickletools.dis``). These tests write through every writer path and read the
bytes with the strict tools.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import CrewTrainingHandler, convert
from crewtrain_nb.store._codec import ENCRYPTED_MAGIC
from crewtrain_nb.store._pieces import dumps_dict

KEY = bytes(range(32))


def decoded(path: str | os.PathLike[str], *, key: bytes | None = None) -> bytes:
    """The pickle bytes of a store file: decrypted (layout of ``_codec``) and decompressed by suffix."""
    raw = Path(path).read_bytes()
    if key is not None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        assert raw.startswith(ENCRYPTED_MAGIC)
        header = len(ENCRYPTED_MAGIC) + 1
        raw = AESGCM(key).decrypt(raw[header : header + 12], raw[header + 12 :], raw[:header])
    name = os.fspath(path)
    if name.endswith(".gz"):
        return gzip.decompress(raw)
    if name.endswith(".bz2"):
        return bz2.decompress(raw)
    return raw


def assert_strict(payload: bytes) -> Any:
    """``pickletools.dis`` accepts ``payload`` (no memo slot defined twice) and both unpicklers agree on it."""
    pickletools.dis(payload, out=io.StringIO())
    pure = pickle._Unpickler(io.BytesIO(payload)).load()  # type: ignore[attr-defined]
    fast = pickle.loads(payload)
    assert pickle.dumps(pure, protocol=4) == pickle.dumps(fast, protocol=4)  # same values, same sharing, cycles too
    return fast


def agent_slots(payload: bytes) -> dict[Any, int]:
    """The memo slot each top-level value dict is put in: the PUT right after its EMPTY_DICT."""
    ops = list(pickletools.genops(payload))
    slots: dict[Any, int] = {}
    depth = 0
    key: Any = None
    for index, (op, arg, _pos) in enumerate(ops):
        if op.name == "MARK":
            depth += 1
        elif op.name in {"SETITEMS", "APPENDS", "TUPLE", "LIST", "DICT", "ADDITEMS", "FROZENSET"}:
            depth -= 1
        if depth == 1 and op.name in {"BINUNICODE", "SHORT_BINUNICODE"}:
            key = arg
        if depth == 1 and op.name == "EMPTY_DICT" and ops[index + 1][0].name in {"BINPUT", "LONG_BINPUT"}:
            slots.setdefault(key, ops[index + 1][1])
    return slots


def test_a_pieced_dict_defines_each_memo_slot_once_and_gives_every_agent_dict_its_own(
    training_data: dict[str, Any],
) -> None:
    pieces: dict[Any, Any] = {}
    payload = dumps_dict(training_data, pieces)
    assert assert_strict(payload) == training_data
    slots = agent_slots(payload)
    assert list(slots) == list(training_data)
    assert len(set(slots.values())) == len(training_data)
    assert {key: piece.slot for key, piece in pieces.items()} == slots
    # BINGET of an agent's slot, spliced after the top dict, fetches that very agent's dict.
    agent = list(training_data)[1]
    probe = payload[:-1] + pickle.POP + pickle.BINGET + bytes([slots[agent]]) + pickle.STOP
    assert pickle.loads(probe) == training_data[agent]


def test_appends_that_reuse_cached_pieces_stay_strict(tmp_path: Path, training_data: dict[str, Any]) -> None:
    # Full rewrites are what reuse pieces (with tails on, these appends would be tails: see test_tail.py).
    handler = CrewTrainingHandler(tmp_path / "t.pkl", tails=False)
    handler.save(training_data)
    handler.load()
    expected = {agent: dict(iterations) for agent, iterations in training_data.items()}
    for step, agent in enumerate([*training_data, "new-agent", *training_data]):
        record = {"initial_output": f"out {step}", "human_feedback": "fb", "improved_output": "better"}
        handler.append(100 + step, agent, record)
        expected.setdefault(agent, {})[100 + step] = record
        payload = Path(handler.file_path).read_bytes()
        assert assert_strict(payload) == expected
        assert len(set(agent_slots(payload).values())) == len(expected)


def shared_records() -> dict[str, Any]:
    """Records whose values share objects: a string, a list, and a list holding itself."""
    text = "the same text " * 4
    steps = ["plan", "act"]
    cycle: list[Any] = ["start"]
    cycle.append(cycle)
    return {
        "agent-a": {0: {"initial_output": text, "improved_output": text}},
        "agent-b": {0: {"steps": steps, "again": steps}, 1: {"steps": ["other"]}},
        "agent-c": {0: {"loop": cycle}},
        "agent-d": {0: {"initial_output": "plain"}},
    }


def assert_sharing_kept(loaded: dict[str, Any]) -> None:
    a = loaded["agent-a"][0]
    assert a["initial_output"] == a["improved_output"] == "the same text " * 4
    b = loaded["agent-b"]
    assert b[0]["steps"] == ["plan", "act"] and b[0]["steps"] is b[0]["again"] and b[1]["steps"] == ["other"]
    loop = loaded["agent-c"][0]["loop"]
    assert loop[0] == "start" and loop[1] is loop
    assert loaded["agent-d"][0] == {"initial_output": "plain"}


def test_records_that_share_objects_or_hold_cycles_round_trip_exactly(tmp_path: Path) -> None:
    handler = CrewTrainingHandler(tmp_path / "shared.pkl")
    handler.save(shared_records())
    assert_sharing_kept(assert_strict(Path(handler.file_path).read_bytes()))
    handler.peek()  # (load() copies containers one by one, so its copy does not keep sharing; the file does)
    # Appends before and after the shared pieces move their memo slots; each is renumbered where it now sits.
    handler.append(5, "agent-a", {"initial_output": "moved"})
    handler.save_trained_data("agent-0", {"suggestions": ["x"], "quality": 1.0, "final_summary": "s"})
    handler.append(6, "agent-d", {"initial_output": "after"})
    loaded = assert_strict(Path(handler.file_path).read_bytes())
    assert loaded["agent-a"][5] == {"initial_output": "moved"} and loaded["agent-d"][6] == {"initial_output": "after"}
    assert_sharing_kept(loaded)
    assert_sharing_kept(CrewTrainingHandler(handler.file_path).peek())


@pytest.mark.parametrize("suffix", [".pkl", ".pkl.gz", ".pkl.bz2"])
def test_every_writer_path_writes_strict_pickles(
    tmp_path: Path, suffix: str, training_data: dict[str, Any], trained_data: dict[str, Any]
) -> None:
    pytest.importorskip("cryptography")
    for key in (None, KEY):
        path = tmp_path / f"{'secret' if key else 'plain'}{suffix}"
        handler = CrewTrainingHandler(path, key=key if key else False, backups=3)
        seen: list[Any] = []

        def check(expected: Any) -> None:
            assert assert_strict(decoded(path, key=key)) == expected  # noqa: B023 - checked at once
            seen.append(expected)  # noqa: B023

        handler.append(0, "fresh", {"initial_output": "a"})  # append to a new file
        check({"fresh": {0: {"initial_output": "a"}}})
        handler.save(training_data)
        check(training_data)
        handler.load()
        handler.append(1, "fresh", {"initial_output": "b"})  # cached pieces
        expected = {**training_data, "fresh": {1: {"initial_output": "b"}}}
        check(expected)
        with handler.batch():
            handler.append(2, "fresh", {"initial_output": "c"})
            handler.save_trained_data("role", trained_data[next(iter(trained_data))])
        expected = {**expected, "fresh": {1: {"initial_output": "b"}, 2: {"initial_output": "c"}}}
        expected["role"] = trained_data[next(iter(trained_data))]
        check(expected)
        handler.clear()
        check({})
        handler.save([1, "not a dict", {"x": 1}])  # not a dict: pickled whole
        check([1, "not a dict", {"x": 1}])
        version = next(v for v in handler.versions() if v.size > 100)
        handler.restore(version)
        assert assert_strict(decoded(path, key=key)) in seen


def test_trained_agents_file_and_conversion_back_to_pickle_are_strict(
    tmp_path: Path, training_data: dict[str, Any], trained_data: dict[str, Any]
) -> None:
    trained = CrewTrainingHandler(tmp_path / "trained_agents_data.pkl")
    for role, entry in trained_data.items():
        trained.save_trained_data(role, entry)
    assert assert_strict(Path(trained.file_path).read_bytes()) == trained_data
    source = CrewTrainingHandler(tmp_path / "t.pkl")
    source.save(shared_records())
    database = convert(source.file_path, tmp_path / "t.db")
    back = convert(database, tmp_path / "back.pkl")
    assert_sharing_kept(assert_strict(Path(back).read_bytes()))


def test_an_append_walks_only_the_new_record_and_still_sees_sharing_inside_it(
    tmp_path: Path, training_data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from crewtrain_nb.store import OpaqueObject, _placeholders
    from crewtrain_nb.store import _pieces as pieces_module

    handler = CrewTrainingHandler(tmp_path / "t.pkl", tails=False)  # the full rewrite's pieces (tails: test_tail.py)
    handler.save(training_data)
    handler.peek()
    agent = next(iter(training_data))
    handler.append(50, agent, {"initial_output": "x"})  # the first write after a read pickles (and walks) all
    walked: list[Any] = []
    real = _placeholders.is_tree

    def counting(values: Any, **options: Any) -> bool:
        walked.append(list(values))
        return real(values, **options)

    monkeypatch.setattr(_placeholders, "is_tree", counting)
    monkeypatch.setattr(pieces_module, "is_tree", counting)
    handler.append(51, agent, {"initial_output": "y"})
    assert walked == [[{"initial_output": "y"}]]  # the new record only, not the agent's other records
    shared = ["s"]
    handler.append(52, agent, {"improved_output": OpaqueObject("app.m", "R", state={"a": shared, "b": shared})})
    loaded = assert_strict_safe(Path(handler.file_path).read_bytes())
    state = loaded[agent][52]["improved_output"].state
    assert state["a"] == ["s"] and state["a"] is state["b"]  # sharing inside the new record kept: it was walked
    assert loaded[agent][51] == {"initial_output": "y"} and loaded[agent][50] == {"initial_output": "x"}


def assert_strict_safe(payload: bytes) -> Any:
    """``pickletools.dis`` accepts ``payload``; loaded with safe loading (the classes it names do not exist)."""
    from crewtrain_nb.store import safe_loads

    pickletools.dis(payload, out=io.StringIO())
    return safe_loads(payload, path="t.pkl")


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

    # Versions keep every write a full rewrite (a plain store would write these appends as tails).
    handler = CrewTrainingHandler(tmp_path / "m.pkl", backups=1)
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
