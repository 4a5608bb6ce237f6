"""CSV, JSON and Parquet writers for training stores.

Every writer takes a *source* like the frames do (a handler, a store path, or
the dict); reading goes through :func:`crewtrain_nb.store.open_source`, so safe
loading applies. Files are written to a temporary file beside the target and
renamed over it at the end: a failed export never leaves half a file. A new
export gets the permissions any new file of the user gets (the umask applies);
a replaced one keeps its mode. Large
stores are written in chunks with a progress bar that only shows on a terminal
or in a notebook.

The JSON format is an envelope around the store::

    {"format": "crewtrain_nb.store", "version": 2, "kind": "iterations",
     "data": {"agent": {"0": record, "1": record}, ...}}

Iteration keys are JSON strings, turned back into ints by :func:`import_json`
because ``kind`` says they are iterations. Inside records, values JSON cannot
hold (tuples, sets, bytes, non-finite floats, dicts with non-string keys,
datetimes, Decimals, UUIDs, numpy arrays and scalars) are tagged objects
``{"$type": ..., ...}``, so plain data comes back identical. An instance of a
user's class that safe loading kept as an :class:`~crewtrain_nb.store.OpaqueObject`
is ``{"$type": "object", "class": "module.QualName", "module": "module",
"state": ...}`` (plus ``"args"``/``"kwargs"`` when its pickle had them) and
comes back as the same placeholder, which the store writes as that class again.
Version 2 added ``"object"``; files of version 1 still import.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import functools
import io
import json
import math
import os
import sys
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from tqdm import tqdm

from .frames import Layout, open_store, to_frame
from .store import SHARED_MODE, OpaqueObject, Source, atomic_file

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "JSON_FORMAT",
    "JSON_VERSION",
    "export_csv",
    "export_json",
    "export_parquet",
    "import_json",
]

#: Rows (CSV, Parquet) or records (JSON) written per chunk; the progress bar advances per chunk.
DEFAULT_CHUNK_ROWS = 50_000
#: The ``format`` tag of a JSON export.
JSON_FORMAT = "crewtrain_nb.store"
#: The newest JSON format version this code writes and reads (2 added ``{"$type": "object"}``).
JSON_VERSION = 2

_TAG = "$type"
_PARQUET_HINT = "pip install 'crewtrain-nb[parquet]'"


# -- writing files ------------------------------------------------------------------


def _target(path: Any, argument: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"{argument} must be a file path (str or os.PathLike); got {path!r}")
    target = Path(os.fspath(path)).expanduser().absolute()
    if target.is_dir():
        raise IsADirectoryError(f"{target}: is a directory; give a file name for the export")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target.parent}: no such directory; create it before exporting to {target.name}")
    return target


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _show_progress(progress: bool | None, total: int, chunk: int) -> bool:
    """``progress`` if given; else only for more than one chunk, on a terminal or in a notebook."""
    if progress is not None:
        return bool(progress)
    if total <= chunk:
        return False
    try:
        interactive = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        interactive = False
    return interactive or _in_notebook()


def _bar(total: int, chunk: int, progress: bool | None, description: str, unit: str) -> tqdm[NoReturn]:
    # A bar updated by hand: no iterable, which types-tqdm spells tqdm[NoReturn].
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=True,
        disable=not _show_progress(progress, total, chunk),
        leave=False,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _check_chunk(chunk_rows: Any) -> int:
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an int >= 1; got {chunk_rows!r}")
    return chunk_rows


# -- CSV ---------------------------------------------------------------------------------


def _plain_json(value: Any) -> Any:
    """Lists, arrays and numpy scalars as the JSON-ready values they hold."""
    if isinstance(value, (np.ndarray, np.generic)):
        return _plain_json(value.tolist())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain_json(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return value  # anything JSON cannot hold becomes str() in _dumps_text


def _dumps_text(value: Any) -> str:
    return json.dumps(_plain_json(value), ensure_ascii=False, default=str)


def _json_text(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray, set, frozenset, dict)):
        return _dumps_text(value)
    return value


def _arrays_as_json(frame: pd.DataFrame) -> pd.DataFrame:
    changed = {name: frame[name].map(_json_text) for name in frame.columns if frame[name].dtype == object}
    return frame.assign(**changed) if changed else frame


def export_csv(
    source: Source,
    path: str | os.PathLike[str],
    *,
    layout: Layout = "wide",
    sep: str = ".",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool | None = None,
    trusted: bool = False,
) -> Path:
    """Write a store as CSV: UTF-8, a header row, no index.

    Parameters
    ----------
    source
        A handler, a store path, or the store's dict.
    path
        The CSV file to write (replaced atomically if it exists, keeping its
        permissions; a new file gets the usual ones: the umask applies).
    layout
        ``"wide"`` (one row per record, nested keys as columns) or ``"long"``
        (``agent, iteration, key, value``), as for :func:`~crewtrain_nb.to_frame`.
    sep
        Joins nested keys into column names.
    chunk_rows
        Rows written per chunk.
    progress
        Show a progress bar: ``None`` (default) when the store spans several
        chunks and stderr is a terminal or a notebook; ``True``/``False`` to force.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).

    Returns
    -------
    pathlib.Path
        The absolute path written.

    Notes
    -----
    Lists, tuples and arrays are written as JSON text (``[0.1, 0.2]``), so
    ``json.loads`` gives them back. Floats are written with full precision.

    Examples
    --------
    >>> import os, tempfile, pandas as pd
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> path = export_csv(make_metrics_data(iterations=3, weights=2), os.path.join(tempfile.mkdtemp(), "m.csv"))
    >>> pd.read_csv(path).columns.tolist()[:4]
    ['agent', 'iteration', 'loss', 'accuracy']
    """
    chunk = _check_chunk(chunk_rows)
    target = _target(path)
    frame = to_frame(source, layout=layout, sep=sep, arrays="keep", trusted=trusted)
    with atomic_file(target, mode=SHARED_MODE) as raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as file:
        if not len(frame):
            frame.to_csv(file, index=False, lineterminator="\n")
        with _bar(len(frame), chunk, progress, f"CSV {target.name}", "rows") as bar:
            for start in range(0, len(frame), chunk):
                part = _arrays_as_json(frame.iloc[start : start + chunk])
                part.to_csv(file, index=False, header=start == 0, lineterminator="\n")
                bar.update(len(part))
    return target


# -- JSON ---------------------------------------------------------------------------------


class _Unencodable(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__(type(value).__name__)
        self.value = value


_NUMPY_KINDS = "biufcUS"  # bool, ints, floats, complex, text, bytes: what tolist() gives back exactly


def _encode(value: Any) -> Any:
    """``value`` as JSON-ready data; what JSON cannot hold becomes a ``{"$type": ...}`` object."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return value if math.isfinite(value) else {_TAG: "float", "value": repr(value)}
    if kind is dict:
        if _TAG not in value and all(type(key) is str for key in value):
            return {key: _encode(item) for key, item in value.items()}
        return {_TAG: "dict", "items": [[_encode(key), _encode(item)] for key, item in value.items()]}
    if kind is list:
        return [_encode(item) for item in value]
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value)
    if isinstance(value, np.ndarray) and value.dtype.kind in _NUMPY_KINDS + "O" and value.dtype.fields is None:
        flat = value.ravel().tolist()
        return {_TAG: "ndarray", "dtype": value.dtype.str, "shape": list(value.shape), "data": _encode(flat)}
    if isinstance(value, np.generic) and value.dtype.kind in _NUMPY_KINDS:
        return {_TAG: "numpy", "dtype": value.dtype.str, "value": _encode(value.item())}
    if isinstance(value, np.dtype) and value.fields is None:
        return {_TAG: "dtype", "value": value.str}
    raise _Unencodable(value)


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    tuple: lambda v: {_TAG: "tuple", "items": [_encode(item) for item in v]},
    set: lambda v: {_TAG: "set", "items": [_encode(item) for item in v]},
    frozenset: lambda v: {_TAG: "frozenset", "items": [_encode(item) for item in v]},
    OrderedDict: lambda v: {_TAG: "OrderedDict", "items": [[_encode(k), _encode(item)] for k, item in v.items()]},
    bytes: lambda v: {_TAG: "bytes", "base64": base64.b64encode(v).decode("ascii")},
    bytearray: lambda v: {_TAG: "bytearray", "base64": base64.b64encode(bytes(v)).decode("ascii")},
    complex: lambda v: {_TAG: "complex", "real": _encode(v.real), "imag": _encode(v.imag)},
    datetime.datetime: lambda v: {_TAG: "datetime", "value": v.isoformat()},
    datetime.date: lambda v: {_TAG: "date", "value": v.isoformat()},
    datetime.time: lambda v: {_TAG: "time", "value": v.isoformat()},
    datetime.timedelta: lambda v: {_TAG: "timedelta", "value": [v.days, v.seconds, v.microseconds]},
    datetime.timezone: lambda v: {_TAG: "timezone", "value": _encode(v.utcoffset(None))},
    decimal.Decimal: lambda v: {_TAG: "Decimal", "value": str(v)},
    uuid.UUID: lambda v: {_TAG: "UUID", "value": str(v)},
    OpaqueObject: lambda v: _encode_opaque(v),
}


