"""Safe unpickling: a restricted unpickler that only builds plain data.

A pickle is a small program: its ``GLOBAL``/``STACK_GLOBAL`` opcodes name any
importable callable and ``REDUCE`` calls it. Safe loading refuses every global
that is not on an allow-list of plain data types, *before* anything is imported
or called, so no code from the file runs.

Allowed is not the same as harmless: ``bytearray(2**33)`` zero-fills 8 GiB and
``str(data, "hex")`` imports a codec module, so those few callables are
replaced by guards that accept only the arguments real pickles pass. numpy is
the hard case: ``ndarray.__setstate__`` and ``dtype.__setstate__`` trust their
input (a short element list is read out of bounds, an object field overlapping
an int field forges pointers; both crash the interpreter). A pickle that names
numpy is therefore loaded by a slower, pure-Python unpickler that checks every
numpy construction and ``BUILD`` before numpy sees it; pickles without numpy
keep the fast C unpickler. So do pickles of numpy scalars and plain (not
object, not structured) arrays: their dtypes, scalars and arrays are built by
the same checks, through stand-ins the C unpickler calls and placeholders its
``BUILD`` fills, and anything else sends the load to the checked unpickler
(see :class:`_FastNumpy`).
"""

from __future__ import annotations

import builtins
import collections
import collections.abc
import datetime
import decimal
import importlib.util
import io
import math
import pickle
import re
import sys
import types
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import CorruptStoreError, StoreError, UnsafePickleError
from ._placeholders import ClassRef, OpaqueHashError, OpaqueLoading, OpaqueObject, ShapeRefused, may_be_opaque
from ._quirks import quiet_bytearray_bug

__all__ = ["ALLOWED_GLOBALS", "allowed_class_map", "safe_loads", "trusted_loads"]

# Python 2 names that protocol 0-2 pickles use; CPython maps them only in the
# base ``find_class``, which an override does not reach.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class _Refused(Exception):
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
        raise _Refused("_codecs.encode", f"_codecs.encode with encoding {encoding!r}, which is not plain data")
    return text.encode("latin-1", errors)


def _check_text_or_bytes(global_name: str, args: tuple[Any, ...]) -> None:
    # bytes(n)/bytearray(n) allocate n zero bytes from a few bytes of pickle;
    # real pickles pass the content itself (or latin-1 text with protocols 0-2).
    if not args:
        return
    source, *rest = args
    if isinstance(source, (bytes, bytearray)) and not rest:
        return
    if isinstance(source, str) and len(rest) == 1 and str(rest[0]).replace("_", "-").lower() in {"latin1", "latin-1"}:
        return
    raise _Refused(
        global_name, f"{global_name} called with {type(source).__name__} arguments (gigabytes from a few bytes)"
    )


def _check_str(args: tuple[Any, ...]) -> None:
    # str(data, encoding) looks the codec up by name, importing its module.
    if len(args) > 1:
        raise _Refused("builtins.str", "str() with an encoding, which is not plain data")


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
    # Protocols 0-1 rebuild instances of Python classes (e.g. uuid.UUID) as
    # ``copyreg._reconstructor(cls, object, None)``. Any other base would run
    # ``base.__init__(obj, state)``: bytearray's zero-fills ``state`` bytes.
    plain_classes = {value for value in _PLAIN_TYPES.values() if isinstance(value, type)}
    if not (isinstance(cls, type) and cls in plain_classes and base is builtins.object and state is None):
        raise _Refused("copyreg._reconstructor", "copyreg._reconstructor other than for a plain-data class")
    import copyreg

    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


def _refuse_newobj(*args: Any) -> Any:
    # copyreg.__newobj__(cls, *args) is cls.__new__(cls, *args): any class's constructor. Only a placeholder's
    # class reference may be its argument, which OpaqueLoading.call turns into a placeholder before this runs.
    raise _Refused("copyreg.__newobj__", "copyreg.__newobj__ of an allowed type (plain data never needs it)")


def _refuse_newobj_ex(*args: Any) -> Any:
    raise _Refused("copyreg.__newobj_ex__", "copyreg.__newobj_ex__ of an allowed type (plain data never needs it)")


def _refuse_getattr(*args: Any) -> Any:
    # Protocols 0-3 pickle a nested class as getattr(Outer, "Inner"), which OpaqueLoading.call resolves by name.
    raise _Refused("builtins.getattr", "builtins.getattr other than for a nested class (it fetches any attribute)")


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


def _refuse_global(path: str, module: str, name: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"{path}: refused to load global {module}.{name}. Safe loading allows "
        "only plain data (dict, list, str, numbers, datetime, Decimal, UUID, numpy "
        "arrays); nothing from the file was run. If you trust this file, open it "
        "with trusted=True.",
        path=path,
        global_name=f"{module}.{name}",
    )


