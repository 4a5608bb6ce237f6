"""Pure: store data -> pandas DataFrames.

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

import copy
import datetime
import decimal
import functools
import numbers
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import is_, itemgetter, methodcaller
from typing import Any, Literal

import numpy as np
import pandas as pd

from .crewai import FEEDBACK_KEYS, TRAINED_KEYS, assign_roles, feedback_status, role_label, similarity, text_of
from .errors import StoreFormatError
from .store import MAX_ITERATION, OpaqueObject, open_source, record_roles, resolve_agents

__all__ = [
    "OpenStore",
    "feedback_frame",
    "metrics_frame",
    "open_store",
    "runs_frame",
    "store_kind",
    "to_frame",
    "trained_agents_frame",
]

Layout = Literal["wide", "long"]
Arrays = Literal["keep", "drop", "summary"]
StoreKind = Literal["iterations", "trained_agents", "empty"]

_LAYOUTS = ("wide", "long")
_ARRAYS = ("keep", "drop", "summary")
_SUMMARY = ("len", "mean", "min", "max")
_STORE_SHAPES = (
    "{agent: {iteration(int): record}} (training_data.pkl, metric logs) or "
    "{role: {'suggestions', 'quality', 'final_summary'}} (trained_agents_data.pkl)"
)

# Leaves that cannot change: shared with the frame as they are. Anything else
# that lands in a frame cell (lists, arrays, sets, objects) is copied, because
# a handler's data is its cache and a user may mutate a cell.
_IMMUTABLE: frozenset[type] = frozenset(
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
_MISSING = object()  # "this record has no such key"
#: Keys the first record of a slice lacks are read key by key up to (its key count + this
#: many); beyond, the records holding them are grouped by their extra keys.
_FEW_EXTRA_KEYS = 8


# -- type predicates (cached per type: stores hold few distinct types) -----------


@functools.lru_cache(maxsize=256)
def _is_mapping_type(kind: type) -> bool:
    return issubclass(kind, Mapping)


@functools.lru_cache(maxsize=256)
def _is_numeric_type(kind: type) -> bool:
    """int, float and numpy numbers; never bool (``True`` is not a metric)."""
    return issubclass(kind, numbers.Real) and not issubclass(kind, (bool, np.bool_))


@functools.lru_cache(maxsize=256)
def _is_integer_type(kind: type) -> bool:
    return issubclass(kind, numbers.Integral) and not issubclass(kind, (bool, np.bool_))


@functools.lru_cache(maxsize=256)
def _is_array_type(kind: type) -> bool:
    return issubclass(kind, (list, tuple, np.ndarray))


@functools.lru_cache(maxsize=256)
def _is_immutable_type(kind: type) -> bool:
    return kind in _IMMUTABLE or issubclass(kind, np.generic)


def _copy_leaf(value: Any) -> Any:
    """A copy of a mutable leaf, so frame cells never alias the store's data."""
    kind = type(value)
    if _is_immutable_type(kind):
        return value
    if kind is list:
        return [_copy_leaf(item) for item in value]
    if kind is tuple:
        return tuple(_copy_leaf(item) for item in value)
    if isinstance(value, np.ndarray):
        return value.copy()
    try:
        return copy.deepcopy(value)
    except Exception:  # an object that cannot be copied is shared rather than failing the frame
        return value


# -- reading and checking a source ------------------------------------------------


@dataclass(frozen=True)
class OpenStore:
    """A source opened and checked once: its data (shared, never mutate it), file path and kind."""

    data: Mapping[Any, Any]
    path: str | None
    kind: StoreKind


def _where(path: str | None) -> str:
    return f"{path}: " if path else ""


def _fail(path: str | None, message: str) -> StoreFormatError:
    return StoreFormatError(_where(path) + message, path=path)


def _entry_kind(agent: Any, entry: Mapping[Any, Any], path: str | None) -> StoreKind:
    """``"iterations"`` or ``"trained_agents"`` for one non-empty agent entry, else a clear error."""
    kinds = set(map(type, entry))
    if kinds <= {int} or all(_is_integer_type(kind) for kind in kinds):
        for step in (min(entry), max(entry)):  # frames hold iterations as int64, as SQLite does
            if not -(2**63) <= step <= MAX_ITERATION:
                raise _fail(
                    path,
                    f"agent {agent!r}, iteration {step}: the key is beyond what an int64 holds (iterations "
                    "count from 0; crewtrain_nb's append refuses such keys). Renumber or remove that record "
                    "(load, edit, save) to read the store.",
                )
        return "iterations"
    if kinds == {str} and any(key in entry for key in TRAINED_KEYS):
        return "trained_agents"
    bad = next(key for key in entry if not _is_integer_type(type(key)))
    raise _fail(
        path,
        f"agent {agent!r}, iteration {bad!r}: iteration keys must be ints, got {type(bad).__name__}. "
        f"Expected {_STORE_SHAPES}. (A store written as JSON reads back with crewtrain_nb.import_json.)",
    )


