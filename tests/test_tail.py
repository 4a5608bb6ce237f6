"""Tails (``store/_tail.py``): constant-cost changes written after the pickle, in the format CrewAI reads.

Every state a file can be in — each committed tail, and each crash-intermediate state (any prefix of a tail
written, the whole tail written but not committed) — is read by ``pickle.loads``, the pure-Python
``pickle._Unpickler``, ``pickletools.dis``, crewtrain_nb's safe loader and installed CrewAI's
``PickleHandler.load``, and must be the store before or after the change.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import pickle
import pickletools
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import CorruptStoreError, CrewTrainingHandler, UnsafePickleError, verify_audit
from crewtrain_nb.store._pieces import dumps_dict
from crewtrain_nb.store._tail import (
    SetEntry,
    SetKey,
    TailLayout,
    diff_changes,
    encode_tail,
    is_uncommitted_tail,
    layout_after_load,
    layout_after_rewrite,
    layout_after_tail,
    should_compact,
    write_tail,
)
from crewtrain_nb.store._unpickle import safe_loads

crewai_handler = pytest.importorskip("crewai.utilities.file_handler")


def apply(data: dict[Any, Any], changes: list[SetKey | SetEntry]) -> dict[Any, Any]:
    """The model: what ``changes`` do to a plain dict (a new dict)."""
    result = copy.deepcopy(data)
    for change in changes:
        if isinstance(change, SetEntry):
            result[change.key][change.entry] = copy.deepcopy(change.value)
        else:
            result[change.key] = copy.deepcopy(change.value)
    return result


def quick_readers(blob: bytes) -> list[Any]:
    """``blob`` as the C unpickler, the pure-Python one and the safe loader see it."""
    return [
        pickle.loads(blob),
        pickle._Unpickler(io.BytesIO(blob)).load(),
        safe_loads(blob, path="state.pkl"),
    ]


def readers(blob: bytes, path: Path) -> list[Any]:
    """``blob`` as each reader sees it: also ``pickletools.dis`` and CrewAI's handler, from a real file."""
    dis = io.StringIO()
    pickletools.dis(blob, out=dis)  # raises on a malformed pickle (stack, marks, memo)
    path.write_bytes(blob)
    return [
        pickle.loads(blob),
        pickle._Unpickler(io.BytesIO(blob)).load(),
        safe_loads(blob, path=str(path)),
        crewai_handler.PickleHandler(str(path)).load(),
    ]


def ours(data: dict[Any, Any]) -> tuple[bytes, TailLayout]:
    pieces: dict[Any, Any] = {}
    payload = dumps_dict(data, pieces)
    return payload, layout_after_rewrite(data, pieces, len(payload))


def crewais(data: dict[Any, Any]) -> tuple[bytes, TailLayout]:
    """A file as CrewAI writes it (``pickle.dump``, protocol 4 with FRAMEs), and its layout from a load."""
    payload = pickle.dumps(data, protocol=4)
    ended: list[Any] = []
    loaded = safe_loads(payload, path="crewai.pkl", on_end=lambda end, memo: ended.extend((end, memo.copy())))
    layout = layout_after_load(loaded, payload, *ended)
    assert layout is not None
    return payload, layout


def shared_record(*, cycle: bool = True) -> dict[str, Any]:
    """A record whose values share a string and a list, and (``cycle``) hold a list containing itself."""
    text = "the same feedback " * 3
    words = ["a", "b"]
    record: dict[str, Any] = {"initial_output": text, "human_feedback": text, "left": words, "right": words}
    if cycle:
        loop: list[Any] = ["loop"]
        loop.append(loop)
        record["loop"] = loop
    return record


def check_shared(record: dict[str, Any]) -> None:
    assert record["left"] is record["right"] and record["left"] == ["a", "b"]
    if "loop" in record:
        assert record["loop"][1] is record["loop"]
    assert record["initial_output"] == record["human_feedback"] == "the same feedback " * 3


