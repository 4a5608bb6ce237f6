"""The allow-list of safe loading: the globals a pickle may name, and the guards for the few calls that need checks.

Everything here decides *what* a pickle may name before anything is imported or called;
``_numpy_checks`` checks numpy's constructions and ``_unpickle`` runs the unpicklers.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import decimal
import importlib.util
import uuid
from typing import Any

from ..errors import UnsafePickleError

# Python 2 names that protocol 0-2 pickles use; CPython maps them only in the
# base ``find_class``, which an override does not reach.
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class Refused(Exception):
    """An allowed global was called with arguments no plain-data pickle uses."""

    def __init__(self, global_name: str, reason: str) -> None:
        super().__init__(reason)
        self.global_name = global_name
        self.reason = reason


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocols 0-2 pickle ``bytes`` as ``_codecs.encode(text, "latin1")``. The
    # real ``_codecs.encode`` runs any registered codec (and imports its
    # module), so only the latin-1 form is honoured.
    if not isinstance(text, str) or encoding.replace("_", "-").lower() not in {"latin1", "latin-1"}:
        raise Refused("_codecs.encode", f"_codecs.encode with encoding {encoding!r}, which is not plain data")
    return text.encode("latin-1", errors)


def check_text_or_bytes(global_name: str, args: tuple[Any, ...]) -> None:
    # bytes(n)/bytearray(n) allocate n zero bytes from a few bytes of pickle;
    # real pickles pass the content itself (or latin-1 text with protocols 0-2).
    if not args:
        return
    source, *rest = args
    if isinstance(source, (bytes, bytearray)) and not rest:
        return
    if isinstance(source, str) and len(rest) == 1 and str(rest[0]).replace("_", "-").lower() in {"latin1", "latin-1"}:
        return
    raise Refused(
        global_name, f"{global_name} called with {type(source).__name__} arguments (gigabytes from a few bytes)"
    )


def check_str(args: tuple[Any, ...]) -> None:
    # str(data, encoding) looks the codec up by name, importing its module.
    if len(args) > 1:
        raise Refused("builtins.str", "str() with an encoding, which is not plain data")


PLAIN_TYPES: dict[tuple[str, str], object] = {
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
    # Protocols 0-1 rebuild instances of Python classes (e.g. uuid.UUID) as
    # ``copyreg._reconstructor(cls, object, None)``. Any other base would run
    # ``base.__init__(obj, state)``: bytearray's zero-fills ``state`` bytes.
    plain_classes = {value for value in PLAIN_TYPES.values() if isinstance(value, type)}
    if not (isinstance(cls, type) and cls in plain_classes and base is builtins.object and state is None):
        raise Refused("copyreg._reconstructor", "copyreg._reconstructor other than for a plain-data class")
    import copyreg

    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]  # private: typeshed has no stub


def refuse_newobj(*args: Any) -> Any:
    # copyreg.__newobj__(cls, *args) is cls.__new__(cls, *args): any class's constructor. Only a placeholder's
    # class reference may be its argument, which OpaqueLoading.call turns into a placeholder before this runs.
    raise Refused("copyreg.__newobj__", "copyreg.__newobj__ of an allowed type (plain data never needs it)")


def refuse_newobj_ex(*args: Any) -> Any:
    raise Refused("copyreg.__newobj_ex__", "copyreg.__newobj_ex__ of an allowed type (plain data never needs it)")


def refuse_getattr(*args: Any) -> Any:
    # Protocols 0-3 pickle a nested class as getattr(Outer, "Inner"), which OpaqueLoading.call resolves by name.
    raise Refused("builtins.getattr", "builtins.getattr other than for a nested class (it fetches any attribute)")


SPECIAL: dict[tuple[str, str], object] = {
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    # Only as the ``base`` argument of ``copyreg._reconstructor``; calling
    # ``object()`` builds nothing useful to an attacker.
    ("builtins", "object"): builtins.object,
}

# numpy moved ``numpy.core`` to ``numpy._core`` in 2.0; pickles name either.
NUMPY_NAMES: dict[tuple[str, str], tuple[str, str]] = {}
for _core in ("numpy.core", "numpy._core"):
    NUMPY_NAMES[(f"{_core}.multiarray", "_reconstruct")] = ("multiarray", "_reconstruct")
    NUMPY_NAMES[(f"{_core}.multiarray", "scalar")] = ("multiarray", "scalar")
    NUMPY_NAMES[(f"{_core}.numeric", "_frombuffer")] = ("numeric", "_frombuffer")
NUMPY_NAMES[("numpy", "ndarray")] = ("", "ndarray")
NUMPY_NAMES[("numpy", "dtype")] = ("", "dtype")

#: Every ``(module, name)`` safe loading resolves; anything else is refused.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(set(PLAIN_TYPES) | set(SPECIAL) | set(NUMPY_NAMES))

_numpy_cache: dict[tuple[str, str], object] = {}


def resolve_numpy(key: tuple[str, str]) -> object | None:
    if key in _numpy_cache:
        return _numpy_cache[key]
    if importlib.util.find_spec("numpy") is None:
        return None
    import numpy

    submodule, name = NUMPY_NAMES[key]
    if not submodule:
        obj: object = getattr(numpy, name)
    else:
        core = getattr(numpy, "_core", None) or numpy.core  # numpy 1.x has only numpy.core
        obj = getattr(getattr(core, submodule), name)
    _numpy_cache[key] = obj
    return obj


def refuse_global(path: str, module: str, name: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"{path}: refused to load global {module}.{name}. Safe loading allows "
        "only plain data (dict, list, str, numbers, datetime, Decimal, UUID, numpy "
        "arrays); nothing from the file was run. If you trust this file, open it "
        "with trusted=True.",
        path=path,
        global_name=f"{module}.{name}",
    )


#: What ``__reduce_ex__`` returns for protocols 0-1; only ever a placeholder's class (see ``_placeholders``).
COPYREG_NEWOBJ: frozenset[tuple[str, str]] = frozenset({("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")})
#: Protocols 0-3 name a nested class as ``getattr(Outer, "Inner")``; only ever a placeholder's class.
GETATTR = ("builtins", "getattr")

#: Allowed globals whose calls need their arguments checked; a pickle naming
#: one is loaded by :class:`_CheckedUnpickler`. Real stores rarely do: CrewAI
#: writes protocol 4, where bytes and bytearray have opcodes of their own.
CHECKED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),
        ("copyreg", "_reconstructor"),
        *COPYREG_NEWOBJ,
        GETATTR,
        *NUMPY_NAMES,
    }
)


def refuse_persistent_id(path: str, pid: Any) -> UnsafePickleError:
    return UnsafePickleError(
        f"{path}: the pickle uses a persistent id ({pid!r:.80}), which plain data never does.",
        path=path,
        global_name="persistent_load",
    )


class NeedsChecks(Exception):
    """The fast unpickler met a global whose calls must be checked: load again with :class:`_CheckedUnpickler`."""


#: The copyreg patterns pickle emits for instances, by the identity of what the checked unpickler resolves.
OPAQUE_PATTERNS: dict[int, str] = {
    id(_safe_reconstructor): "_reconstructor",
    id(refuse_newobj): "__newobj__",
    id(refuse_newobj_ex): "__newobj_ex__",
    id(refuse_getattr): "getattr",
}
