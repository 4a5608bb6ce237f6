"""Tails: constant-cost changes to a pickled dict, written in the pickle format CrewAI reads.

A pickle ends at its first ``STOP``; ``pickle.load`` ignores what follows. A
store file can therefore grow by a *tail* that re-opens the top dict::

    <pickle of the dict, ending in STOP> POP_MARK <ops that set keys> <trailer> STOP

and is committed by overwriting the old ``STOP`` byte with ``MARK`` (one byte:
atomic). ``MARK POP_MARK`` is a no-op, so the committed file is one ordinary
pickle whose ops then set keys of the dict on the stack, replayed by the C
unpickler at C speed. Before the commit the file reads as the old store (the
unpickler stops at the old ``STOP``) and the bytes after it are an
*uncommitted tail*: they start with ``POP_MARK`` (or, after a power cut on a
file system that extends a file before writing its data, are zero bytes). The
next writer writes its own tail over them and truncates what is left.

The ops of a tail, each leaving the stack as it found it (the dict on top):

* a new or replaced record of an agent whose dict has memo slot ``s``:
  ``BINGET s <iteration> <record> SETITEM POP``;
* a new agent, or a replaced entry of the top dict: ``<key> <value> SETITEM``,
  a dict value getting the next free memo slot (``BINPUT``) for later tails.

Values are pickled without memo references into the file: a value that shares
no mutable object has no memo at all; one that shares objects (or holds a
cycle) gets a memo numbered from the first slot no one uses (explicit
``BINPUT``/``BINGET``, never ``MEMOIZE``, which numbers by position), so a
shared string or list comes back shared, and never as another value.

Each tail ends with a trailer ``LONG1 <size of the compacted pickle> POP`` (an
integer pushed and dropped), so any writer, in any process, knows how much of
the file is tails. :func:`should_compact` is the rule: once the tails would
exceed the compacted pickle, the next write is an ordinary atomic full
rewrite instead, so a file never grows past about twice its compacted size.
"""

from __future__ import annotations

import contextlib
import marshal
import math
import operator
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._placeholders import Piece, pickle_piece

__all__ = [
    "CommitFailed",
    "SetEntry",
    "SetKey",
    "TailError",
    "TailLayout",
    "diff_changes",
    "encode_tail",
    "is_uncommitted_tail",
    "layout_after_load",
    "layout_after_rewrite",
    "layout_after_tail",
    "should_compact",
    "write_tail",
]

#: The first byte of every tail; after the commit it follows the ``MARK`` that replaced the old ``STOP``.
TAIL_START = pickle.POP_MARK
#: What the old final ``STOP`` becomes at the commit.
COMMIT = pickle.MARK
_TRAILER_HEAD = pickle.LONG1 + bytes([8])
_TRAILER_SIZE = len(_TRAILER_HEAD) + 8 + len(pickle.POP) + len(pickle.STOP)


class TailError(Exception):
    """The file is not where the tail expects it to be (its last committed byte is not ``STOP``)."""


class CommitFailed(Exception):
    """The commit step (one byte and a sync) failed: the file may read as the old store or the new one."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class TailLayout:
    """What a writer must know of a store file to add a tail to it.

    Attributes
    ----------
    end
        Offset just past the final committed ``STOP``.
    base_end
        Size of the compacted pickle the tails extend (``end`` when there is no tail).
    next_slot
        The first memo slot the file does not use.
    slots
        ``key -> memo slot`` of the dict each key maps to, where the file's memo holds it.
    pending
        Bytes after ``end`` (an uncommitted tail) were there when the file was read.
    """

    end: int
    base_end: int
    next_slot: int
    slots: dict[Any, int] = field(default_factory=dict)
    pending: bool = False


@dataclass(frozen=True)
class SetKey:
    """``data[key] = value`` on the top dict (a new key goes last, an existing one keeps its place)."""

    key: Any
    value: Any


@dataclass(frozen=True)
class SetEntry:
    """``data[key][entry] = value``: a new or replaced record inside the dict ``data[key]``."""

    key: Any
    entry: Any
    value: Any


Change = SetKey | SetEntry


def is_uncommitted_tail(data: bytes | memoryview, end: int) -> bool:
    """Whether ``data[end:]``, the bytes after a complete pickle, are an uncommitted tail (or nothing).

    A tail starts with ``POP_MARK``; zero bytes are what a file extended but not
    yet written shows after a power cut. Anything else is not ours: the file is corrupt.
    """
    rest = memoryview(data)[end:]
    if not rest:
        return True
    if rest[:1] == TAIL_START:
        return True
    return rest.tobytes().count(0) == len(rest)


def _trailer_base(data: bytes | memoryview, end: int) -> int | None:
    """The compacted size a tail's trailer just before ``end`` records, or ``None`` (no tail there)."""
    start = end - _TRAILER_SIZE
    if start < 0:
        return None
    view = memoryview(data)
    if view[start : start + 2] != _TRAILER_HEAD or view[end - 2 : end] != pickle.POP + pickle.STOP:
        return None
    base = int.from_bytes(view[start + 2 : start + 10], "little", signed=True)
    return base if 0 < base < end else None