def _classify(data: Any, path: str | None) -> StoreKind:
    if not isinstance(data, Mapping):
        raise _fail(path, f"the source holds a {type(data).__name__}, not a store; expected {_STORE_SHAPES}")
    kind: StoreKind = "empty"
    first: Any = None
    for agent, entry in data.items():
        if not isinstance(entry, Mapping):
            raise _fail(
                path,
                f"agent {agent!r} holds a {type(entry).__name__}, not a dict of iteration -> record "
                f"(or a trained-agent entry); expected {_STORE_SHAPES}. "
                "Pass the whole store, not one agent's records or one record.",
            )
        if not entry:
            continue
        this = _entry_kind(agent, entry, path)
        if kind == "empty":
            kind, first = this, agent
        elif this != kind:
            raise _fail(
                path,
                f"agent {agent!r} is shaped like a {this.replace('_', ' ')} entry but agent {first!r} like "
                f"an {kind} entry; a store holds one kind: {_STORE_SHAPES}",
            )
    return kind


def open_store(source: Any, *, agents: str | Iterable[str] | None = None, trusted: bool = False) -> OpenStore:
    """Open a source and check its shape once (for modules that read a store, e.g. the exports).

    With ``agents``, a SQLite store reads only those agents (through the
    handler's lazy access); other sources are read whole and selected from later.
    ``trusted`` opens a path with the full unpickler (only for files you trust).

    Raises
    ------
    ValueError
        (:class:`~crewtrain_nb.StoreFormatError`) the source is not a store;
        the message says which agent and iteration.
    """
    if isinstance(source, (list, tuple, set, frozenset)):
        raise StoreFormatError(
            f"source is a {type(source).__name__}, not a store; expected a handler, a store path, or {_STORE_SHAPES}"
        )
    data, path = open_source(source, agents=agents, trusted=trusted)
    return OpenStore(data, path, _classify(data, path))


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")


def _check_sep(sep: Any) -> None:
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"sep must be a non-empty str that joins nested keys (e.g. '.'); got {sep!r}")


# -- records in row order -----------------------------------------------------------


@dataclass
class _Rows:
    """The records of a store in row order: agents in store order, iterations ascending."""

    names: list[str]
    counts: np.ndarray
    iterations: np.ndarray | None  # None for a trained-agents store
    items: list[Any]
    #: ``{name the caller gave: the agent it resolved to}`` (empty when all agents are read).
    given: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.items)

    @functools.cached_property
    def agent_codes(self) -> np.ndarray:
        dtype = np.uint16 if len(self.names) < 2**16 else np.int64  # small codes sort by radix
        return np.repeat(np.arange(len(self.names), dtype=dtype), self.counts)


def _select(store: OpenStore, agents: str | Iterable[str] | None) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """``(name, key)`` of the agents to show, in store order, and ``{name given: agent}``.

    Store order is the order agents appear in the file (CrewAI's task order; a
    loaded dict's insertion order), whatever order ``agents`` names them in.
    Each name is resolved as everywhere (an exact id, a role, a unique id prefix).
    """
    named = {str(key): key for key in store.data}
    given = resolve_agents(
        list(named),
        agents,
        roles=lambda: {str(key): role for key, role in record_roles(store.data).items()},
        path=store.path,
    )
    if given is None:
        return list(named.items()), {}
    chosen = set(given.values())
    return [(name, key) for name, key in named.items() if name in chosen], given


def _collect(store: OpenStore, agents: str | Iterable[str] | None) -> _Rows:
    chosen, given = _select(store, agents)
    names = [name for name, _ in chosen]
    if store.kind == "trained_agents":
        items = [store.data[key] for _, key in chosen]
        return _Rows(names, np.ones(len(names), dtype=np.int64), None, items, given)
    items: list[Any] = []
    iterations: list[Any] = []
    counts = np.zeros(len(names), dtype=np.int64)
    for index, (_, key) in enumerate(chosen):
        entry = store.data[key]
        steps = list(entry)
        ordered = sorted(steps)
        if ordered == steps:
            items.extend(entry.values())
        else:
            steps = ordered
            items.extend(map(entry.__getitem__, steps))
        iterations.extend(steps)
        counts[index] = len(steps)
    return _Rows(names, counts, np.fromiter(iterations, dtype=np.int64, count=len(iterations)), items, given)


# -- flattening -------------------------------------------------------------------

#: Records are walked in slices of this many: each pass over a slice finds its
#: dicts and numbers still in the CPU cache (3x faster than whole-store passes).
_SLICE = 1024

