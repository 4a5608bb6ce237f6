"""Column assembly: flattened pieces -> pandas columns and the wide, long and tidy frames."""

from __future__ import annotations

import functools
from collections.abc import Hashable
from itertools import chain
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._flatten import Chunk, row_positions
from ._shapes import OpenStore, Rows

Layout = Literal["wide", "long"]

# -- building frames ---------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def string_dtype() -> Any:
    """The dtype pandas gives text by default (``str`` in pandas 3, ``object`` before)."""
    return pd.Series(["text"]).dtype


def text_array(labels: list[str], codes: np.ndarray) -> Any:
    """``labels[codes]`` as a text array, built without one Python object per row when possible."""
    dtype = string_dtype()
    if getattr(dtype, "storage", None) == "pyarrow":
        import pyarrow as pa  # pandas uses it for str here, so it is installed

        indices = pa.array(codes, type=pa.int32()) if len(labels) < 2**31 else pa.array(codes, type=pa.int64())
        dictionary = pa.DictionaryArray.from_arrays(indices, pa.array(labels, type=pa.large_string()))
        # pandas-stubs has no overload for a pyarrow array, which pd.array takes for a pyarrow-backed dtype.
        return pd.array(dictionary.cast(pa.large_string()), dtype=dtype)  # type: ignore[call-overload]
    return pd.array(np.asarray(labels, dtype=object)[codes] if labels else np.array([], dtype=object), dtype=dtype)


def in_order(n: int, chunks: list[Chunk]) -> bool:
    """Whether the chunks are row slices that tile ``0..n`` in order (every record had the leaf)."""
    stop = 0
    for rows, _ in chunks:
        if not isinstance(rows, slice) or rows.start != stop:
            return False
        stop = rows.stop
    return stop == n


def _column(n: int, chunks: list[Chunk]) -> Any:
    """One wide column of length ``n``: numpy for numbers and bools, pandas inference for the rest."""
    parts = [values for _, values in chunks]
    covered = sum(map(len, parts))
    arrays = [part for part in parts if isinstance(part, np.ndarray)]
    if len(arrays) == len(parts):
        kinds = {part.dtype.kind for part in arrays}
        if kinds <= {"i", "f"} or (kinds == {"b"} and covered == n):
            if covered == n and in_order(n, chunks):
                return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            target = np.empty(n, dtype=np.result_type(*arrays)) if covered == n else np.full(n, np.nan)
            for rows, values in chunks:
                target[rows] = values
            return target
    if covered == n and in_order(n, chunks):
        pieces = (part.tolist() if isinstance(part, np.ndarray) else part for part in parts)
        target = np.fromiter(chain.from_iterable(pieces), dtype=object, count=n)
    else:
        target = np.full(n, None, dtype=object)
        for rows, values in chunks:
            target[rows] = np.fromiter(
                values.tolist() if isinstance(values, np.ndarray) else values, dtype=object, count=len(values)
            )
    return pd.Series(target).array


def key_columns(rows: Rows, order: np.ndarray | None = None) -> dict[str, Any]:
    codes = rows.agent_codes if order is None else rows.agent_codes[order]
    columns: dict[str, Any] = {"agent": text_array(rows.names, codes)}
    if rows.iterations is not None:
        columns["iteration"] = rows.iterations if order is None else rows.iterations[order]
    return columns


def empty_frame(columns: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


def wide_frame(rows: Rows, columns: list[tuple[str, list[Chunk]]]) -> pd.DataFrame:
    data = key_columns(rows)
    while columns:  # pop as we go: each leaf's pieces are freed once its column is built
        name, chunks = columns.pop(0)
        data[name] = _column(rows.n, chunks)
    return pd.DataFrame(data, copy=False)


def long_frame(rows: Rows, columns: list[tuple[str, list[Chunk]]]) -> pd.DataFrame:
    keys = [name for name, _ in columns]
    positions = [row_positions(r) for _, chunks in columns for r, _ in chunks]
    sizes = [len(p) for p in positions]
    key_codes = np.repeat(
        np.arange(len(keys), dtype=np.int64), [sum(len(v) for _, v in chunks) for _, chunks in columns]
    )
    row_of = np.concatenate(positions) if positions else np.array([], dtype=np.intp)
    order = np.argsort(row_of, kind="stable")  # by row; within a row, keys in column order
    pieces = (part.tolist() if isinstance(part, np.ndarray) else part for _, chunks in columns for _, part in chunks)
    values = np.fromiter(chain.from_iterable(pieces), dtype=object, count=sum(sizes))
    data = key_columns(rows, row_of[order])
    data["key"] = text_array(keys, key_codes[order])
    data["value"] = pd.Series(values[order], dtype=object).array
    return pd.DataFrame(data, copy=False)


#: What ``DataFrame.attrs`` holds, as pandas-stubs types it.
Attrs = dict[Hashable | None, Any]


def frame_facts(store: OpenStore, rows: Rows, **more: Any) -> Attrs:
    facts: Attrs = {"source": store.path, "kind": store.kind, "agents": len(rows.names), "records": rows.n}
    facts.update(more)
    if rows.given:
        facts["named"] = dict(rows.given)  # what each name given as agents= meant (id, role or id prefix)
    return facts


Tidy = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def tidy_complete(rows: Rows, columns: list[tuple[str, list[Chunk]]]) -> Tidy:
    """Every record has every metric: copy (agent, metric) blocks in order, no sort needed."""
    full: list[np.ndarray] = []
    while columns:  # free each metric's pieces once joined
        _, chunks = columns.pop(0)
        # Metric values are always arrays (the flattener makes them float64); asarray only tells the type checker.
        full.append(np.asarray(chunks[0][1]) if len(chunks) == 1 else np.concatenate([values for _, values in chunks]))
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


def tidy_sparse(rows: Rows, columns: list[tuple[str, list[Chunk]]]) -> Tidy:
    """Metrics missing from some records: gather (metric, row) pairs, then one stable sort by agent."""
    row_parts: list[np.ndarray] = []
    value_parts: list[np.ndarray] = []
    while columns:
        _, chunks = columns.pop(0)
        where = np.concatenate([row_positions(r) for r, _ in chunks])
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