def _encode_opaque(value: OpaqueObject) -> dict[str, Any]:
    tagged = {_TAG: "object", "class": value.class_name, "module": value.module, "state": _encode(value.state)}
    if value.args:
        tagged["args"] = [_encode(item) for item in value.args]
    if value.kwargs:
        tagged["kwargs"] = _encode(value.kwargs)
    return tagged


def _decode_opaque(tagged: dict[str, Any]) -> OpaqueObject:
    name, module = tagged["class"], tagged["module"]
    if not (isinstance(name, str) and isinstance(module, str) and name.startswith(module + ".")):
        raise ValueError(f"an object's class {name!r} is not inside its module {module!r}")
    return OpaqueObject(
        module,
        name[len(module) + 1 :],
        state=_decode(tagged["state"]),
        args=tuple(_decode(item) for item in tagged.get("args", [])),
        kwargs=_decode(tagged.get("kwargs", {})),
    )


def _decode_ndarray(tagged: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(tagged["dtype"])
    flat = [_decode(item) for item in tagged["data"]]
    array = np.fromiter(flat, dtype=object, count=len(flat)) if dtype.kind == "O" else np.array(flat, dtype=dtype)
    return array.reshape(tagged["shape"])


def _pairs(tagged: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(_decode(key), _decode(item)) for key, item in tagged["items"]]


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda t: float(t["value"]),
    "dict": lambda t: dict(_pairs(t)),
    "OrderedDict": lambda t: OrderedDict(_pairs(t)),
    "tuple": lambda t: tuple(_decode(item) for item in t["items"]),
    "set": lambda t: {_decode(item) for item in t["items"]},
    "frozenset": lambda t: frozenset(_decode(item) for item in t["items"]),
    "bytes": lambda t: base64.b64decode(t["base64"]),
    "bytearray": lambda t: bytearray(base64.b64decode(t["base64"])),
    "complex": lambda t: complex(_decode(t["real"]), _decode(t["imag"])),
    "datetime": lambda t: datetime.datetime.fromisoformat(t["value"]),
    "date": lambda t: datetime.date.fromisoformat(t["value"]),
    "time": lambda t: datetime.time.fromisoformat(t["value"]),
    "timedelta": lambda t: datetime.timedelta(*t["value"]),
    "timezone": lambda t: datetime.timezone(_decode(t["value"])),
    "Decimal": lambda t: decimal.Decimal(t["value"]),
    "UUID": lambda t: uuid.UUID(t["value"]),
    "ndarray": _decode_ndarray,
    "numpy": lambda t: np.dtype(t["dtype"]).type(_decode(t["value"])),
    "dtype": lambda t: np.dtype(t["value"]),
    "object": _decode_opaque,
}