#: What ``__reduce_ex__`` returns for protocols 0-1; only ever a placeholder's class (see ``_placeholders``).
_COPYREG_NEWOBJ: frozenset[tuple[str, str]] = frozenset({("copyreg", "__newobj__"), ("copyreg", "__newobj_ex__")})
#: Protocols 0-3 name a nested class as ``getattr(Outer, "Inner")``; only ever a placeholder's class.
_GETATTR = ("builtins", "getattr")

#: Allowed globals whose calls need their arguments checked; a pickle naming
#: one is loaded by :class:`_CheckedUnpickler`. Real stores rarely do: CrewAI
#: writes protocol 4, where bytes and bytearray have opcodes of their own.
_CHECKED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "str"),
        ("builtins", "bytes"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),
        ("copyreg", "_reconstructor"),
        *_COPYREG_NEWOBJ,
        _GETATTR,
        *_NUMPY_NAMES,
    }
)


def _refuse_persistent_id(path: str, pid: Any) -> UnsafePickleError:
    return UnsafePickleError(
        f"{path}: the pickle uses a persistent id ({pid!r:.80}), which plain data never does.",
        path=path,
        global_name="persistent_load",
    )


class _NeedsChecks(Exception):
    """The fast unpickler met a global whose calls must be checked: load again with :class:`_CheckedUnpickler`."""