STORE: dict[str, dict[Any, Any]] = {
    "agent-a": {0: {"initial_output": "first", "human_feedback": "ok"}, 1: {"initial_output": "second"}},
    "agent-b": {0: {"loss": 0.5, "weights": [1.0, 2.0]}},
    "Writer": {"suggestions": ["be brief"], "quality": 7.5, "final_summary": "s"},
}

#: Tails in a row: a new record, a new agent, a replaced record, a replaced agent entry, a shared record,
#: a record of the new agent, a key set to a non-dict and then back to a dict.
CHAINED: list[list[SetKey | SetEntry]] = [
    [SetEntry("agent-a", 2, {"initial_output": "third", "improved_output": "better"})],
    [SetKey("agent-c", {0: {"initial_output": "new agent"}})],
    [SetEntry("agent-a", 0, {"initial_output": "replaced", "human_feedback": "again"})],
    [SetKey("Writer", {"suggestions": ["be briefer"], "quality": 8.0, "final_summary": "t"})],
    [SetEntry("agent-b", 1, shared_record(cycle=False)), SetEntry("agent-a", 3, {"n": 3})],
    [SetEntry("agent-c", 1, {"initial_output": "second of c"})],
    [SetKey("agent-b", "now text"), SetKey("agent-d", {})],
    [SetKey("agent-b", {5: {"back": True}}), SetEntry("agent-d", 0, {"x": 1})],
]


def chain_states(payload: bytes, layout: TailLayout, data: dict[Any, Any], tmp_path: Path, *, every: bool) -> int:
    """Write each tail of :data:`CHAINED` byte by byte as a crash could leave it; check every state. Returns states."""
    blob = bytearray(payload)
    checked = 0
    for number, changes in enumerate(CHAINED):
        # The layout's slots refer to dicts the tails keep (SetEntry needs one).
        tail, slots, next_slot = encode_tail(changes, layout)
        after = apply(data, changes)
        for cut in range(len(tail) + 1):  # every prefix of the tail written, nothing committed
            state = bytes(blob[: layout.end]) + tail[:cut]
            seen_by = readers(state, tmp_path / "state.pkl") if every else quick_readers(state)
            for seen in seen_by:
                assert seen == data
            checked += 1
        uncommitted = bytes(blob[: layout.end]) + tail
        assert all(seen == data for seen in readers(uncommitted, tmp_path / f"u{number}.pkl"))
        committed = bytearray(uncommitted)
        committed[layout.end - 1] = ord(b"(")
        for seen in readers(bytes(committed), tmp_path / f"c{number}.pkl"):
            assert seen == after
            for change in changes:
                if isinstance(change, SetEntry) and "left" in change.value:
                    check_shared(seen[change.key][change.entry])
        checked += 2
        blob, data = committed, after
        layout = layout_after_tail(layout, tail, slots, next_slot)
    return checked


def test_every_state_of_chained_tails_on_our_layout_reads_as_before_or_after(tmp_path: Path) -> None:
    payload, layout = ours(STORE)
    assert layout.slots.keys() == {"agent-a", "agent-b", "Writer"}
    # Every reader, CrewAI's and pickletools.dis included, reads every crash-intermediate state.
    assert chain_states(payload, layout, copy.deepcopy(STORE), tmp_path, every=True) > 200


def test_every_state_of_chained_tails_on_a_file_crewai_wrote_with_several_frames(tmp_path: Path) -> None:
    big = copy.deepcopy(STORE)
    big["agent-a"].update({n: {"initial_output": "x" * 450 + str(n)} for n in range(10, 310)})
    payload, layout = crewais(big)
    assert sum(1 for op, _, _ in pickletools.genops(payload) if op.name == "FRAME") >= 3
    assert payload[-1:] == pickle.STOP and layout.end == len(payload)
    # 130 KB per state: the C and pure-Python unpicklers and the safe loader read each prefix, all five the rest.
    assert chain_states(payload, layout, big, tmp_path, every=False) > 200