def _decode(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        tag = value.get(_TAG)
        if tag is None:
            return {key: _decode(item) for key, item in value.items()}
        decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
        if decoder is None:
            raise ValueError(f"unknown {_TAG} {tag!r}")
        return decoder(value)
    if kind is list:
        return [_decode(item) for item in value]
    return value


_dumps = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False)


def export_json(
    source: Source,
    path: str | os.PathLike[str],
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool | None = None,
    trusted: bool = False,
) -> Path:
    """Write a store as JSON that :func:`import_json` reads back identical.

    One record per line inside a small envelope (format tag, version, store
    kind); see the module docstring for the format.

    Parameters
    ----------
    source
        A handler, a store path, or the store's dict.
    path
        The JSON file to write (replaced as for :func:`export_csv`).
    chunk_rows
        Records per progress step.
    progress, trusted
        As for :func:`export_csv`.

    Returns
    -------
    pathlib.Path
        The absolute path written.

    Raises
    ------
    ValueError
        The source is not a store, an agent key is not a ``str``, or a record
        holds a value that is not plain data (e.g. an object of your own
        class loaded with ``trusted=True``; a placeholder of one is written as
        ``{"$type": "object"}``); the message names the agent and iteration.

    Examples
    --------
    >>> import os, tempfile
    >>> from crewtrain_nb.demo import make_training_data
    >>> data = make_training_data(agents=2, iterations=3)
    >>> path = export_json(data, os.path.join(tempfile.mkdtemp(), "training.json"))
    >>> import_json(path) == data
    True
    """
    chunk = _check_chunk(chunk_rows)
    target = _target(path)
    store = open_store(source, trusted=trusted)
    per_agent = store.kind == "trained_agents"
    total = len(store.data) if per_agent else sum(len(entry) for entry in store.data.values())
    header = {"format": JSON_FORMAT, "version": JSON_VERSION, "kind": store.kind}
    where = f"{store.path}: " if store.path else ""
    with (
        atomic_file(target, mode=SHARED_MODE) as raw,
        io.TextIOWrapper(raw, encoding="utf-8") as file,
        _bar(total, chunk, progress, f"JSON {target.name}", "records") as bar,
    ):
        file.write(_dumps(header)[:-1] + ', "data": {')
        done = 0
        for number, (agent, entry) in enumerate(store.data.items()):
            if type(agent) is not str:
                raise ValueError(f"{where}agent key {agent!r} is a {type(agent).__name__}; JSON export needs str keys")
            file.write(("," if number else "") + "\n" + _dumps(agent) + ": ")
            if per_agent:
                file.write(_dumps(_encode_at(entry, where, agent, None)))
                done += 1
            else:
                file.write("{")
                for step, (iteration, record) in enumerate(entry.items()):
                    text = _dumps(_encode_at(record, where, agent, iteration))
                    file.write(("," if step else "") + "\n  " + _dumps(str(int(iteration))) + ": " + text)
                    done += 1
                    if done % chunk == 0:
                        bar.update(chunk)
                file.write("}")
        file.write("\n}}\n")
        bar.update(done - bar.n)
    return target