class _RestrictedUnpickler(pickle.Unpickler):
    """The fast (C) unpickler: only :data:`ALLOWED_GLOBALS`, and only those safe to call with any arguments."""

    def __init__(
        self,
        file: io.BytesIO,
        *,
        path: str,
        payload_size: int = 0,
        allowed_classes: dict[tuple[str, str], type] | None = None,
    ) -> None:
        super().__init__(file)
        self._path = path
        self._payload_size = payload_size
        self._allowed_classes = allowed_classes or {}
        #: The numpy stand-ins of this load, made when the pickle first names numpy's dtype or scalar.
        self.numpy: _FastNumpy | None = None

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        key = (_PY2_MODULES.get(module, module), name)
        role = _FAST_NUMPY.get(key)
        if role is not None and importlib.util.find_spec("numpy") is not None:
            if self.numpy is None:
                self.numpy = _FastNumpy(self._payload_size)
            return self.numpy.stand_in(role)
        if key in _CHECKED_GLOBALS:
            raise _NeedsChecks
        found = _PLAIN_TYPES.get(key) or _SPECIAL.get(key) or self._allowed_classes.get(key)
        if found is None:
            if may_be_opaque(*key):
                raise _NeedsChecks  # maybe a placeholder's class: the checked unpickler sees how it is used
            raise _refuse_global(self._path, module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise _refuse_persistent_id(self._path, pid)


_TYPE_CODE = re.compile(r"[A-Za-z][0-9]{0,12}")
_TIME_UNIT = re.compile(rb"[A-Za-z]{1,3}")


class _NumpyChecks:
    """Check every numpy construction a pickle asks for, and build dtypes with numpy's public constructor.

    numpy's own pickles only ever call ``_reconstruct(ndarray, (0,), b'b')``
    and fill the array with ``BUILD``, build dtypes as ``dtype(code, False,
    True)`` plus a ``BUILD`` with the layout, and scalars as ``scalar(dtype,
    raw_bytes)``. Anything else is refused. ``dtype.__setstate__`` is never
    called: it crashes on crafted states and accepts layouts numpy's
    constructor refuses (an object field overlapping an int field turns an
    int into a pointer). The dtype a ``BUILD`` describes is built anew and
    replaces the template everywhere the unpickler holds it.

    Parameters
    ----------
    payload_size
        Size of the whole pickle: arrays may not be much larger.
    """

    #: An element costs at least one byte of pickle; arrays of objects get this much headroom.
    _BYTES_PER_PICKLE_BYTE = 64
    _ALIGNED_STRUCT = 0x80  # numpy's NPY_ALIGNED_STRUCT dtype flag

    def __init__(self, payload_size: int) -> None:
        import numpy

        self.np = numpy
        self.budget = self._BYTES_PER_PICKLE_BYTE * payload_size + (1 << 20)
        # Arrays and dtype templates this load created and has not filled yet:
        # the only objects BUILD may fill (a cached dtype like float64 is shared
        # by the whole process, a view's memory belongs to another object).
        self.unfilled: dict[int, Any] = {}

    def checks(self) -> dict[int, Callable[..., Any]]:
        """The checked stand-ins, by the identity of the numpy callable they guard."""
        np = self.np

        def refuse_ndarray(*args: Any) -> Any:
            # ndarray(shape, object) fills every element: gigabytes from a few bytes.
            raise _Refused("numpy.ndarray", "numpy.ndarray called directly (numpy's pickles never do)")

        return {
            id(np.ndarray): refuse_ndarray,
            id(np.dtype): self.dtype,
            id(_resolve_numpy(("numpy._core.multiarray", "_reconstruct"))): self.reconstruct,
            id(_resolve_numpy(("numpy._core.multiarray", "scalar"))): self.scalar,
            id(_resolve_numpy(("numpy._core.numeric", "_frombuffer"))): self.frombuffer,
        }

    def handles(self, inst: Any) -> bool:
        """Whether a ``BUILD`` on ``inst`` must go through :meth:`build`."""
        return isinstance(inst, (self.np.ndarray, self.np.dtype, self.np.generic))

    def build(self, inst: Any, state: Any) -> Any:
        """``BUILD`` on a numpy object: once, on what this load created; returns what replaces ``inst``."""
        if self.unfilled.pop(id(inst), None) is not inst:
            raise _Refused("numpy", f"BUILD on a numpy {type(inst).__name__} numpy's pickles never fill")
        if isinstance(inst, self.np.ndarray):
            self.fill_array(inst, state)
            return inst
        return self.dtype_from_state(inst, state)

    def checked_dtype(self, dtype: Any) -> Any:
        if not isinstance(dtype, self.np.dtype):
            raise _Refused("numpy.dtype", f"a {type(dtype).__name__} where numpy's pickles have a dtype")
        return dtype

    def dtype(self, code: Any = None, align: Any = False, copy: Any = False) -> Any:
        # numpy pickles a dtype as a bare type code ("f8", "V16", "M8"); longer
        # strings go through numpy's parser, which compiles shape expressions.
        if not (isinstance(code, str) and _TYPE_CODE.fullmatch(code)) or not (isinstance(align, bool) and copy is True):
            # Without copy=True, dtype("f8") is numpy's shared float64, which a BUILD would change process-wide.
            raise _Refused("numpy.dtype", f"numpy.dtype({code!r:.40}, ...) is not how numpy pickles a dtype")
        dtype = self.np.dtype(code, align, copy)
        self.unfilled[id(dtype)] = dtype
        return dtype

    def dtype_from_state(self, template: Any, state: Any) -> Any:
        """The dtype ``template.__setstate__(state)`` would describe, built by numpy's constructor."""
        np = self.np
        if type(state) is not tuple or len(state) not in (8, 9):
            raise _Refused("numpy.dtype", "a numpy dtype state that is not numpy's")
        version, byteorder, subarray, names, fields, itemsize, _alignment, flags = state[:8]
        if version not in (3, 4) or byteorder not in ("<", ">", "|", "=") or type(flags) is not int:
            raise _Refused("numpy.dtype", "a numpy dtype state that is not numpy's")
        try:
            if names is not None:
                dtype = np.dtype(self._struct_spec(template, names, fields, itemsize), align=bool(flags & 0x80))
            elif subarray is not None:
                if type(subarray) is not tuple or len(subarray) != 2:
                    raise _Refused("numpy.dtype", "a numpy subarray state that is not numpy's")
                base, shape = subarray
                dtype = np.dtype((self.checked_dtype(base), self._shape(shape)))
            else:
                dtype = self._simple(template, byteorder, state[8] if len(state) == 9 else None)
        except (TypeError, ValueError) as exc:
            raise _Refused("numpy.dtype", f"a numpy dtype numpy itself refuses to build ({exc})") from exc
        if type(itemsize) is not int or itemsize not in (-1, dtype.itemsize):
            raise _Refused("numpy.dtype", f"a numpy dtype state whose size {itemsize!r} does not match {dtype}")
        return dtype

    def _struct_spec(self, template: Any, names: Any, fields: Any, itemsize: Any) -> dict[str, Any]:
        if template.kind != "V" or type(names) is not tuple or type(fields) is not dict or type(itemsize) is not int:
            raise _Refused("numpy.dtype", "a numpy structured dtype state that is not numpy's")
        formats, offsets, titles = [], [], []
        for name in names:
            field = fields.get(name) if type(name) is str else None
            if type(field) is not tuple or len(field) not in (2, 3) or type(field[1]) is not int:
                raise _Refused("numpy.dtype", f"a numpy field state that is not numpy's: {name!r:.40}")
            formats.append(self.checked_dtype(field[0]))
            offsets.append(field[1])
            titles.append(field[2] if len(field) == 3 else None)
        spec: dict[str, Any] = {"names": list(names), "formats": formats, "offsets": offsets, "itemsize": itemsize}
        if any(title is not None for title in titles):
            spec["titles"] = titles
        return spec

    def _simple(self, template: Any, byteorder: str, extra: Any) -> Any:
        np = self.np
        dtype = template
        if template.kind in "mM":
            # Version 4 states carry the unit: (metadata, (b"ns", count, 1, 1)).
            unit = extra[1] if type(extra) is tuple and len(extra) == 2 and type(extra[1]) is tuple else None
            if not (unit and type(unit[0]) is bytes and _TIME_UNIT.fullmatch(unit[0]) and type(unit[1]) is int):
                raise _Refused("numpy.dtype", "a numpy datetime dtype state that is not numpy's")
            dtype = np.dtype(f"{template.kind}8[{unit[1]}{unit[0].decode()}]")
        if byteorder in "<>" and dtype.byteorder != "|":
            dtype = dtype.newbyteorder(byteorder)
        return dtype

    def _shape(self, shape: Any) -> tuple[int, ...]:
        if not isinstance(shape, tuple) or not all(type(size) is int and size >= 0 for size in shape):
            raise _Refused("numpy.ndarray", f"a numpy shape that is not a tuple of sizes: {shape!r:.60}")
        return shape

    def _count(self, shape: Any) -> int:
        count = math.prod(self._shape(shape))
        if count > self.budget:
            raise _Refused("numpy.ndarray", f"a numpy array of {count} elements from a {self.budget}-byte budget")
        return count

    def reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not self.np.ndarray or shape != (0,) or dtype != b"b":
            raise _Refused("numpy._core.multiarray._reconstruct", "_reconstruct other than numpy's empty template")
        array = _resolve_numpy(("numpy._core.multiarray", "_reconstruct"))(subtype, shape, dtype)  # type: ignore[operator]
        self.unfilled[id(array)] = array
        return array

    def scalar(self, dtype: Any, data: Any = None) -> Any:
        checked = self.checked_dtype(dtype)
        if checked.hasobject or type(data) is not bytes or len(data) != checked.itemsize:
            raise _Refused("numpy._core.multiarray.scalar", f"a numpy scalar of {checked!r} from {type(data).__name__}")
        return _resolve_numpy(("numpy._core.multiarray", "scalar"))(checked, data)  # type: ignore[operator]

    def frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> Any:
        checked = self.checked_dtype(dtype)
        count = self._count(shape)
        if checked.hasobject or not isinstance(buffer, (bytes, bytearray)) or len(buffer) != count * checked.itemsize:
            raise _Refused("numpy._core.numeric._frombuffer", "an array buffer that does not match its dtype and shape")
        if order not in ("C", "F"):
            raise _Refused("numpy._core.numeric._frombuffer", f"array order {order!r:.20}")
        frombuffer = _resolve_numpy(("numpy._core.numeric", "_frombuffer"))
        return frombuffer(buffer, checked, shape, order)  # type: ignore[operator]

    def fill_array(self, array: Any, state: Any) -> None:
        """``BUILD`` of an array: version 1, a checked dtype, and data that matches the shape exactly."""
        if type(state) is not tuple or len(state) != 5 or state[0] != 1 or type(state[3]) is not bool:
            raise _Refused("numpy.ndarray", "a numpy array state that is not numpy's")
        _, shape, dtype, fortran, data = state
        checked = self.checked_dtype(dtype)
        count = self._count(shape)
        if checked.hasobject:
            # numpy reads ``count`` items from the list without checking its length.
            if type(data) is not list or len(data) != count:
                raise _Refused("numpy.ndarray", "a numpy object array whose element list does not match its shape")
        elif type(data) is not bytes or len(data) != count * checked.itemsize:
            raise _Refused("numpy.ndarray", "a numpy array whose data does not match its dtype and shape")
        if count * checked.itemsize > self.budget:
            raise _Refused("numpy.ndarray", "a numpy array far larger than the file could describe")
        array.__setstate__((1, shape, checked, fortran, data))


#: The numpy globals numpy's own pickles name, which the C unpickler may call through :class:`_FastNumpy`.
_FAST_NUMPY: dict[tuple[str, str], str] = {("numpy", "dtype"): "dtype", ("numpy", "ndarray"): "ndarray"}
for _core in ("numpy.core", "numpy._core"):
    _FAST_NUMPY[(f"{_core}.multiarray", "scalar")] = "scalar"
    _FAST_NUMPY[(f"{_core}.multiarray", "_reconstruct")] = "reconstruct"
    _FAST_NUMPY[(f"{_core}.numeric", "_frombuffer")] = "frombuffer"


class _StandIn:
    """What the C unpickler gets for an allowed numpy global: calls go to the checks; ``BUILD`` on it is refused."""

    __slots__ = ("_call", "role")

    def __init__(self, call: Callable[..., Any], role: str) -> None:
        self._call = call
        self.role = role

    def __call__(self, *args: Any) -> Any:
        return self._call(*args)

    def __setstate__(self, state: Any) -> None:
        raise _NeedsChecks  # BUILD on a global: the checked unpickler refuses it, naming it


class _PendingDtype:
    """A dtype numpy's pickles build in two steps, ``dtype(code, align, True)`` then ``BUILD``.

    The C unpickler holds this in its place; ``BUILD`` (its ``__setstate__``)
    checks the state and builds the dtype with numpy's own constructor, as
    :meth:`_NumpyChecks.dtype_from_state` does for the checked unpickler. Only
    plain dtypes: a structured or subarray state goes to the checked unpickler.
    """

    __slots__ = ("_checks", "_template", "built")

    def __init__(self, checks: _NumpyChecks, template: Any) -> None:
        self._checks = checks
        self._template = template
        self.built: Any = None

    def __setstate__(self, state: Any) -> None:
        if self.built is not None or type(state) is not tuple or len(state) not in (8, 9):
            raise _NeedsChecks
        if state[2] is not None or state[3] is not None:  # subarray, field names
            raise _NeedsChecks
        try:
            self.built = self._checks.dtype_from_state(self._template, state)
        except _Refused:
            raise _NeedsChecks from None


def _filled_dtype(value: Any) -> Any:
    """The dtype a filled :class:`_PendingDtype` built; anything else is for the checked unpickler to judge."""
    if type(value) is not _PendingDtype or value.built is None:
        raise _NeedsChecks
    return value.built


class _PendingArray:
    """An array numpy's pickles build in two steps, ``_reconstruct(ndarray, (0,), b"b")`` then ``BUILD``.

    ``BUILD`` (its ``__setstate__``) fills a new empty array through
    :meth:`_NumpyChecks.fill_array`, never numpy's ``__setstate__`` on
    unchecked input; :meth:`_FastNumpy.finish` then puts the array where the
    C unpickler put this. Arrays of objects go to the checked unpickler.
    """

    __slots__ = ("_checks", "built")

    def __init__(self, checks: _NumpyChecks) -> None:
        self._checks = checks
        self.built: Any = None

    def __setstate__(self, state: Any) -> None:
        if self.built is not None or type(state) is not tuple or len(state) != 5:
            raise _NeedsChecks
        dtype = _filled_dtype(state[2])
        if dtype.hasobject:
            raise _NeedsChecks
        empty = _resolve_numpy(("numpy._core.multiarray", "_reconstruct"))(  # type: ignore[operator]
            self._checks.np.ndarray, (0,), b"b"
        )
        try:
            self._checks.fill_array(empty, (*state[:2], dtype, *state[3:]))
        except _Refused:
            raise _NeedsChecks from None
        self.built = empty


class _GiveUp(Exception):
    """A placeholder sits where :meth:`_FastNumpy.finish` does not replace it: load with the checked unpickler."""


class _FastNumpy:
    """numpy for the C unpickler, built by :class:`_NumpyChecks`; anything else raises :class:`_NeedsChecks`.

    numpy pickles a scalar as ``scalar(dtype, raw bytes)``, a dtype as
    ``dtype(code, align, True)`` filled by ``BUILD``, an array as
    ``_reconstruct(ndarray, (0,), b"b")`` filled by ``BUILD``: calls the C
    unpickler makes through :class:`_StandIn`, and ``BUILD`` on a
    :class:`_PendingDtype` or :class:`_PendingArray`. What numpy's pickles do
    not do, or what the checks refuse, loads again with the checked unpickler,
    which then decides (and names what it refuses). Arrays are put in place of
    their placeholders by :meth:`finish`; no stand-in or placeholder may stay
    in the loaded data (a pickle of a bare dtype, say): :meth:`kept` tells.
    """

    def __init__(self, payload_size: int) -> None:
        self._checks = _NumpyChecks(payload_size)
        #: Every stand-in and placeholder this load made.
        self._made: list[_StandIn | _PendingDtype | _PendingArray] = []
        self._arrays = False

    def stand_in(self, role: str) -> _StandIn:
        made = _StandIn(getattr(self, role), role)
        self._made.append(made)
        return made

    def ndarray(self, *args: Any) -> Any:
        raise _NeedsChecks  # numpy's pickles never call it; the checked unpickler refuses it

    def frombuffer(self, *args: Any) -> Any:
        """Protocol 5: ``_frombuffer(buffer, dtype, shape, order)``, no ``BUILD``."""
        if len(args) != 4:
            raise _NeedsChecks
        try:
            return self._checks.frombuffer(args[0], _filled_dtype(args[1]), args[2], args[3])
        except _Refused:
            raise _NeedsChecks from None

    def reconstruct(self, *args: Any) -> _PendingArray:
        if len(args) != 3 or type(args[0]) is not _StandIn or args[0].role != "ndarray":
            raise _NeedsChecks
        if type(args[1]) is not tuple or args[1] != (0,) or type(args[2]) is not bytes or args[2] != b"b":
            raise _NeedsChecks
        pending = _PendingArray(self._checks)
        self._made.append(pending)
        self._arrays = True
        return pending

    def finish(self, loaded: Any) -> Any:
        """``loaded`` with each array placeholder replaced by its array; raises :class:`_GiveUp` where it cannot.

        Dicts and lists are this load's own, new objects: their items are
        replaced in place. A placeholder in a tuple, set, dict key or any other
        object is not looked for: :meth:`kept` then finds it still referenced.
        """
        if not self._arrays:
            return loaded
        seen: set[int] = set()

        def swap(value: Any) -> Any:
            kind = type(value)
            if kind is _PendingArray:
                if value.built is None:
                    raise _GiveUp
                return value.built
            if kind is dict or kind is collections.OrderedDict:
                if id(value) not in seen:
                    seen.add(id(value))
                    for key, item in list(value.items()):
                        new = swap(item)
                        if new is not item:
                            value[key] = new
            elif kind is list:
                if id(value) not in seen:
                    seen.add(id(value))
                    for index, item in enumerate(value):
                        new = swap(item)
                        if new is not item:
                            value[index] = new
            return value

        try:
            return swap(loaded)
        except RecursionError:
            raise _GiveUp from None

    def dtype(self, *args: Any) -> _PendingDtype:
        try:
            template = self._checks.dtype(*args)
        except (_Refused, TypeError):
            raise _NeedsChecks from None
        self._checks.unfilled.pop(id(template), None)  # filled by _PendingDtype, never by a BUILD of numpy's
        pending = _PendingDtype(self._checks, template)
        self._made.append(pending)
        return pending

    def scalar(self, *args: Any) -> Any:
        if len(args) != 2:
            raise _NeedsChecks
        try:
            return self._checks.scalar(_filled_dtype(args[0]), args[1])
        except _Refused:
            raise _NeedsChecks from None

    def kept(self, unpickler: pickle.Unpickler) -> bool:
        """Whether the loaded data may hold a stand-in or a placeholder (call once the load is done)."""
        if not _EXACT_REFCOUNTS:
            return True
        unpickler.memo.clear()  # the memo's references are the only others a finished load leaves
        # CPython counts references exactly. What this very expression adds (the list's, the loop's, the
        # argument's; fewer where the interpreter borrows) is measured on an object nothing else holds.
        unheld = [object()]
        baseline = max(sys.getrefcount(made) for made in unheld)
        return any(sys.getrefcount(made) > baseline for made in self._made)


#: Whether :meth:`_FastNumpy.kept` may trust ``sys.getrefcount``: on the CPythons the package tests (3.10-3.13,
#: with the GIL) a finished load's references are exact, and the baseline is measured in the same expression, so
#: 3.12's immortal objects (none of ours is) change nothing. Free-threaded CPython defers some counts, and 3.14
#: borrows stack references; they are not tested, so there every pickle naming numpy loads with the checked
#: unpickler (correct first, fast second) until they are.
_EXACT_REFCOUNTS: bool = sys.version_info < (3, 14) and getattr(sys, "_is_gil_enabled", lambda: True)()


class _CheckedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler, with every call and ``BUILD`` checked.

    Slower than the C unpickler, but it sees each opcode: ``bytearray(n)``
    must not be called with a size, and numpy's ``__setstate__`` methods
    trust their input and crash the interpreter on a crafted one, so they are
    only reached through :class:`_NumpyChecks`.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(
        self,
        file: io.BytesIO,
        *,
        path: str,
        payload_size: int,
        allowed_classes: dict[tuple[str, str], type] | None = None,
    ) -> None:
        super().__init__(file)
        self._path = path
        self._payload_size = payload_size
        #: Classes outside the allow-list: placeholders where the opcodes only create and fill them.
        self._opaque = OpaqueLoading(allowed_classes or {}, _OPAQUE_PATTERNS)
        self._numpy: _NumpyChecks | None = None
        #: Memo slots holding each unfilled dtype template, so its BUILD can replace it there too.
        self._template_memo: dict[int, list[int]] = {}
        #: Checks by the identity of the callable a pickle calls.
        self._checks: dict[int, Callable[..., Any]] = {
            id(bytes): lambda *args: _check_text_or_bytes("builtins.bytes", args) or bytes(*args),
            id(bytearray): lambda *args: _check_text_or_bytes("builtins.bytearray", args) or bytearray(*args),
            id(str): lambda *args: _check_str(args) or str(*args),
        }

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        key = (_PY2_MODULES.get(module, module), name)
        found = _PLAIN_TYPES.get(key) or _SPECIAL.get(key)
        if found is None and key in _NUMPY_NAMES and importlib.util.find_spec("numpy") is not None:
            found = _resolve_numpy(key)
            if self._numpy is None:
                self._numpy = _NumpyChecks(self._payload_size)
                self._checks.update(self._numpy.checks())
        if found is None and key in _COPYREG_NEWOBJ:
            # Only a placeholder's class may be their argument (OpaqueLoading.call).
            found = _refuse_newobj if name == "__newobj__" else _refuse_newobj_ex
        if found is None and key == _GETATTR:
            found = _refuse_getattr
        if found is None:
            found = self._opaque.find_class(*key)
        if found is None:
            raise _refuse_global(self._path, module, name)
        return found

    def load(self) -> Any:  # noqa: D102 - pickle API
        loaded = super().load()
        self._opaque.finish(self.memo)
        return loaded

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise _refuse_persistent_id(self._path, pid)

    def _call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if type(args) is tuple:
            handled, made = self._opaque.call(func, args)
            if handled:
                return made
        check = self._checks.get(id(func))
        if check is not None:
            if kwargs:
                raise _Refused(getattr(func, "__name__", "?"), "a checked call with keyword arguments")
            return check(*args)
        return func(*args, **kwargs)

    def _new(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if type(cls) is ClassRef or type(cls) is OpaqueObject:
            return self._opaque.new(cls, args, kwargs)
        if id(cls) in self._checks:
            return self._call(cls, args, kwargs)
        if not isinstance(cls, type):
            raise pickle.UnpicklingError(f"NEWOBJ of a non-class {type(cls).__name__}")
        return cls.__new__(cls, *args, **kwargs)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, {})

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, {}))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args, kwargs))

    def _instantiate(self, klass: Any, args: list[Any]) -> None:  # INST and OBJ
        self.append(self._call(klass, tuple(args), {}))

    def load_build(self) -> None:
        inst = self.stack[-2]
        if self._opaque.build(inst, self.stack[-1]):
            self.stack.pop()
            return
        if isinstance(inst, (type, types.FunctionType, types.BuiltinFunctionType)):
            # A global itself: BUILD would patch it for every later load.
            raise _Refused(getattr(inst, "__name__", "?"), "BUILD on a class or function")
        if self._numpy is not None and self._numpy.handles(inst):
            state = self.stack.pop()
            built = self._numpy.build(inst, state)
            if built is not inst:  # a dtype built anew replaces its template on the stack and in the memo
                self.stack[-1] = built
                for index in self._template_memo.pop(id(inst), ()):
                    if self.memo.get(index) is inst:
                        self.memo[index] = built
        else:
            super().load_build()

    def _remember(self, index: int) -> None:
        value = self.memo[index] = self.stack[-1]
        if self._numpy is not None and isinstance(value, self._numpy.np.dtype) and id(value) in self._numpy.unfilled:
            self._template_memo.setdefault(id(value), []).append(index)

    def load_put(self) -> None:
        index = int(self.readline()[:-1])
        if index < 0:
            raise ValueError("negative PUT argument")
        self._remember(index)

    def load_binput(self) -> None:
        self._remember(self.read(1)[0])

    def load_long_binput(self) -> None:
        self._remember(int.from_bytes(self.read(4), "little"))

    def load_memoize(self) -> None:
        self._remember(len(self.memo))

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.PUT[0]] = load_put
    dispatch[pickle.BINPUT[0]] = load_binput
    dispatch[pickle.LONG_BINPUT[0]] = load_long_binput
    dispatch[pickle.MEMOIZE[0]] = load_memoize