_Chunk = tuple[Any, "np.ndarray | list[Any]"]  # (row slice or row positions, values)


def _take(rows: slice | np.ndarray, picked: list[int]) -> np.ndarray:
    """Row positions of the ``picked`` members of a group at ``rows``."""
    positions = np.asarray(picked, dtype=np.intp)
    return positions + rows.start if isinstance(rows, slice) else rows[positions]


def _positions(rows: slice | np.ndarray) -> np.ndarray:
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
    out: dict[tuple[Any, ...], list[_Chunk]] = field(default_factory=dict)

    def run(self, items: list[Any]) -> dict[tuple[Any, ...], list[_Chunk]]:
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
        maps = [_is_mapping_type(kind) for kind in kinds]
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
        if any(_is_array_type(kind) for kind in kinds) and (self.arrays != "keep" or self.mode == "metrics"):
            is_array = [_is_array_type(type(value)) for value in values]
            plain = [i for i, flag in enumerate(is_array) if not flag]
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
            return values if all(map(_is_immutable_type, kinds)) else [_copy_leaf(value) for value in values]
        if kinds == {float}:  # the common case first
            return np.fromiter(values, dtype=np.float64, count=len(values))
        numeric = all(map(_is_numeric_type, kinds))
        if self.mode == "metrics":  # numeric leaves only (never None): mixed ones are filtered in _add
            return np.fromiter(values, dtype=np.float64, count=len(values)) if numeric else values
        if numeric and all(map(_is_integer_type, kinds)):
            try:
                return np.fromiter(values, dtype=np.int64, count=len(values))
            except OverflowError:  # ints beyond int64 stay Python ints
                return values
        real = kinds - {type(None)}
        if real and all(map(_is_numeric_type, real)):
            return np.array(values, dtype=np.float64)  # None -> NaN
        if kinds == {bool}:
            return np.fromiter(values, dtype=bool, count=len(values))
        if all(map(_is_immutable_type, kinds)):
            return values
        return [_copy_leaf(value) for value in values]

    def _add(self, path: tuple[Any, ...], rows: slice | np.ndarray, values: np.ndarray | list[Any]) -> None:
        if self.mode == "metrics" and not isinstance(values, np.ndarray):
            keep = [i for i, value in enumerate(values) if _is_numeric_type(type(value))]
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


def _flatten(
    rows: _Rows, *, sep: str, arrays: Arrays, mode: Literal["wide", "long", "metrics"], reserved: frozenset[str]
) -> list[tuple[str, list[_Chunk]]]:
    """``(column name, chunks)`` per leaf, in order of first appearance; names checked for clashes."""
    found = _Flattener(arrays=arrays, mode=mode).run(rows.items)
    named: dict[str, tuple[Any, ...]] = {}
    columns: list[tuple[str, list[_Chunk]]] = []
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


def _in_record_order(found: dict[tuple[Any, ...], list[_Chunk]], items: list[Any]) -> list[tuple[Any, ...]]:
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


# -- building frames ---------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _string_dtype() -> Any:
    """The dtype pandas gives text by default (``str`` in pandas 3, ``object`` before)."""
    return pd.Series(["text"]).dtype


def _strings(labels: list[str], codes: np.ndarray) -> Any:
    """``labels[codes]`` as a text array, built without one Python object per row when possible."""
    dtype = _string_dtype()
    if getattr(dtype, "storage", None) == "pyarrow":
        import pyarrow as pa  # pandas uses it for str here, so it is installed

        dictionary = pa.DictionaryArray.from_arrays(
            pa.array(codes, type=pa.int32() if len(labels) < 2**31 else pa.int64()),
            pa.array(labels, type=pa.large_string()),
        )
        return pd.array(dictionary.cast(pa.large_string()), dtype=dtype)
    return pd.array(np.asarray(labels, dtype=object)[codes] if labels else np.array([], dtype=object), dtype=dtype)


def _in_order(n: int, chunks: list[_Chunk]) -> bool:
    """Whether the chunks are row slices that tile ``0..n`` in order (every record had the leaf)."""
    stop = 0
    for rows, _ in chunks:
        if not isinstance(rows, slice) or rows.start != stop:
            return False
        stop = rows.stop
    return stop == n


def _column(n: int, chunks: list[_Chunk]) -> Any:
    """One wide column of length ``n``: numpy for numbers and bools, pandas inference for the rest."""
    parts = [values for _, values in chunks]
    covered = sum(map(len, parts))
    if all(isinstance(part, np.ndarray) for part in parts):
        kinds = {part.dtype.kind for part in parts}
        if kinds <= {"i", "f"} or (kinds == {"b"} and covered == n):
            if covered == n and _in_order(n, chunks):
                return parts[0] if len(parts) == 1 else np.concatenate(parts)
            target = np.empty(n, dtype=np.result_type(*parts)) if covered == n else np.full(n, np.nan)
            for rows, values in chunks:
                target[rows] = values
            return target
    if covered == n and _in_order(n, chunks):
        pieces = (part.tolist() if isinstance(part, np.ndarray) else part for part in parts)
        target = np.fromiter(chain.from_iterable(pieces), dtype=object, count=n)
    else:
        target = np.full(n, None, dtype=object)
        for rows, values in chunks:
            target[rows] = np.fromiter(
                values.tolist() if isinstance(values, np.ndarray) else values, dtype=object, count=len(values)
            )
    return pd.Series(target).array


