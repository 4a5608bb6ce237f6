"""Flattening: records walked column by column into ``(leaf path, values by row)`` pieces.


Every function takes a *source*: a handler, a path of a store file (opened
through :class:`~crewtrain_nb.CrewTrainingHandler`, so safe loading applies), or
the plain nested dict. Nothing here mutates its input, writes files, or imports
matplotlib or ipywidgets.

How the wide frame is built fast: records are gathered in row order (agent,
then iteration), then flattened *column by column*. At each nesting level the
records are checked for one shared key set with a single C-level pass; when
they share it (the usual case: one agent logs the same keys every iteration),
each key's values are pulled out for all records at once with
:func:`operator.itemgetter` and turned into a numpy array straight away.
Records with other key sets are split into groups of equal keys, each group
takes the same path, and the groups' pieces are placed by row number, so
missing keys become NaN/None and no row is ever dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import is_, itemgetter, methodcaller
from typing import Any, Literal

import numpy as np

from ..store import OpaqueObject
from ._leaves import copy_leaf, is_array_type, is_immutable_type, is_integer_type, is_mapping_type, is_numeric_type
from ._shapes import Rows

Arrays = Literal["keep", "drop", "summary"]

_SUMMARY = ("len", "mean", "min", "max")
_MISSING = object()  # "this record has no such key"
#: Keys the first record of a slice lacks are read key by key up to (its key count + this
#: many); beyond, the records holding them are grouped by their extra keys.
_FEW_EXTRA_KEYS = 8


# -- flattening -------------------------------------------------------------------

#: Records are walked in slices of this many: each pass over a slice finds its
#: dicts and numbers still in the CPU cache (3x faster than whole-store passes).
_SLICE = 1024

Chunk = tuple[Any, "np.ndarray | list[Any]"]  # (row slice or row positions, values)


def _take(rows: slice | np.ndarray, picked: list[int]) -> np.ndarray:
    """Row positions of the ``picked`` members of a group at ``rows``."""
    positions = np.asarray(picked, dtype=np.intp)
    return positions + rows.start if isinstance(rows, slice) else rows[positions]


def row_positions(rows: slice | np.ndarray) -> np.ndarray:
    return np.arange(rows.start, rows.stop) if isinstance(rows, slice) else rows


@dataclass
class _Flattener:
    """Walks records column by column and collects each leaf path's values by row.

    ``mode`` chooses how leaf values are kept: ``"wide"`` turns numeric columns
    into numpy arrays at once (None -> NaN), ``"long"`` keeps values as stored,
    ``"metrics"`` keeps only numeric values, as float64.
    """

    arrays: Arrays
    mode: Literal["wide", "long", "metrics"]
    out: dict[tuple[Any, ...], list[Chunk]] = field(default_factory=dict)

    def run(self, items: list[Any]) -> dict[tuple[Any, ...], list[Chunk]]:
        for start in range(0, len(items), _SLICE):
            part = items[start : start + _SLICE]
            self.walk(part, slice(start, start + len(part)), ())
        return self.out

    def walk(self, items: list[Any], rows: slice | np.ndarray, path: tuple[Any, ...]) -> None:
        if not items:
            return
        kinds = set(map(type, items))
        if OpaqueObject in kinds:  # an instance of a user's class: one column per field, like a dict
            items = [item.fields if type(item) is OpaqueObject else item for item in items]
            kinds = set(map(type, items))
        maps = [is_mapping_type(kind) for kind in kinds]
        if all(maps):
            self._walk_maps(items, rows, path, exact=kinds == {dict})
            return
        if any(maps):  # some records hold a dict here, others a leaf
            inner = [i for i, item in enumerate(items) if isinstance(item, Mapping)]
            outer = [i for i, item in enumerate(items) if not isinstance(item, Mapping)]
            self._walk_maps([items[i] for i in inner], _take(rows, inner), path, exact=False)
            if outer:
                values = [items[i] for i in outer]
                self._leaf(values, _take(rows, outer), path or ("value",), set(map(type, values)))
            return
        self._leaf(items, rows, path or ("value",), kinds)  # a record that is not a dict is its own value

    def _walk_maps(self, items: list[Any], rows: slice | np.ndarray, path: tuple[Any, ...], *, exact: bool) -> None:
        keys = list(items[0])
        total = sum(map(len, items))
        if exact and total == len(keys) * len(items):
            # Same total size as "every record has the first one's keys": true unless
            # some record lacks one of them (KeyError; plain dicts insert nothing).
            try:
                columns = [list(map(itemgetter(key), items)) for key in keys]
            except KeyError:
                pass
            else:
                for key, values in zip(keys, columns, strict=True):
                    self.walk(values, rows, (*path, key))
                return
        # Records differ: a key missing here, an extra one there. Take the first
        # record's keys from every record, then the keys it does not have.
        seen = sum(self._walk_key(items, rows, path, key, exact=exact) for key in keys)
        if seen == total:
            return
        known = set(keys)
        extra = [key for key in dict.fromkeys(chain.from_iterable(items)) if key not in known]
        if len(extra) <= len(keys) + _FEW_EXTRA_KEYS:
            for key in extra:
                self._walk_key(items, rows, path, key, exact=False)
            return
        # Many different extra keys: group the records that have extras by their extra keys.
        by_keys: dict[frozenset[Any], list[int]] = {}
        for index, item in enumerate(items):
            own = frozenset(item.keys() - known)
            if own:
                by_keys.setdefault(own, []).append(index)
        for own, members in by_keys.items():
            group = [items[i] for i in members]
            for key in (key for key in group[0] if key in own):
                self.walk(list(map(itemgetter(key), group)), _take(rows, members), (*path, key))

    def _walk_key(
        self, items: list[Any], rows: slice | np.ndarray, path: tuple[Any, ...], key: Any, *, exact: bool
    ) -> int:
        """Walk one key of records that may lack it; return how many have it."""
        if exact:  # itemgetter is fastest, and plain dicts insert nothing on a miss
            try:
                values = list(map(itemgetter(key), items))
            except KeyError:
                pass
            else:
                self.walk(values, rows, (*path, key))
                return len(values)
        values = list(map(methodcaller("get", key, _MISSING), items))
        if not any(map(is_, values, repeat(_MISSING))):
            self.walk(values, rows, (*path, key))
            return len(values)
        present = [index for index, value in enumerate(values) if value is not _MISSING]
        self.walk([values[index] for index in present], _take(rows, present), (*path, key))
        return len(present)

    def _leaf(self, values: list[Any], rows: slice | np.ndarray, path: tuple[Any, ...], kinds: set[type]) -> None:
        if any(issubclass(kind, np.ndarray) for kind in kinds):  # 0-d arrays are scalars
            values = [value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value for value in values]
            kinds = set(map(type, values))
        if any(is_array_type(kind) for kind in kinds) and (self.arrays != "keep" or self.mode == "metrics"):
            is_array = [is_array_type(type(value)) for value in values]
            plain = [i for i, flag in enumerate(is_array) if not flag]
            array_rows: slice | np.ndarray
            if plain:
                picked = [i for i, flag in enumerate(is_array) if flag]
                arrays, array_rows = [values[i] for i in picked], _take(rows, picked)
            else:
                arrays, array_rows = values, rows
            if self.arrays == "summary":
                for name, column in zip(_SUMMARY, _summaries(arrays), strict=True):
                    self._add((*path, name), array_rows, column)
            if not plain:
                return
            values, rows = [values[i] for i in plain], _take(rows, plain)
            kinds = set(map(type, values))
        self._add(path, rows, self._compact(values, kinds))

    def _compact(self, values: list[Any], kinds: set[type]) -> np.ndarray | list[Any]:
        if self.mode == "long":
            return values if all(map(is_immutable_type, kinds)) else [copy_leaf(value) for value in values]
        if kinds == {float}:  # the common case first
            return np.fromiter(values, dtype=np.float64, count=len(values))
        numeric = all(map(is_numeric_type, kinds))
        if self.mode == "metrics":  # numeric leaves only (never None): mixed ones are filtered in _add
            return np.fromiter(values, dtype=np.float64, count=len(values)) if numeric else values
        if numeric and all(map(is_integer_type, kinds)):
            try:
                return np.fromiter(values, dtype=np.int64, count=len(values))
            except OverflowError:  # ints beyond int64 stay Python ints
                return values
        real = kinds - {type(None)}
        if real and all(map(is_numeric_type, real)):
            return np.array(values, dtype=np.float64)  # None -> NaN
        if kinds == {bool}:
            return np.fromiter(values, dtype=bool, count=len(values))
        if all(map(is_immutable_type, kinds)):
            return values
        return [copy_leaf(value) for value in values]

    def _add(self, path: tuple[Any, ...], rows: slice | np.ndarray, values: np.ndarray | list[Any]) -> None:
        if self.mode == "metrics" and not isinstance(values, np.ndarray):
            keep = [i for i, value in enumerate(values) if is_numeric_type(type(value))]
            if not keep:
                return
            values, rows = np.array([values[i] for i in keep], dtype=np.float64), _take(rows, keep)
        if len(values):
            self.out.setdefault(path, []).append((rows, values))


def _summaries(arrays: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``len``, ``mean``, ``min``, ``max`` of each array; the last three NaN unless it holds numbers."""
    count = len(arrays)
    nan = np.full(count, np.nan)
    try:
        block = np.asarray(arrays)  # equal shapes: one 2-D block, summarised in bulk
    except (ValueError, TypeError):
        block = None
    if block is not None and block.ndim >= 2 and block.dtype != object:
        lengths = np.full(count, block.shape[1], dtype=np.int64)
        if block.dtype.kind not in "iuf" or block.shape[1] == 0:
            return lengths, nan, nan.copy(), nan.copy()
        flat = block.reshape(count, -1)
        return lengths, flat.mean(axis=1, dtype=np.float64), flat.min(axis=1) * 1.0, flat.max(axis=1) * 1.0
    lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=count)
    means, lows, highs = nan, nan.copy(), nan.copy()
    for index, value in enumerate(arrays):
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):  # ragged nesting: not numeric
            continue
        if array.dtype.kind in "iuf" and array.size:
            means[index], lows[index], highs[index] = array.mean(), array.min(), array.max()
    return lengths, means, lows, highs