def test_shared_strings_and_objects_in_a_record_come_back_shared_after_other_tails(tmp_path: Path) -> None:
    for make in (ours, crewais):
        payload, layout = make(STORE)
        blob = payload
        steps: list[list[SetKey | SetEntry]] = [
            [SetEntry("agent-a", 7, shared_record())],
            [SetKey("agent-z", {0: shared_record()})],
            [SetEntry("agent-z", 1, shared_record())],
        ]
        for changes in steps:
            tail, slots, next_slot = encode_tail(changes, layout)
            committed = bytearray(blob + tail)
            committed[layout.end - 1] = ord(b"(")
            blob = bytes(committed)
            layout = layout_after_tail(layout, tail, slots, next_slot)
        for loaded in readers(blob, tmp_path / "shared.pkl"):
            check_shared(loaded["agent-a"][7])
            check_shared(loaded["agent-z"][0])
            check_shared(loaded["agent-z"][1])
            assert loaded["agent-z"][0]["left"] is not loaded["agent-z"][1]["left"]  # no reference across records


def test_memo_slots_past_255_use_long_binget(tmp_path: Path) -> None:
    data = {f"agent-{n}": {0: {"n": n}} for n in range(300)}
    payload, layout = ours(data)
    assert layout.slots["agent-299"] == 299
    tail, _, _ = encode_tail([SetEntry("agent-299", 1, {"n": "late"}), SetEntry("agent-3", 1, {"n": "early"})], layout)
    assert pickle.LONG_BINGET in tail
    committed = bytearray(payload + tail)
    committed[layout.end - 1] = ord(b"(")
    for loaded in readers(bytes(committed), tmp_path / "many.pkl"):
        assert loaded["agent-299"] == {0: {"n": 299}, 1: {"n": "late"}}
        assert loaded["agent-3"] == {0: {"n": 3}, 1: {"n": "early"}}


def test_what_follows_the_pickle_is_ignored_only_when_it_is_an_uncommitted_tail() -> None:
    payload, layout = ours(STORE)
    tail, _, _ = encode_tail([SetEntry("agent-a", 9, {"x": 1})], layout)
    assert is_uncommitted_tail(payload + tail, len(payload))
    assert is_uncommitted_tail(payload + b"\x00" * 4096, len(payload))  # extended, never written (power cut)
    assert safe_loads(payload + tail[:3], path="x.pkl") == STORE
    for junk in (b"junk", pickle.dumps({"other": 1}), b"\x00\x00x"):
        with pytest.raises(CorruptStoreError, match="unexpected bytes after the end"):
            safe_loads(payload + junk, path="x.pkl")


def test_a_committed_tail_goes_through_the_same_checks_and_an_uncommitted_one_never_runs(tmp_path: Path) -> None:
    payload, layout = ours(STORE)
    marker = tmp_path / "ran"
    hostile = (
        pickle.POP_MARK + pickle.GLOBAL + b"os\nsystem\n" + pickle.BINUNICODE
        + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode()
        + pickle.TUPLE1 + pickle.REDUCE + pickle.POP + pickle.STOP
    )  # fmt: skip
    uncommitted = payload + hostile
    assert safe_loads(uncommitted, path="x.pkl") == STORE  # never run: the pickle ends before it
    committed = bytearray(uncommitted)
    committed[layout.end - 1] = ord(b"(")
    with pytest.raises(UnsafePickleError, match="os.system"):
        safe_loads(bytes(committed), path="x.pkl")
    assert not marker.exists()


