"""Pickle a top-level dict from cached per-key pieces.

An append changes one agent's entry, but ``pickle.dumps`` re-serialises every
agent. This module writes the same dict as ``PROTO 4, EMPTY_DICT, MARK,
<key, value>..., SETITEMS, STOP`` where each ``<key, value>`` piece is pickled
on its own (protocol 3 opcodes: no framing, so pieces concatenate) and kept
until that key changes. The result is an ordinary pickle of an ordinary dict:
``pickle.load`` and CrewAI read it unchanged. Each piece numbers its memo from
0; a later piece re-defining a memo slot is allowed by both unpicklers and a
piece only refers to slots it defined itself.
"""

from __future__ import annotations

import pickle
from typing import Any

__all__ = ["dumps_dict"]

_HEADER = pickle.PROTO + bytes([4]) + pickle.EMPTY_DICT
_PIECE_PROTOCOL = 3


def _piece(key: Any, value: Any) -> bytes:
    # dumps(x, 3) is PROTO 3 + body + STOP; keep the body only.
    return pickle.dumps(key, _PIECE_PROTOCOL)[2:-1] + pickle.dumps(value, _PIECE_PROTOCOL)[2:-1]


def dumps_dict(data: dict[Any, Any], pieces: dict[Any, bytes]) -> bytes:
    """Pickle ``data`` reusing ``pieces[key]`` where present; fill in the missing ones.

    Parameters
    ----------
    data
        A plain ``dict`` (not a subclass).
    pieces
        Cache of pickled ``key, value`` bodies, valid for ``data`` as it is now:
        the caller drops a key's piece whenever it changes that key's value.
        Updated in place; keys no longer in ``data`` are removed.

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
    for key, value in data.items():
        piece = pieces.get(key)
        if piece is None:
            piece = pieces[key] = _piece(key, value)
        parts.append(piece)
    parts.append(pickle.SETITEMS + pickle.STOP)
    return b"".join(parts)