def layout_after_rewrite(data: dict[Any, Any], pieces: Mapping[Any, Piece | Any], size: int) -> TailLayout:
    """The layout of a file just written by ``_pieces.dumps_dict(data, pieces)`` (``size`` bytes, no tail)."""
    slots: dict[Any, int] = {}
    next_slot = 0
    for key in data:
        piece = pieces[key]
        if piece.value_is_dict and piece.slot is not None:
            slots[key] = piece.slot
        next_slot += piece.memo_count
    return TailLayout(end=size, base_end=size, next_slot=next_slot, slots=slots)


def layout_after_load(data: Any, payload: bytes, end: int, memo: Mapping[int, Any]) -> TailLayout | None:
    """The layout of ``payload`` whose unpickling ended at ``end`` with ``memo``, giving ``data``; ``None``: no dict.

    A key's slot is one whose memo entry *is* ``data[key]`` at the end of the
    load, so a tail's ``BINGET`` gets that very dict; a file any pickler wrote
    (CrewAI's included) can take tails.
    """
    if type(data) is not dict or end < 1 or payload[end - 1 : end] != pickle.STOP:
        return None
    wanted = {id(value): key for key, value in data.items() if type(value) is dict}
    slots: dict[Any, int] = {}
    highest = -1
    for index, obj in memo.items():
        highest = max(highest, index)
        key = wanted.get(id(obj))
        if key is not None and data[key] is obj:
            slots[key] = index
    base = _trailer_base(payload, end)
    return TailLayout(
        end=end,
        base_end=base if base is not None else end,
        next_slot=highest + 1,
        slots=slots,
        pending=len(payload) > end,
    )


#: Types whose ``==`` between two values of the same type is exact (no ``-0.0 == 0.0``, no NaN).
_EXACT: frozenset[type] = frozenset({str, bytes, int, bool, type(None)})


def _strictly_equal(old: Any, new: Any) -> bool:
    """Equal *and* of the same types and order all the way down (``1 == 1.0`` is not good enough here).

    Walks containers, taking identical objects as equal at once: a ``load()`` copy shares every leaf (and
    every key) with the snapshot, so an unchanged value costs a pass over its containers in C (``map``).
    Values of other types compare by ``marshal`` (version 2: no references, which depend on reference
    counts); a type marshal does not know, a NaN or a cycle counts as changed (a tail then rewrites it).
    Which objects are shared is not compared: a value equal to the snapshot's keeps the snapshot's sharing.
    """
    if old is new:
        return True
    kind = type(old)
    if kind is not type(new):
        return False
    if kind is dict:
        return (
            len(old) == len(new)
            and (all(map(operator.is_, old, new)) or all(map(_strictly_equal, old, new)))
            and (
                all(map(operator.is_, old.values(), new.values()))
                or all(map(_strictly_equal, old.values(), new.values()))
            )
        )
    if kind is list or kind is tuple:
        return len(old) == len(new) and (all(map(operator.is_, old, new)) or all(map(_strictly_equal, old, new)))
    if kind in _EXACT:
        return bool(old == new)
    if kind is float:
        return bool(old == new) and math.copysign(1.0, old) == math.copysign(1.0, new)
    try:
        return bool(old == new) and marshal.dumps(old, 2) == marshal.dumps(new, 2)
    except (ValueError, TypeError):
        return False


def _same(old: Any, new: Any) -> bool:
    try:
        return _strictly_equal(old, new)
    except RecursionError:  # a cycle, or nesting deeper than the walk goes: count it as changed
        return False


def diff_changes(old: dict[Any, Any], new: Any) -> list[Change] | None:
    """The changes that turn ``old`` into ``new`` as tail ops, or ``None`` when a tail cannot express them.

    A tail can set keys, not remove or reorder them: ``None`` when ``new``
    lacks a key of ``old`` or has them in another order, or is not a plain
    dict. A changed dict value whose old keys are the start of its new keys
    becomes one :class:`SetEntry` per new or changed entry; any other changed
    value a :class:`SetKey`.
    """
    if type(new) is not dict or len(new) < len(old):
        return None
    new_keys = iter(new)
    for key in old:
        if not _same_key(next(new_keys), key):
            return None
    changes: list[Change] = []
    for key, value in new.items():
        if key not in old:
            changes.append(SetKey(key, value))
            continue
        before = old[key]
        if _same(before, value):
            continue
        if type(before) is dict and type(value) is dict and _extends(before, value):
            changes.extend(
                SetEntry(key, entry, item)
                for entry, item in value.items()
                if entry not in before or not _same(before[entry], item)
            )
        else:
            changes.append(SetKey(key, value))
    return changes


