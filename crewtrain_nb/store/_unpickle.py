"""Safe unpickling: a restricted unpickler that only builds plain data.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes name any
importable callable and ``REDUCE`` calls it. Safe loading refuses every global
that is not on an allow-list of plain data types, *before* anything is imported
or called, so no code from the file runs.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import decimal
import importlib.util
import io
import pickle
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import CorruptStoreError, StoreError, UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "safe_loads", "trusted_loads"]

# Python 2 names that protocol 0-2 pickles use; CPython maps them only in the
# base ``find_class``, which an override does not reach.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocols 0-2 pickle ``bytes`` as ``_codecs.encode(text, "latin1")``. The
    # real ``_codecs.encode`` runs any registered codec (and imports its
    # module), so only the latin-1 form is honoured.
    if not isinstance(text, str) or encoding.replace("_", "-").lower() not in {"latin1", "latin-1"}:
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not plain data")
    return text.encode("latin-1", errors)


_PLAIN_TYPES: dict[tuple[str, str], object] = {
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "complex"): complex,
    ("builtins", "bool"): bool,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "time"): datetime.time,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
    ("decimal", "Decimal"): decimal.Decimal,
    ("uuid", "UUID"): uuid.UUID,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): _latin1_encode,
}


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocols 0-1 rebuild instances (e.g. uuid.UUID) through
    # ``copyreg._reconstructor(cls, base, state)``; allow it only for allowed
    # classes built on ``object`` or an allowed builtin.
    allowed = set(_PLAIN_TYPES.values())
    if cls not in allowed or not (base is builtins.object or base in allowed):
        raise pickle.UnpicklingError("copyreg._reconstructor used with a type that is not plain data")
    import copyreg

    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


_SPECIAL: dict[tuple[str, str], object] = {
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    # Only as the ``base`` argument of ``copyreg._reconstructor``; calling
    # ``object()`` builds nothing useful to an attacker.
    ("builtins", "object"): builtins.object,
}

# numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; pickles name either.
_NUMPY_NAMES: dict[tuple[str, str], tuple[str, str]] = {}
for _core in ("numpy.core", "numpy._core"):
    _NUMPY_NAMES[(f"{_core}.multiarray", "_reconstruct")] = ("multiarray", "_reconstruct")
    _NUMPY_NAMES[(f"{_core}.multiarray", "scalar")] = ("multiarray", "scalar")
    _NUMPY_NAMES[(f"{_core}.numeric", "_frombuffer")] = ("numeric", "_frombuffer")
_NUMPY_NAMES[("numpy", "ndarray")] = ("", "ndarray")
_NUMPY_NAMES[("numpy", "dtype")] = ("", "dtype")

#: Every ``(module, name)`` safe loading resolves; anything else is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(set(_PLAIN_TYPES) | set(_SPECIAL) | set(_NUMPY_NAMES))

_numpy_cache: dict[tuple[str, str], object] = {}


def _resolve_numpy(key: tuple[str, str]) -> object | None:
    if key in _numpy_cache:
        return _numpy_cache[key]
    if importlib.util.find_spec("numpy") is None:
        return None
    import numpy

    submodule, name = _NUMPY_NAMES[key]
    if not submodule:
        obj = getattr(numpy, name)
    else:
        core = getattr(numpy, "_core", None) or numpy.core  # numpy 1.x has only numpy.core
        obj = getattr(getattr(core, submodule), name)
    _numpy_cache[key] = obj
    return obj


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` only answers for :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: io.BytesIO, *, path: str) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        key = (_PY2_MODULES.get(module, module), name)
        found = _PLAIN_TYPES.get(key) or _SPECIAL.get(key)
        if found is None and key in _NUMPY_NAMES:
            found = _resolve_numpy(key)
        if found is None:
            raise UnsafePickleError(
                f"{self._path}: refused to load global {module}.{name}. Safe loading allows "
                "only plain data (dict, list, str, numbers, datetime, Decimal, UUID, numpy "
                "arrays); nothing from the file was run. If you trust this file, open it "
                "with trusted=True.",
                path=self._path,
                global_name=f"{module}.{name}",
            )
        return found

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise UnsafePickleError(
            f"{self._path}: the pickle uses a persistent id ({pid!r}), which plain data never does.",
            path=self._path,
            global_name="persistent_load",
        )


_DECODE_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    RecursionError,
    MemoryError,
    UnicodeDecodeError,
    SystemError,
    ImportError,
)


def _load(data: bytes, path: str, make: Callable[[io.BytesIO], pickle.Unpickler]) -> Any:
    buffer = io.BytesIO(data)
    try:
        obj = make(buffer).load()
    except StoreError:
        raise
    except _DECODE_ERRORS as exc:
        if isinstance(exc, ImportError):
            raise StoreError(
                f"{path}: the pickle needs {exc.name or 'a module'} to load ({exc}); "
                "import or install the code that wrote it.",
                path=path,
            ) from exc
        raise CorruptStoreError(
            f"{path}: not a readable pickle ({type(exc).__name__}: {exc}). The file is "
            "left untouched; restore it from a backup or move it aside.",
            path=path,
        ) from exc
    if buffer.tell() != len(data):
        raise CorruptStoreError(
            f"{path}: {len(data) - buffer.tell()} unexpected bytes after the end of the "
            "pickle. The file is left untouched; restore it from a backup or move it aside.",
            path=path,
        )
    return obj


def safe_loads(data: bytes, *, path: str) -> Any:
    """Unpickle ``data`` allowing only plain-data globals.

    Parameters
    ----------
    data
        The whole pickle.
    path
        The file it came from, for error messages.

    Raises
    ------
    UnsafePickleError
        The pickle names a global outside :data:`ALLOWED_GLOBALS`.
    CorruptStoreError
        The bytes are not a complete pickle.
    """
    return _load(data, path, lambda buffer: _RestrictedUnpickler(buffer, path=path))


def trusted_loads(data: bytes, *, path: str) -> Any:
    """Unpickle ``data`` with the full, unrestricted unpickler (code in it runs)."""
    return _load(data, path, pickle.Unpickler)