def _encode_at(record: Any, where: str, agent: str, iteration: Any) -> Any:
    try:
        return _encode(record)
    except _Unencodable as failure:
        at = f"agent {agent!r}" + ("" if iteration is None else f", iteration {iteration!r}")
        raise ValueError(
            f"{where}{at}: a {type(failure.value).__name__} value cannot be written to JSON losslessly. "
            "JSON export takes plain data (dict, list, tuple, set, str, bytes, numbers, bool, None, datetime, "
            "Decimal, UUID, numpy arrays and scalars, placeholders of user classes); convert it first, "
            "or use export_csv/export_parquet."
        ) from None


def import_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a file written by :func:`export_json` back into the store's nested dict.

    Iteration keys come back as ints, and tagged values (tuples, sets, numpy
    arrays, ...) as their original types.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not JSON, not a crewtrain_nb export, or written by a newer version.
    """
    source = _source_path(path)
    try:
        with open(source, encoding="utf-8") as file:
            envelope = json.load(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{source}: no such file; give the path of a file written by export_json") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{source}: not a JSON file ({exc}); give a file written by export_json") from None
    if not isinstance(envelope, dict) or envelope.get("format") != JSON_FORMAT:
        raise ValueError(
            f'{source}: not a crewtrain_nb JSON export (no "format": {JSON_FORMAT!r}); '
            "import_json reads files written by export_json"
        )
    version = envelope.get("version")
    if not isinstance(version, int) or version > JSON_VERSION:
        raise ValueError(
            f"{source}: JSON export version {version!r}; this crewtrain_nb reads up to {JSON_VERSION}: upgrade it"
        )
    kind, data = envelope.get("kind"), envelope.get("data")
    if kind not in ("iterations", "trained_agents", "empty") or not isinstance(data, dict):
        raise ValueError(f"{source}: the export's kind/data are damaged (kind {kind!r}); export the store again")
    try:
        if kind == "trained_agents":
            return {agent: _decode(entry) for agent, entry in data.items()}
        return {
            agent: {_iteration(key, agent): _decode(record) for key, record in entry.items()}
            for agent, entry in data.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{source}: damaged record in the export ({exc}); export the store again") from None


def _iteration(key: str, agent: str) -> int:
    try:
        return int(key)
    except ValueError:
        raise ValueError(f"agent {agent!r}: iteration key {key!r} is not an int") from None


def _source_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise TypeError(f"path must be a file path (str or os.PathLike); got {path!r}")
    return Path(os.fspath(path)).expanduser().absolute()


# -- Parquet --------------------------------------------------------------------------------


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            f"export_parquet needs pyarrow, which the optional 'parquet' extra installs: {_PARQUET_HINT}"
        ) from exc
    return pa, pq


def _text_cell(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else _dumps_text(value)


def _arrow_table(frame: pd.DataFrame, pa: Any) -> Any:
    """The frame as an arrow table; object columns arrow cannot type (mixed values) become text."""
    fixed = {}
    for name in frame.columns:
        if frame[name].dtype != object:
            continue
        try:
            pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            fixed[name] = frame[name].map(_text_cell).astype(object)
    return pa.Table.from_pandas(frame.assign(**fixed) if fixed else frame, preserve_index=False)


def export_parquet(
    source: Source,
    path: str | os.PathLike[str],
    *,
    layout: Layout = "wide",
    sep: str = ".",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: bool | None = None,
    trusted: bool = False,
) -> Path:
    """Write a store as Parquet (needs the optional ``parquet`` extra: pyarrow).

    Parameters
    ----------
    source
        A handler, a store path, or the store's dict.
    path
        The Parquet file to write (replaced as for :func:`export_csv`).
    layout, sep
        As for :func:`~crewtrain_nb.to_frame`.
    chunk_rows
        Rows per row group.
    progress, trusted
        As for :func:`export_csv`.

    Returns
    -------
    pathlib.Path
        The absolute path written.

    Notes
    -----
    Array leaves become list columns. A column that mixes kinds of values
    (e.g. the ``value`` column of the long layout) is written as text: strings
    as they are, other values as JSON.

    Raises
    ------
    ImportError
        pyarrow is missing; the message says how to install it.
    """
    pa, pq = _pyarrow()
    chunk = _check_chunk(chunk_rows)
    target = _target(path)
    table = _arrow_table(to_frame(source, layout=layout, sep=sep, arrays="keep", trusted=trusted), pa)
    with atomic_file(target, mode=SHARED_MODE) as file:
        writer = pq.ParquetWriter(file, table.schema)
        try:
            if not table.num_rows:
                writer.write_table(table)
            with _bar(table.num_rows, chunk, progress, f"Parquet {target.name}", "rows") as bar:
                for start in range(0, table.num_rows, chunk):
                    part = table.slice(start, chunk)
                    writer.write_table(part, row_group_size=chunk)
                    bar.update(part.num_rows)
        finally:
            writer.close()
    return target
