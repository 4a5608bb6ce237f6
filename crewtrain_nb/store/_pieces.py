"""Pickle a top-level dict from cached per-key pieces.

An append changes one agent's entry, but ``pickle.dumps`` re-serialises every
agent. This module writes the same dict as ``PROTO 4, EMPTY_DICT, MARK,
<key, value>..., SETITEMS, STOP`` where each ``<key, value>`` piece is pickled
on its own (protocol 3 opcodes: no framing, so pieces concatenate) and kept
until that key changes. The result is an ordinary, strictly valid pickle of an
ordinary dict: ``pickle.load``, CrewAI, the pure-Python ``pickle._Unpickler``
and ``pickletools.dis`` read it, and no memo slot is defined twice.

Memo slots: a piece whose value shares no mutable object (the usual record of
strings and numbers) is pickled without a memo, so it fits anywhere; when its
value is a dict (an agent's iterations) that dict gets the next memo slot as
the piece is spliced in (:attr:`Piece.slot`, what a later tail can refer to).
A value that shares objects or holds a cycle keeps a memo, numbered from the
first free slot where it sits; it is pickled again only when the pieces before
it change how many slots they take.
"""

from __future__ import annotations

import pickle
from typing import Any

from ._placeholders import Piece, is_tree, pickle_piece

__all__ = ["KNOWN_TREE", "Piece", "dumps_dict", "entry_after_insert"]


class _KnownTree:
    """A cache entry with no bytes yet, for a value known to share no mutable object (no walk needed)."""

    def __repr__(self) -> str:
        return "KNOWN_TREE"


#: In ``pieces``: the key's value changed and must be pickled, but it is known to share nothing.
KNOWN_TREE: Any = _KnownTree()


def entry_after_insert(old: Piece | _KnownTree | None, fresh: Any) -> _KnownTree | None:
    """The cache entry for a value whose piece was ``old``, after ``fresh`` (a new copy) was put inside it.

    ``KNOWN_TREE`` when the old value shared nothing (its piece was memo-free)
    and ``fresh`` shares nothing either, so the pickling skips the walk over
    the whole value; ``None`` (walk it) otherwise.
    """
    was_tree = old is KNOWN_TREE or (isinstance(old, Piece) and old.memo_base is None)
    return KNOWN_TREE if was_tree and is_tree((fresh,), fresh=True) else None

_HEADER = pickle.PROTO + bytes([4]) + pickle.EMPTY_DICT


def dumps_dict(data: dict[Any, Any], pieces: dict[Any, Piece]) -> bytes:
    """Pickle ``data`` reusing ``pieces[key]`` where present; fill in the missing ones.

    Parameters
    ----------
    data
        A plain ``dict`` (not a subclass).
    pieces
        Cache of pickled ``key, value`` pieces, valid for ``data`` as it is
        now: the caller drops a key's piece whenever it changes that key's
        value. Updated in place; keys no longer in ``data`` are removed.

    Returns
    -------
    bytes
        A complete pickle whose ``pickle.loads`` equals ``data``.
    """
    if not data:
        pieces.clear()
        return _HEADER + pickle.STOP
    for stale in pieces.keys() - data.keys():
        del pieces[stale]
    parts = [_HEADER, pickle.MARK]
    base = 0
    for key, value in data.items():
        piece = pieces.get(key)
        if piece is None or piece is KNOWN_TREE or not piece.fits(base):
            known = True if piece is KNOWN_TREE else None
            piece = pieces[key] = pickle_piece(key, value, memo_base=base, tree=known)
        parts.extend(piece.parts(base))
        base += piece.memo_count
    parts.append(pickle.SETITEMS + pickle.STOP)
    return b"".join(parts)