def _extends(before: dict[Any, Any], after: dict[Any, Any]) -> bool:
    """Whether ``before``'s keys are the first keys of ``after``, in order."""
    if len(after) < len(before):
        return False
    keys = iter(after)
    return all(_same_key(next(keys), key) for key in before)


def _same_key(new: Any, old: Any) -> bool:
    """The same key, type included: ``{1: ...}`` and ``{1.0: ...}`` are equal dicts but not the same store."""
    return new is old or (type(new) is type(old) and bool(new == old))


def encode_tail(changes: list[Change], layout: TailLayout) -> tuple[bytes, dict[Any, int], int]:
    """The bytes of a tail making ``changes`` to the file ``layout`` describes.

    Returns
    -------
    tuple of (bytes, dict, int)
        The tail (from ``POP_MARK`` to its ``STOP``), the ``key -> slot`` map
        of the file once it is committed, and the next free memo slot after it.

    Raises
    ------
    KeyError
        A :class:`SetEntry` of a key without a known slot (use :class:`SetKey`).
    Exception
        Whatever pickling a value raises.
    """
    parts: list[bytes] = [TAIL_START]
    known = dict(layout.slots)
    base = layout.next_slot
    for change in changes:
        if isinstance(change, SetEntry):
            slot = known[change.key]
            piece = pickle_piece(change.entry, change.value, memo_base=base)
            parts.append(_get_op(slot))
            parts.append(piece.key)
            if piece.memo_base is None and piece.value_is_dict:
                parts.append(pickle.EMPTY_DICT + piece.value)  # a record needs no slot of its own
            else:
                parts.append(piece.value)
                base += piece.memo_count
            parts.append(pickle.SETITEM + pickle.POP)
        else:
            piece = pickle_piece(change.key, change.value, memo_base=base)
            parts.extend(piece.parts(base))
            base += piece.memo_count
            parts.append(pickle.SETITEM)
            if piece.value_is_dict and piece.slot is not None:
                known[change.key] = piece.slot
            else:
                known.pop(change.key, None)
    parts.append(_TRAILER_HEAD + layout.base_end.to_bytes(8, "little", signed=True) + pickle.POP + pickle.STOP)
    return b"".join(parts), known, base


def _get_op(slot: int) -> bytes:
    return pickle.BINGET + bytes([slot]) if slot < 256 else pickle.LONG_BINGET + slot.to_bytes(4, "little")


def layout_after_tail(layout: TailLayout, tail: bytes, slots: dict[Any, int], next_slot: int) -> TailLayout:
    """The layout once ``tail`` (from :func:`encode_tail`, with its ``slots``) is committed after ``layout``'s end."""
    return TailLayout(end=layout.end + len(tail), base_end=layout.base_end, next_slot=next_slot, slots=slots)


def should_compact(layout: TailLayout, tail_size: int) -> bool:
    """Whether to write the whole file anew (compact) instead of adding a tail of ``tail_size`` bytes.

    The rule: compact once the tails, with this one, would be larger than the
    compacted pickle. Each compaction then pays for as many bytes of tails as
    it writes, so its cost per append stays constant, and the file never
    holds more than about twice its compacted size.
    """
    return layout.end + tail_size - layout.base_end > layout.base_end


def _sync(fd: int) -> None:
    # fdatasync: the data and the size, not the times (fsync where there is no fdatasync).
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def write_tail(fd: int, end: int, tail: bytes) -> None:
    """Write ``tail`` after the committed pickle ending at ``end`` in the open file ``fd``, and commit it.

    1. write the tail at ``end`` (over any uncommitted tail) and cut the file
       just after it; sync: the file still reads as before (it ends at the old ``STOP``);
    2. overwrite the old ``STOP`` at ``end - 1`` with ``MARK`` (one byte); sync: the file
       reads with the tail.

    A crash before step 2 leaves the old store and an uncommitted tail, which
    the next writer overwrites; after it, the new store. The caller holds the locks.

    Raises
    ------
    TailError
        The byte at ``end - 1`` is not ``STOP`` (the file is not the one described).
    OSError
        The file system failed before step 2; the file is cut back to its old size (when it had no
        uncommitted tail) and reads as the old store.
    CommitFailed
        Step 2 failed (its ``error`` says how): the file may read as either.
    """
    if end < 1 or os.pread(fd, 1, end - 1) != pickle.STOP:
        raise TailError(f"no STOP at offset {end - 1}")
    size = os.fstat(fd).st_size
    view = memoryview(tail)
    offset = end
    try:
        while view:
            written = os.pwrite(fd, view, offset)
            view = view[written:]
            offset += written
        if size > offset:
            os.ftruncate(fd, offset)
        _sync(fd)
    except BaseException:
        if size == end:  # the file had no uncommitted tail: leave it byte for byte as it was (best effort)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, end)
        raise
    try:
        if os.pwrite(fd, COMMIT, end - 1) != 1:
            raise OSError("short write of the commit byte")
        _sync(fd)
    except OSError as exc:
        raise CommitFailed(exc) from exc