#: The copyreg patterns pickle emits for instances, by the identity of what the checked unpickler resolves.
_OPAQUE_PATTERNS: dict[int, str] = {
    id(_safe_reconstructor): "_reconstructor",
    id(_refuse_newobj): "__newobj__",
    id(_refuse_newobj_ex): "__newobj_ex__",
    id(_refuse_getattr): "getattr",
}

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


def _corrupt(path: str, exc: BaseException) -> CorruptStoreError:
    return CorruptStoreError(
        f"{path}: not a readable pickle ({type(exc).__name__}: {exc}). The file is "
        "left untouched; restore it from a backup or move it aside.",
        path=path,
    )


def _load(data: bytes, path: str, make: Callable[[io.BytesIO], pickle.Unpickler], *, safe: bool) -> Any:
    buffer = io.BytesIO(data)
    try:
        with quiet_bytearray_bug():
            obj = make(buffer).load()
    except (StoreError, _NeedsChecks):
        raise
    except (_Refused, ShapeRefused) as exc:
        raise UnsafePickleError(
            f"{path}: refused to load: {exc.reason}. Safe loading builds only plain data; nothing from "
            "the file was run. If you trust this file, open it with trusted=True.",
            path=path,
            global_name=exc.global_name,
        ) from exc
    except OpaqueHashError as exc:
        raise UnsafePickleError(
            f"{path}: refused to load: {exc}. Safe loading builds only plain data; nothing from "
            "the file was run. If you trust this file, open it with trusted=True.",
            path=path,
            global_name=exc.class_name,
        ) from exc
    except _DECODE_ERRORS as exc:
        if isinstance(exc, ImportError):
            raise StoreError(
                f"{path}: the pickle needs {exc.name or 'a module'} to load ({exc}); "
                "import or install the code that wrote it.",
                path=path,
            ) from exc
        raise _corrupt(path, exc) from exc
    except Exception as exc:
        if not safe:
            raise
        # Only allowed types run during a safe load; whatever else they raise
        # on crafted input (struct.error, LookupError, a warning made an error)
        # means the bytes are not a valid store.
        raise _corrupt(path, exc) from exc
    if buffer.tell() != len(data):
        raise CorruptStoreError(
            f"{path}: {len(data) - buffer.tell()} unexpected bytes after the end of the "
            "pickle. The file is left untouched; restore it from a backup or move it aside.",
            path=path,
        )
    return obj