def test_diff_changes_says_what_a_tail_can_express() -> None:
    old = copy.deepcopy(STORE)
    new = copy.deepcopy(STORE)
    new["agent-a"][1] = {"initial_output": "changed"}
    new["agent-a"][2] = {"initial_output": "added"}
    new["agent-e"] = {0: {}}
    assert diff_changes(old, new) == [
        SetEntry("agent-a", 1, {"initial_output": "changed"}),
        SetEntry("agent-a", 2, {"initial_output": "added"}),
        SetKey("agent-e", {0: {}}),
    ]
    assert diff_changes(old, copy.deepcopy(old)) == []
    typed = copy.deepcopy(old)
    typed["Writer"]["quality"] = 8.0
    assert diff_changes(old, typed) == [SetEntry("Writer", "quality", 8.0)]
    same_value = copy.deepcopy(old)
    same_value["agent-b"][0]["loss"] = 0.5
    assert diff_changes(old, same_value) == []
    one = {"a": {0: {"q": 1}}}
    assert diff_changes(one, {"a": {0: {"q": 1.0}}}) == [SetEntry("a", 0, {"q": 1.0})]  # 1 == 1.0, not the same
    assert diff_changes(one, {"a": {0: {"q": True}}}) == [SetEntry("a", 0, {"q": True})]
    reordered = {"a": {0: {"x": 1, "y": 2}}}
    assert diff_changes(reordered, {"a": {0: {"y": 2, "x": 1}}}) == [SetEntry("a", 0, {"y": 2, "x": 1})]
    assert diff_changes({"a": {0: 1, 1: 2}}, {"a": {1: 2, 0: 1}}) == [SetKey("a", {1: 2, 0: 1})]
    assert diff_changes(one, {"a": {0.0: {"q": 1}}}) == [SetKey("a", {0.0: {"q": 1}})]  # 0 == 0.0 as keys too
    assert diff_changes({1: "x"}, {1.0: "x"}) is None
    assert diff_changes({"a": {0: {"z": -0.0}}}, {"a": {0: {"z": 0.0}}}) == [SetEntry("a", 0, {"z": 0.0})]
    nan = float("nan")
    assert diff_changes({"a": {0: nan}}, {"a": {0: nan}}) == []  # the very same object
    other = [float("nan")]  # equal to nothing, not even itself: counted as changed
    assert diff_changes({"a": {0: [nan]}}, {"a": {0: other}}) == [SetEntry("a", 0, other)]
    loop: list[Any] = []
    loop.append(loop)
    twin: list[Any] = []
    twin.append(twin)  # a cycle of its own: the walk recurses until it gives up, and counts it as changed
    assert diff_changes({"a": {0: loop}}, {"a": {0: twin}}) == [SetEntry("a", 0, twin)]
    assert diff_changes(old, {key: old[key] for key in list(old)[1:]}) is None  # a key removed
    assert diff_changes({"a": 1, "b": 2}, {"b": 2, "a": 1}) is None  # reordered
    assert diff_changes(old, [1]) is None


def test_the_compaction_rule_keeps_the_file_under_twice_its_compacted_size() -> None:
    layout = TailLayout(end=1000, base_end=1000, next_slot=0)
    assert not should_compact(layout, 1000)
    assert should_compact(layout, 1001)
    assert should_compact(TailLayout(end=1900, base_end=1000, next_slot=0), 101)


def test_the_trailer_tells_any_later_reader_how_much_is_tails(tmp_path: Path) -> None:
    payload, layout = ours(STORE)
    tail, slots, next_slot = encode_tail([SetEntry("agent-a", 2, {"x": 1})], layout)
    committed = bytearray(payload + tail)
    committed[layout.end - 1] = ord(b"(")
    ended: list[Any] = []
    loaded = safe_loads(bytes(committed), path="x.pkl", on_end=lambda end, memo: ended.extend((end, memo.copy())))
    again = layout_after_load(loaded, bytes(committed), *ended)
    assert again is not None
    assert (again.end, again.base_end, again.pending) == (len(committed), len(payload), False)
    assert again.slots == layout_after_tail(layout, tail, slots, next_slot).slots