def _key_columns(rows: _Rows, order: np.ndarray | None = None) -> dict[str, Any]:
    codes = rows.agent_codes if order is None else rows.agent_codes[order]
    columns: dict[str, Any] = {"agent": _strings(rows.names, codes)}
    if rows.iterations is not None:
        columns["iteration"] = rows.iterations if order is None else rows.iterations[order]
    return columns


def _empty(columns: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


def _wide(rows: _Rows, columns: list[tuple[str, list[_Chunk]]]) -> pd.DataFrame:
    data = _key_columns(rows)
    while columns:  # pop as we go: each leaf's pieces are freed once its column is built
        name, chunks = columns.pop(0)
        data[name] = _column(rows.n, chunks)
    return pd.DataFrame(data, copy=False)


def _long(rows: _Rows, columns: list[tuple[str, list[_Chunk]]]) -> pd.DataFrame:
    keys = [name for name, _ in columns]
    positions = [_positions(r) for _, chunks in columns for r, _ in chunks]
    sizes = [len(p) for p in positions]
    key_codes = np.repeat(
        np.arange(len(keys), dtype=np.int64), [sum(len(v) for _, v in chunks) for _, chunks in columns]
    )
    row_of = np.concatenate(positions) if positions else np.array([], dtype=np.intp)
    order = np.argsort(row_of, kind="stable")  # by row; within a row, keys in column order
    pieces = (part.tolist() if isinstance(part, np.ndarray) else part for _, chunks in columns for _, part in chunks)
    values = np.fromiter(chain.from_iterable(pieces), dtype=object, count=sum(sizes))
    data = _key_columns(rows, row_of[order])
    data["key"] = _strings(keys, key_codes[order])
    data["value"] = pd.Series(values[order], dtype=object).array
    return pd.DataFrame(data, copy=False)


def _facts(store: OpenStore, rows: _Rows, **more: Any) -> dict[str, Any]:
    facts = {"source": store.path, "kind": store.kind, "agents": len(rows.names), "records": rows.n, **more}
    if rows.given:
        facts["named"] = dict(rows.given)  # what each name given as agents= meant (id, role or id prefix)
    return facts


def to_frame(
    source: Any,
    *,
    layout: Layout = "wide",
    sep: str = ".",
    arrays: Arrays = "keep",
    agents: str | Iterable[str] | None = None,
    trained: Any = None,
    trusted: bool = False,
) -> pd.DataFrame:
    """The records of a store as a DataFrame.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict.
    layout
        ``"wide"``: one row per (agent, iteration); columns ``agent`` (str),
        ``iteration`` (int64), then one column per leaf of the records, nested
        keys joined with ``sep`` (``metrics.f1``). A key missing from some
        records gives NaN/None there. Records that are not dicts land in a
        ``value`` column. A record key named ``agent`` or ``iteration`` (CrewAI
        0.86 keeps ``"agent"`` in each record) becomes ``record.agent``.
        ``"long"``: columns ``agent``, ``iteration``, ``key``, ``value``, one row
        per leaf present in a record.
    sep
        Joins nested keys into column names.
    arrays
        List, tuple and numpy-array leaves: ``"keep"`` (a copy in an object
        column), ``"drop"``, or ``"summary"`` (``<key>.len`` for every array and
        ``<key>.mean``, ``.min``, ``.max`` for numeric ones, NaN otherwise).
    agents
        Only these agents (one name or several); all by default. A name is an
        agent id, else a role (CrewAI 0.86 records carry ``agent_role``), else a
        unique prefix of an id; ``attrs["named"]`` says which id each name meant.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).
    trained
        The run's ``trained_agents_data.pkl`` (a path, a handler or its dict): adds ``role`` and
        ``label`` columns after ``iteration``. ``role``: recorded (the sidecar), stored (CrewAI 0.86
        records) or inferred (:func:`crewtrain_nb.crewai.match_roles`), NaN where the evidence is too
        weak; ``label``: ``"Role · 0f8fad5b"`` as the browser shows agents, ``" (inferred)"`` after an
        inferred role, else the id. ``attrs["roles"]`` maps each agent to ``(role, how)``. A record key
        named ``role`` or ``label`` then becomes ``record.role`` / ``record.label``.

    Returns
    -------
    pandas.DataFrame
        Rows by agent in store order (the order agents appear in the file:
        CrewAI's task order), then iteration in numeric order. A
        ``trained_agents_data``-shaped store gives one row per agent and no
        ``iteration`` column. ``attrs`` holds ``source`` (path or None),
        ``kind``, ``agents``, ``records`` and ``layout``.

    Raises
    ------
    ValueError
        The source is not a store (saying which agent and iteration), or an
        option is not one of its choices.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> frame = to_frame(make_metrics_data(iterations=12, weights=2))
    >>> list(frame.columns)[:5]
    ['agent', 'iteration', 'loss', 'accuracy', 'metrics.f1']
    >>> frame.loc[frame.agent == "coder", "iteration"].tolist()[-3:]
    [9, 10, 11]
    >>> to_frame({"a": {0: {"x": [1, 3]}}}, arrays="summary").columns.tolist()
    ['agent', 'iteration', 'x.len', 'x.mean', 'x.min', 'x.max']
    >>> to_frame({"a": {0: {"x": 1, "y": {"z": 2}}}}, layout="long")[["key", "value"]].values.tolist()
    [['x', 1], ['y.z', 2]]
    """
    _check_choice("layout", layout, _LAYOUTS)
    _check_choice("arrays", arrays, _ARRAYS)
    _check_sep(sep)
    store = open_store(source, agents=agents, trusted=trusted)
    if trained is None:
        return _frame(store, layout=layout, sep=sep, arrays=arrays, agents=agents, reserved=frozenset())
    frame = _frame(store, layout=layout, sep=sep, arrays=arrays, agents=agents, reserved=_ROLE_COLUMNS)
    return _with_roles(frame, store, source, trained)


_ROLE_COLUMNS = frozenset({"role", "label"})


def _with_roles(frame: pd.DataFrame, store: OpenStore, source: Any, trained: Any) -> pd.DataFrame:
    """``frame`` with ``role`` and ``label`` columns after ``iteration``, from :func:`crewtrain_nb.crewai.assign_roles`.

    ``role``: the agent's role, recorded (the sidecar), stored (CrewAI 0.86 records) or inferred from its
    feedback and the trained file's suggestions; NaN where the evidence is too weak. ``label``: as the
    browser labels agents, ``"Role · 0f8fad5b"``, with ``" (inferred)"`` after an inferred role, else the id.
    Roles are assigned over the whole training file, also when ``agents=`` selects some.
    """
    if store.kind == "trained_agents":
        raise ValueError(
            _where(store.path) + "trained= labels the agents of a training_data.pkl-shaped store; this is a "
            "trained-agents store (its agents are the roles already)"
        )
    matches = {str(match.agent): match for match in assign_roles(source, trained)} if len(frame) else {}
    agents = frame["agent"].astype(object)
    roles = [matches[agent].role if agent in matches else None for agent in agents]
    labels = [
        role_label(agent, matches[agent].role, matches[agent].how) if agent in matches else agent for agent in agents
    ]
    position = frame.columns.get_loc("iteration") + 1 if "iteration" in frame.columns else 1
    result = frame.copy(deep=False)
    result.insert(position, "role", pd.array(roles, dtype=_string_dtype()))
    result.insert(position + 1, "label", pd.array(labels, dtype=_string_dtype()))
    result.attrs = {**frame.attrs, "roles": {agent: (match.role, match.how) for agent, match in matches.items()}}
    return result


def _frame(
    store: OpenStore,
    *,
    layout: Layout,
    sep: str,
    arrays: Arrays,
    agents: str | Iterable[str] | None,
    reserved: frozenset[str],
) -> pd.DataFrame:
    rows = _collect(store, agents)
    keyed = {"agent", "iteration"} if rows.iterations is not None else {"agent"}
    if layout == "wide":
        columns = _flatten(rows, sep=sep, arrays=arrays, mode="wide", reserved=reserved | keyed)
        frame = _wide(rows, columns)
    else:
        columns = _flatten(rows, sep=sep, arrays=arrays, mode="long", reserved=frozenset())
        frame = _long(rows, columns)
    frame.attrs = _facts(store, rows, layout=layout)
    return frame


def store_kind(source: Any, *, trusted: bool = False) -> StoreKind:
    """What kind of store ``source`` is.

    Returns
    -------
    str
        ``"iterations"`` (``{agent: {iteration: record}}``: ``training_data.pkl``
        and metric logs), ``"trained_agents"`` (``{role: {"suggestions",
        "quality", "final_summary"}}``) or ``"empty"`` (no records at all).

    Raises
    ------
    ValueError
        The source is not a store; the message says which agent and iteration.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_trained_agents_data, make_training_data
    >>> store_kind(make_training_data()), store_kind(make_trained_agents_data()), store_kind({})
    ('iterations', 'trained_agents', 'empty')
    """
    return open_store(source, trusted=trusted).kind


_METRIC_COLUMNS = {"agent": _string_dtype(), "iteration": np.int64, "metric": _string_dtype(), "value": np.float64}


def metrics_frame(
    source: Any,
    *,
    sep: str = ".",
    arrays: Literal["drop", "summary"] = "drop",
    agents: str | Iterable[str] | None = None,
    trusted: bool = False,
) -> pd.DataFrame:
    """Tidy numeric data for plotting: one row per numeric leaf of every record.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict (an iterations store).
    sep
        Joins nested keys into metric names (``metrics.f1``).
    arrays
        ``"drop"`` ignores list/array leaves; ``"summary"`` adds their
        ``<key>.len``, ``.mean``, ``.min``, ``.max``.
    agents
        Only these agents (an id, a role or a unique id prefix each); all by default.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).

    Returns
    -------
    pandas.DataFrame
        Columns ``agent`` (str), ``iteration`` (int64), ``metric`` (str),
        ``value`` (float64), sorted by agent (in store order), metric, iteration. Numeric leaves
        are ints, floats and numpy numbers; bools, text and None are left out.

    Raises
    ------
    ValueError
        The source is not a store, or is a trained-agents store (use
        :func:`trained_agents_frame`).

    Examples
    --------
    >>> frame = metrics_frame({"a": {1: {"loss": 0.5, "ok": True, "m": {"f1": 0.7}}, 0: {"loss": 0.9}}})
    >>> frame.values.tolist()
    [['a', 0, 'loss', 0.9], ['a', 1, 'loss', 0.5], ['a', 1, 'm.f1', 0.7]]
    """
    _check_choice("arrays", arrays, ("drop", "summary"))
    _check_sep(sep)
    store = open_store(source, agents=agents, trusted=trusted)
    if store.kind == "trained_agents":
        raise ValueError(
            _where(store.path) + "metrics_frame needs an iterations store ({agent: {iteration: record}}); "
            "this is a trained-agents store: use trained_agents_frame()"
        )
    rows = _collect(store, agents)
    columns = _flatten(rows, sep=sep, arrays=arrays, mode="metrics", reserved=frozenset())
    if not columns:
        frame = _empty(_METRIC_COLUMNS)
        frame.attrs = _facts(store, rows, metrics=0)
        return frame
    columns.sort(key=itemgetter(0))
    names = [name for name, _ in columns]
    if all(_in_order(rows.n, chunks) for _, chunks in columns) and len(names) * len(rows.names) <= _MAX_BLOCKS:
        agent_codes, iterations, metric_codes, values = _tidy_complete(rows, columns)
    else:
        agent_codes, iterations, metric_codes, values = _tidy_sparse(rows, columns)
    data = {
        "agent": _strings(rows.names, agent_codes),
        "iteration": iterations,
        "metric": _strings(names, metric_codes),
        "value": values,
    }
    frame = pd.DataFrame(data, copy=False)
    frame.attrs = _facts(store, rows, metrics=len(names))
    return frame


#: Above this many (agent, metric) blocks, tidy rows are ordered by one sort instead of block copies.
_MAX_BLOCKS = 100_000

_Tidy = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _tidy_complete(rows: _Rows, columns: list[tuple[str, list[_Chunk]]]) -> _Tidy:
    """Every record has every metric: copy (agent, metric) blocks in order, no sort needed."""
    full: list[np.ndarray] = []
    while columns:  # free each metric's pieces once joined
        _, chunks = columns.pop(0)
        full.append(chunks[0][1] if len(chunks) == 1 else np.concatenate([values for _, values in chunks]))
    count = len(full)
    bounds = np.concatenate([[0], np.cumsum(rows.counts)])
    spans = [(int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:], strict=True) if stop > start]
    values = np.concatenate([column[start:stop] for start, stop in spans for column in full])
    del full
    assert rows.iterations is not None
    iterations = np.concatenate([np.tile(rows.iterations[start:stop], count) for start, stop in spans])
    agent_codes = np.repeat(np.arange(len(rows.names), dtype=rows.agent_codes.dtype), rows.counts * count)
    metric_codes = np.repeat(np.tile(np.arange(count, dtype=np.int32), len(rows.names)), np.repeat(rows.counts, count))
    return agent_codes, iterations, metric_codes, values