def allowed_class_map(classes: Any) -> dict[tuple[str, str], type]:
    """``allowed_classes=`` as ``{(module, qualname): class}``; a clear error for anything but classes."""
    if classes is None:
        return {}
    if isinstance(classes, type) or not isinstance(classes, collections.abc.Iterable):
        raise TypeError(f"allowed_classes must be a list of classes, e.g. [ResearchFacts], got {classes!r}")
    mapping: dict[tuple[str, str], type] = {}
    for cls in classes:
        if not isinstance(cls, type):
            raise TypeError(f"allowed_classes must hold classes (already imported), got {cls!r}")
        mapping[(cls.__module__, cls.__qualname__)] = cls
    return mapping


def safe_loads(data: bytes, *, path: str, allowed_classes: Any = None) -> Any:
    """Unpickle ``data`` allowing only plain-data globals.

    An instance of a class outside the allow-list, which the pickle only
    creates (``NEWOBJ``, or the ``copyreg`` patterns of protocols 0-1) and
    fills with ``BUILD``, becomes an :class:`~crewtrain_nb.store.OpaqueObject`:
    the class is never imported and none of its code runs.

    Parameters
    ----------
    data
        The whole pickle.
    path
        The file it came from, for error messages.
    allowed_classes
        Classes (already imported) to load as real instances instead of
        placeholders, e.g. ``[ResearchFacts]``; their own code then runs.

    Raises
    ------
    UnsafePickleError
        The pickle names a global outside :data:`ALLOWED_GLOBALS` other than
        as the class of a new object, or calls an allowed one in a way plain
        data never does.
    CorruptStoreError
        The bytes are not a complete pickle.
    """
    made: list[_RestrictedUnpickler] = []
    allowed = allowed_class_map(allowed_classes)

    def fast(buffer: io.BytesIO) -> _RestrictedUnpickler:
        made.append(_RestrictedUnpickler(buffer, path=path, payload_size=len(data), allowed_classes=allowed))
        return made[0]

    try:
        loaded = _load(data, path, fast, safe=True)
    except _NeedsChecks:
        pass
    except StoreError:
        if made[0].numpy is None:
            raise
        # Failed past a numpy stand-in: the checked unpickler says what is wrong, in numpy's terms.
    else:
        numpy = made[0].numpy
        if numpy is None:
            return loaded
        try:
            loaded = numpy.finish(loaded)
        except _GiveUp:
            pass
        else:
            if not numpy.kept(made[0]):
                return loaded
        del loaded
    return _load(
        data,
        path,
        lambda buffer: _CheckedUnpickler(buffer, path=path, payload_size=len(data), allowed_classes=allowed),
        safe=True,
    )


class _TrustedUnpickler(pickle.Unpickler):
    """The full unpickler, which says which class it could not import and why."""

    def __init__(self, file: io.BytesIO, *, path: str) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except ImportError as exc:
            package = (exc.name or module).split(".")[0]
            raise StoreError(
                f"{self._path}: the pickle needs {module}.{name}, but the module {exc.name or module} cannot be "
                f"imported ({exc}). Install the package that provides {package!r} (pip install ...) into "
                f"this environment, or run from the folder that holds {package}.py.",
                path=self._path,
            ) from exc
        except AttributeError as exc:
            where = getattr(sys.modules.get(module), "__file__", None)
            raise StoreError(
                f"{self._path}: the pickle needs {module}.{name}, but the module {module}"
                f"{f' (from {where})' if where else ''} defines no {name}; install the version of "
                f"{module.split('.')[0]!r} that wrote the file.",
                path=self._path,
            ) from exc


def trusted_loads(data: bytes, *, path: str) -> Any:
    """Unpickle ``data`` with the full, unrestricted unpickler (code in it runs)."""
    return _load(data, path, lambda buffer: _TrustedUnpickler(buffer, path=path), safe=False)