def test_write_tail_commits_with_one_byte_over_the_old_stop(tmp_path: Path) -> None:
    path = tmp_path / "t.pkl"
    payload, layout = ours(STORE)
    path.write_bytes(payload + b"1 an old uncommitted tail, longer than the new one" * 4)
    tail, _, _ = encode_tail([SetEntry("agent-a", 2, {"x": 1})], layout)
    fd = os.open(path, os.O_RDWR)
    try:
        write_tail(fd, layout.end, tail)
    finally:
        os.close(fd)
    blob = path.read_bytes()
    assert blob[: layout.end - 1] == payload[:-1] and blob[layout.end - 1 :] == b"(" + tail  # cut after the tail
    assert crewai_handler.PickleHandler(str(path)).load()["agent-a"][2] == {"x": 1}


# -- through the handler, on real files ------------------------------------------------------------------


def filled(tmp_path: Path, **options: Any) -> CrewTrainingHandler:
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl", **options)
    handler.save({f"agent-{a}": {n: {"initial_output": "x" * 200, "n": n} for n in range(50)} for a in range(4)})
    return handler


def test_an_append_writes_a_tail_in_place_and_every_reader_sees_it(tmp_path: Path) -> None:
    handler = filled(tmp_path)
    path = Path(handler.file_path)
    before = path.read_bytes()
    inode = path.stat().st_ino
    handler.append(50, "agent-0", {"initial_output": "appended"})
    handler.append(0, "agent-9", {"initial_output": "new agent"})
    handler.append(3, "agent-1", {"initial_output": "replaced"})
    handler.save_trained_data("agent-2", {"suggestions": ["whole entry"]})
    after = path.read_bytes()
    assert path.stat().st_ino == inode  # written in place, not replaced
    assert after[: len(before) - 1] == before[:-1] and len(after) - len(before) < 1000  # the old bytes stay
    expected = CrewTrainingHandler(path).load()
    assert expected["agent-0"][50] == {"initial_output": "appended"} and expected["agent-9"] == {
        0: {"initial_output": "new agent"}
    }
    assert expected["agent-1"][3] == {"initial_output": "replaced"} and list(expected["agent-1"]) == list(range(50))
    assert expected["agent-2"] == {"suggestions": ["whole entry"]}
    assert list(expected) == ["agent-0", "agent-1", "agent-2", "agent-3", "agent-9"]
    assert pickle.loads(after) == expected == crewai_handler.PickleHandler(str(path)).load()
    assert handler.load() == expected


def test_crewais_pattern_load_change_save_writes_a_tail(tmp_path: Path) -> None:
    # CrewAI 1.x's _handle_crew_training_output: load(), change one agent's entry, save(the whole dict).
    handler = filled(tmp_path)
    handler.load()
    path = Path(handler.file_path)
    inode, size = path.stat().st_ino, path.stat().st_size
    for step in range(5):
        data = handler.load()
        data["agent-3"][step] = {**data["agent-3"][step], "human_feedback": f"feedback {step}"}
        data["agent-3"][100 + step] = {"initial_output": "new"}
        handler.save(data)
        data["agent-3"][100 + step]["mutated"] = "after save"  # the caller's dict is not the store's
    assert path.stat().st_ino == inode and path.stat().st_size - size < 2000
    loaded = CrewTrainingHandler(path).load()
    assert loaded == handler.load() == pickle.loads(path.read_bytes())
    assert loaded["agent-3"][4]["human_feedback"] == "feedback 4" and "mutated" not in loaded["agent-3"][104]
    # Removing a key cannot be a tail: a full rewrite, atomically.
    data = handler.load()
    del data["agent-0"]
    handler.save(data)
    assert path.stat().st_ino != inode and CrewTrainingHandler(path).load() == data


def test_tails_are_compacted_by_an_atomic_rewrite_once_they_outgrow_the_store(tmp_path: Path) -> None:
    handler = filled(tmp_path)
    path = Path(handler.file_path)
    compacted, inode = path.stat().st_size, path.stat().st_ino
    compactions = 0
    for n in range(400):
        handler.append(1000 + n, "agent-0", {"initial_output": "y" * 200})
        st = path.stat()
        if st.st_ino != inode:  # compacted: a new file, replaced atomically
            compactions += 1
            compacted, inode = st.st_size, st.st_ino
        assert st.st_size <= 2 * compacted
    assert 1 <= compactions <= 5  # about every doubling; the other appends were tails
    assert CrewTrainingHandler(path).load()["agent-0"][1399] == {"initial_output": "y" * 200}