def _tidy_sparse(rows: _Rows, columns: list[tuple[str, list[_Chunk]]]) -> _Tidy:
    """Metrics missing from some records: gather (metric, row) pairs, then one stable sort by agent."""
    row_parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    while columns:
        _, chunks = columns.pop(0)
        where = np.concatenate([_positions(r) for r, _ in chunks])
        values = np.concatenate([v for _, v in chunks])
        if len(where) > 1 and not (where[1:] > where[:-1]).all():  # key groups of one slice: back in row order
            order = np.argsort(where, kind="stable")
            where, values = where[order], values[order]
        row_parts.append(where)
        value_parts.append(values)
    sizes = [len(part) for part in row_parts]
    row_of = np.concatenate(row_parts)
    del row_parts
    # Sorted by (metric, row) so far; a stable sort on the agent gives (agent, metric, iteration).
    order = np.argsort(rows.agent_codes[row_of], kind="stable")
    metric_codes = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)[order]
    values = np.concatenate(value_parts)[order]
    del value_parts
    row_of = row_of[order]
    assert rows.iterations is not None
    return rows.agent_codes[row_of], rows.iterations[row_of], metric_codes, values


_FEEDBACK_COLUMNS = {
    "agent": _string_dtype(),
    "iteration": np.int64,
    "initial_output": _string_dtype(),
    "human_feedback": _string_dtype(),
    "improved_output": _string_dtype(),
    "status": _string_dtype(),
    "initial_chars": "Int64",
    "feedback_chars": "Int64",
    "improved_chars": "Int64",
    "similarity": np.float64,
}