def flatten(
    rows: Rows, *, sep: str, arrays: Arrays, mode: Literal["wide", "long", "metrics"], reserved: frozenset[str]
) -> list[tuple[str, list[Chunk]]]:
    """``(column name, chunks)`` per leaf, in order of first appearance; names checked for clashes."""
    found = _Flattener(arrays=arrays, mode=mode).run(rows.items)
    named: dict[str, tuple[Any, ...]] = {}
    columns: list[tuple[str, list[Chunk]]] = []
    for path in _in_record_order(found, rows.items):
        chunks = found[path]
        name = sep.join(map(str, path))
        if name in reserved:  # e.g. the "agent" key CrewAI 0.86 keeps in each record
            name = f"record{sep}{name}"
        if name in named:
            raise ValueError(
                f"the keys {_describe(named[name])} and {_describe(path)} both become the column {name!r}; "
                "pass another sep= to tell them apart"
            )
        named[name] = path
        columns.append((name, chunks))
    return columns


def _leaf_paths(record: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Leaf paths of one record, depth first, in its own key order."""
    if type(record) is OpaqueObject:
        record = record.fields
    if not isinstance(record, Mapping):
        return [prefix or ("value",)]
    return [leaf for key, value in record.items() for leaf in _leaf_paths(value, (*prefix, key))]


def _in_record_order(found: dict[tuple[Any, ...], list[Chunk]], items: list[Any]) -> list[tuple[Any, ...]]:
    """Paths in order of first appearance: by the first row holding them, then by key order in that record.

    The walk meets paths group by group and slice by slice; this makes the
    order independent of both.
    """
    first_row = {
        path: min(rows.start if isinstance(rows, slice) else int(rows[0]) for rows, _ in chunks)
        for path, chunks in found.items()
    }
    ranks: dict[int, dict[tuple[Any, ...], int]] = {
        row: {leaf: rank for rank, leaf in enumerate(_leaf_paths(items[row]))} for row in set(first_row.values())
    }

    def key(path: tuple[Any, ...]) -> tuple[int, int, int]:
        row = first_row[path]
        if path in ranks[row]:
            return row, ranks[row][path], 0
        # A summary of an array leaf: after the leaf itself, in _SUMMARY order.
        return row, ranks[row].get(path[:-1], len(ranks[row])), 1 + _SUMMARY.index(path[-1])

    return sorted(found, key=key)


def _describe(path: tuple[Any, ...]) -> str:
    return "[" + "][".join(repr(key) for key in path) + "]"