def test_a_file_crewai_wrote_takes_tails_and_crewai_writing_in_place_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "training_data.pkl"
    crewai = crewai_handler.PickleHandler(str(path))
    crewai.save({"agent-a": {0: {"initial_output": "from crewai"}}})
    inode = path.stat().st_ino
    ours_ = CrewTrainingHandler(path)
    ours_.load()
    ours_.append(1, "agent-a", {"initial_output": "ours"})
    assert path.stat().st_ino == inode  # a tail on CrewAI's own file
    assert crewai.load() == {"agent-a": {0: {"initial_output": "from crewai"}, 1: {"initial_output": "ours"}}}
    # CrewAI rewrites the file in place (same inode) with data of its own; our next write starts from it.
    data = crewai.load()
    data["agent-a"][2] = {"initial_output": "crewai again"}
    crewai.save(data)
    assert path.stat().st_ino == inode
    ours_.append(3, "agent-a", {"initial_output": "ours again"})
    assert sorted(crewai.load()["agent-a"]) == [0, 1, 2, 3]


def test_an_uncommitted_tail_reads_as_before_and_the_next_writer_replaces_it(tmp_path: Path) -> None:
    handler = filled(tmp_path)
    path = Path(handler.file_path)
    expected = handler.load()
    with path.open("ab") as file:  # a writer died between the two steps
        file.write(b"1" + b"half a tail" * 10)
    reader = CrewTrainingHandler(path)
    assert reader.load() == expected == crewai_handler.PickleHandler(str(path)).load()
    reader.append(50, "agent-0", {"initial_output": "after the crash"})
    expected["agent-0"][50] = {"initial_output": "after the crash"}
    assert pickle.loads(path.read_bytes()) == expected
    assert b"half a tail" not in path.read_bytes()


def test_a_reader_that_saw_an_uncommitted_tail_sees_its_commit_even_with_the_same_stat(tmp_path: Path) -> None:
    # Committing changes one byte; file times tick coarsely, so size and times may not change.
    handler = filled(tmp_path)
    path = Path(handler.file_path)
    payload = path.read_bytes()
    ended: list[Any] = []
    loaded = safe_loads(payload, path=str(path), on_end=lambda end, memo: ended.extend((end, memo.copy())))
    layout = layout_after_load(loaded, payload, *ended)
    assert layout is not None
    tail, _, _ = encode_tail([SetEntry("agent-0", 77, {"x": 1})], layout)
    with path.open("ab") as file:
        file.write(tail)
    reader = CrewTrainingHandler(path, crewai_lock=False)
    assert 77 not in reader.load()["agent-0"]
    st = path.stat()
    with path.open("r+b") as file:
        file.seek(layout.end - 1)
        file.write(b"(")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert reader.load()["agent-0"][77] == {"x": 1}