def feedback_frame(
    source: Any, *, agents: str | Iterable[str] | None = None, trained: Any = None, trusted: bool = False
) -> pd.DataFrame:
    """One row per ``training_data.pkl`` record: the texts, a status, their sizes and a similarity.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict.
    agents
        Only these agents (an id, a role or a unique id prefix each); all by default.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).
    trained
        The run's ``trained_agents_data.pkl`` (a path, a handler or its dict): adds ``role`` and
        ``label`` columns after ``iteration``, as :func:`to_frame` does.

    Returns
    -------
    pandas.DataFrame
        ``agent``, ``iteration``, ``agent_role`` (only when the records carry
        one, as CrewAI 0.86's do), ``initial_output``, ``human_feedback``,
        ``improved_output`` (text; NaN where missing; non-text values as ``str``),
        ``status`` (``"complete"``, ``"no_improved_output"``, ``"no_feedback"``,
        see :func:`crewtrain_nb.crewai.feedback_status`), ``initial_chars``,
        ``feedback_chars``, ``improved_chars`` (character counts, <NA> where
        missing) and ``similarity`` of initial and improved output (0-1, NaN
        without an improved output; see :func:`crewtrain_nb.crewai.similarity`).
        Agents in store order, then iterations ascending; ``attrs`` counts each status.

    Examples
    --------
    >>> frame = feedback_frame({"a": {0: {"initial_output": "x y", "human_feedback": "more"}}})
    >>> frame[["status", "initial_chars", "similarity"]].values.tolist()
    [['no_improved_output', 3, nan]]
    """
    store = open_store(source, agents=agents, trusted=trusted)
    if store.kind == "trained_agents":
        raise ValueError(
            _where(store.path) + "feedback_frame needs a training_data.pkl-shaped store; "
            "this is a trained-agents store: use trained_agents_frame()"
        )
    rows = _collect(store, agents)
    if not rows.n:
        frame = _empty(_FEEDBACK_COLUMNS)
        frame.attrs = _facts(store, rows, statuses={})
        return frame if trained is None else _with_roles(frame, store, source, trained)
    records = [record if isinstance(record, Mapping) else {} for record in rows.items]
    texts = {key: [text_of(record.get(key)) for record in records] for key in FEEDBACK_KEYS}
    statuses = [feedback_status(record) for record in records]
    data = _key_columns(rows)
    roles = [record.get("agent_role") for record in records]
    if any(role is not None for role in roles):  # CrewAI 0.86 names the role in every record
        data["agent_role"] = pd.array(list(map(text_of, roles)), dtype=_string_dtype())
    for key in FEEDBACK_KEYS:
        data[key] = pd.array(texts[key], dtype=_string_dtype())
    data["status"] = pd.array(statuses, dtype=_string_dtype())
    for key, name in zip(FEEDBACK_KEYS, ("initial_chars", "feedback_chars", "improved_chars"), strict=True):
        data[name] = pd.array([None if text is None else len(text) for text in texts[key]], dtype="Int64")
    data["similarity"] = np.array(
        [
            similarity(before, after) if after is not None and after.strip() else np.nan
            for before, after in zip(texts["initial_output"], texts["improved_output"], strict=True)
        ],
        dtype=np.float64,
    )
    frame = pd.DataFrame(data, copy=False)
    frame.attrs = _facts(store, rows, statuses={status: statuses.count(status) for status in dict.fromkeys(statuses)})
    return frame if trained is None else _with_roles(frame, store, source, trained)


