"""A fast copy of plain data that shares immutable leaves.

``copy.deepcopy`` is several times slower than re-unpickling a store, because it
memoises and copies every string. Plain data only needs its *containers*
copied for a caller's mutation not to reach the cache.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import uuid
from typing import Any

__all__ = ["IMMUTABLE_TYPES", "copy_plain"]

#: Types whose values cannot change: copies share them (here, and in frame cells: ``frames/_leaves.py``).
IMMUTABLE_TYPES: frozenset[type] = frozenset(
    {
        str,
        bytes,
        int,
        float,
        complex,
        bool,
        type(None),
        frozenset,
        datetime.datetime,
        datetime.date,
        datetime.time,
        datetime.timedelta,
        datetime.timezone,
        decimal.Decimal,
        uuid.UUID,
    }
)


def copy_plain(obj: Any) -> Any:
    """Return a copy of ``obj`` whose mutable containers are all new objects.

    Immutable leaves (strings, numbers, ...) are shared; anything that is not
    plain data falls back to :func:`copy.deepcopy`.
    """
    kind = type(obj)
    if kind in IMMUTABLE_TYPES:
        return obj
    if kind is dict:
        return {key: value if type(value) in IMMUTABLE_TYPES else copy_plain(value) for key, value in obj.items()}
    if kind is list:
        return [item if type(item) in IMMUTABLE_TYPES else copy_plain(item) for item in obj]
    if kind is tuple:
        return tuple(copy_plain(item) for item in obj)
    if kind is set:
        return set(obj)  # elements are hashable, hence immutable in plain data
    if kind is bytearray:
        return bytearray(obj)
    return copy.deepcopy(obj)