@pytest.mark.parametrize(
    "options",
    [{"backups": 2}, {"key": bytes(range(32))}, {"compressed": True}, {"tails": False}],
    ids=["versions", "encrypted", "compressed", "tails-off"],
)
def test_versions_encryption_compression_and_tails_off_keep_full_rewrites(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    if options.pop("compressed", False):
        handler = CrewTrainingHandler(tmp_path / "t.pkl.gz")
        handler.save({"agent-0": {0: {"n": 0}}})
    else:
        handler = filled(tmp_path, **options)
    path = Path(handler.file_path)
    handler.load()
    inode = path.stat().st_ino
    handler.append(99, "agent-0", {"n": 99})
    assert path.stat().st_ino != inode  # an atomic replace, not a tail
    assert handler.load()["agent-0"][99] == {"n": 99}
    if options.get("backups"):
        old = handler.versions()[0]
        assert 99 not in CrewTrainingHandler(old.path).load()["agent-0"]  # the version did not change


def test_audit_lines_of_tails_hash_the_whole_file_and_verify_audit_stays_exact(tmp_path: Path) -> None:
    handler = filled(tmp_path, audit=True)
    path = Path(handler.file_path)
    inode = path.stat().st_ino
    for n in range(5):
        handler.append(60 + n, "agent-1", {"n": n})
    data = handler.load()
    data["agent-2"][0] = {"changed": True}
    handler.save(data)
    other = CrewTrainingHandler(path, audit=True)  # another handler: hashes what it read, then grows the hash
    other.append(70, "agent-1", {"n": 70})
    handler.append(71, "agent-1", {"n": 71})
    assert path.stat().st_ino == inode
    report = verify_audit(path)
    assert report.ok and report.lines == 9
    lines = (tmp_path / "training_data.pkl.audit.jsonl").read_text().splitlines()
    import json

    last = json.loads(lines[-1])
    assert last["operation"] == "append" and last["iteration"] == 71
    assert last["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and last["bytes"] == path.stat().st_size
    with path.open("ab") as file:  # a writer died between its tail and the commit: not part of the store
        file.write(b"1" + b"uncommitted" * 5)
    assert verify_audit(path).ok
    handler.append(72, "agent-1", {"n": 72})  # writes over it
    assert verify_audit(path).lines == 10 and verify_audit(path).ok
    with path.open("r+b") as file:  # a tail changed without the log is caught
        file.seek(-30, os.SEEK_END)
        file.write(b"X")
    assert not verify_audit(path).ok


def test_a_failing_commit_says_the_store_may_hold_either_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crewtrain_nb import StoreWriteError

    handler = filled(tmp_path)
    original = handler.load()
    real = os.pwrite

    def failing_commit(fd: int, data: Any, offset: int) -> int:
        if bytes(data) == b"(":
            raise OSError(5, os.strerror(5))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", failing_commit)
    with pytest.raises(StoreWriteError, match="may hold the new data or the previous data"):
        handler.append(50, "agent-0", {"x": 1})
    monkeypatch.undo()
    assert handler.load() == original  # the commit byte never landed: the old store
    handler.append(51, "agent-0", {"x": 2})
    assert 50 not in handler.load()["agent-0"] and handler.load()["agent-0"][51] == {"x": 2}


def test_a_tail_append_pickles_and_walks_only_the_new_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What makes a tail's cost constant: nothing of the store but the new record is walked or pickled.
    from crewtrain_nb.store import _pickle_file, _pieces, _placeholders, _tail

    handler = filled(tmp_path)
    handler.load()
    handler.append(50, "agent-0", {"initial_output": "first tail"})
    walked: list[Any] = []
    pickled: list[Any] = []
    real_walk, real_piece = _placeholders.is_tree, _placeholders.pickle_piece

    def walk(values: Any, **options: Any) -> bool:
        walked.append(list(values))
        return real_walk(values, **options)

    def piece(key: Any, value: Any, **options: Any) -> Any:
        pickled.append((key, value))
        return real_piece(key, value, **options)

    def whole(*args: Any) -> bytes:
        raise AssertionError("the whole store was pickled")

    monkeypatch.setattr(_placeholders, "is_tree", walk)
    monkeypatch.setattr(_pieces, "is_tree", walk)
    monkeypatch.setattr(_tail, "pickle_piece", piece)
    monkeypatch.setattr(_pickle_file, "dumps_dict", whole)
    record = {"initial_output": "second tail"}
    handler.append(51, "agent-0", record)
    monkeypatch.undo()
    assert pickled == [(51, record)]
    assert walked and all(value in (record, 51) for values in walked for value in values)
    assert CrewTrainingHandler(handler.file_path).load()["agent-0"][51] == record