_TRAINED_COLUMNS = {
    "agent": _string_dtype(),
    "quality": np.float64,
    "n_suggestions": np.int64,
    "suggestions": object,
    "final_summary": _string_dtype(),
}


def _suggestions(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_copy_leaf(item) for item in value]
    return [_copy_leaf(value)]


def trained_agents_frame(source: Any, *, trusted: bool = False) -> pd.DataFrame:
    """One row per role of a ``trained_agents_data.pkl``-shaped store.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).

    Returns
    -------
    pandas.DataFrame
        ``agent`` (the role), ``quality`` (float64, NaN when missing),
        ``n_suggestions`` (int64), ``suggestions`` (a list of str; empty when
        missing), ``final_summary`` (text, NaN when missing). Roles in store order.

    Raises
    ------
    ValueError
        The source is not a store, or is an iterations store.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_trained_agents_data
    >>> frame = trained_agents_frame(make_trained_agents_data())
    >>> frame.agent.tolist()
    ['Senior Researcher', 'Technical Writer', 'Quality Reviewer']
    >>> bool((frame.n_suggestions == frame.suggestions.map(len)).all())
    True
    """
    store = open_store(source, trusted=trusted)
    if store.kind == "iterations":
        raise ValueError(
            _where(store.path) + "trained_agents_frame needs a trained_agents_data.pkl-shaped store "
            "({role: {'suggestions', 'quality', 'final_summary'}}); this is an iterations store: "
            "use to_frame(), feedback_frame() or metrics_frame()"
        )
    rows = _collect(store, None)
    if not rows.n:
        frame = _empty(_TRAINED_COLUMNS)
        frame.attrs = _facts(store, rows)
        return frame
    suggestions = [_suggestions(entry.get("suggestions")) for entry in rows.items]
    quality = [entry.get("quality") for entry in rows.items]
    data = _key_columns(rows)
    data["quality"] = np.array(
        [float(q) if _is_numeric_type(type(q)) else np.nan for q in quality],
        dtype=np.float64,
    )
    data["n_suggestions"] = np.array([len(s) for s in suggestions], dtype=np.int64)
    data["suggestions"] = pd.Series(np.fromiter(suggestions, dtype=object, count=len(suggestions))).array
    data["final_summary"] = pd.array(
        [text_of(entry.get("final_summary")) for entry in rows.items], dtype=_string_dtype()
    )
    frame = pd.DataFrame(data, copy=False)
    frame.attrs = _facts(store, rows)
    return frame


