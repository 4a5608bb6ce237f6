"""Leaf values of records: cached type predicates and copies, so frame cells never alias a store's data."""

from __future__ import annotations

import copy
import functools
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..store import IMMUTABLE_TYPES

# Leaves that cannot change (IMMUTABLE_TYPES, the store's own set, which its copies share) are shared with
# the frame as they are. Anything else that lands in a frame cell (lists, arrays, sets, objects) is copied,
# because a handler's data is its cache and a user may mutate a cell.


# -- type predicates (cached per type: stores hold few distinct types) -----------


def _cached_per_type(predicate: Callable[[type], bool]) -> Callable[[type], bool]:
    """``predicate`` behind an LRU cache, typed as taking any class (``lru_cache`` types its key as ``Hashable``,
    which mypy does not see ``type(value)`` to be)."""
    return functools.lru_cache(maxsize=256)(predicate)


@_cached_per_type
def is_mapping_type(kind: type) -> bool:
    return issubclass(kind, Mapping)


@_cached_per_type
def is_numeric_type(kind: type) -> bool:
    """int, float and numpy numbers; never bool (``True`` is not a metric)."""
    return issubclass(kind, numbers.Real) and not issubclass(kind, (bool, np.bool_))


@_cached_per_type
def is_integer_type(kind: type) -> bool:
    return issubclass(kind, numbers.Integral) and not issubclass(kind, (bool, np.bool_))


@_cached_per_type
def is_array_type(kind: type) -> bool:
    return issubclass(kind, (list, tuple, np.ndarray))


@_cached_per_type
def is_immutable_type(kind: type) -> bool:
    return kind in IMMUTABLE_TYPES or issubclass(kind, np.generic)


def copy_leaf(value: Any) -> Any:
    """A copy of a mutable leaf, so frame cells never alias the store's data."""
    kind = type(value)
    if is_immutable_type(kind):
        return value
    if kind is list:
        return [copy_leaf(item) for item in value]
    if kind is tuple:
        return tuple(copy_leaf(item) for item in value)
    if isinstance(value, np.ndarray):
        return value.copy()
    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is shared rather than failing the frame
        return value