def runs_frame(
    runs: Mapping[str, Any],
    *,
    sep: str = ".",
    arrays: Arrays = "keep",
    trusted: bool = False,
) -> pd.DataFrame:
    """The wide frames of several stores, one after another, with a leading ``run`` column.

    Parameters
    ----------
    runs
        ``{"run name": source, ...}``; each source as for :func:`to_frame`.
    sep, arrays, trusted
        As for :func:`to_frame`.

    Returns
    -------
    pandas.DataFrame
        ``run`` (str), then the columns of :func:`to_frame` (union over the
        runs; NaN/None where a run lacks a column). A record key named ``run``
        becomes ``record.run``. ``attrs["runs"]`` maps each run to its facts.

    Raises
    ------
    ValueError
        ``runs`` is empty, not a mapping, or mixes store kinds.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> frame = runs_frame({"lr=0.1": make_metrics_data(iterations=3), "lr=0.01": make_metrics_data(iterations=5)})
    >>> frame.groupby("run").size().to_dict()
    {'lr=0.01': 15, 'lr=0.1': 9}
    """
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(
            "runs must be a non-empty dict {'run name': source, ...}; "
            f"got {type(runs).__name__ if not isinstance(runs, Mapping) else 'an empty dict'}"
        )
    _check_choice("arrays", arrays, _ARRAYS)
    _check_sep(sep)
    frames: list[pd.DataFrame] = []
    facts: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for name, source in runs.items():
        store = open_store(source, trusted=trusted)
        frame = _frame(store, layout="wide", sep=sep, arrays=arrays, agents=None, reserved=frozenset({"run"}))
        facts[str(name)] = frame.attrs
        if store.kind != "empty":
            kinds[str(name)] = store.kind
        frame.insert(0, "run", pd.array([str(name)] * len(frame), dtype=_string_dtype()))
        frames.append(frame)
    if len(set(kinds.values())) > 1:
        raise ValueError(f"runs mix store kinds ({kinds}); compare stores of one kind")
    if "trained_agents" in kinds.values():
        frames = [frame.drop(columns="iteration") if "iteration" in frame else frame for frame in frames]
    nonempty = [frame for frame in frames if len(frame)] or frames[:1]
    combined = pd.concat(nonempty, ignore_index=True, sort=False) if len(nonempty) > 1 else nonempty[0].copy()
    combined.attrs = {"runs": facts}
    return combined
