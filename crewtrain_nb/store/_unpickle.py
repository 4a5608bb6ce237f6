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
keep the fast C unpickler.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import decimal
import importlib.util
import io
import math
import pickle
import re
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import CorruptStoreError, StoreError, UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "safe_loads", "trusted_loads"]

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
        raise _Refused("_codecs.encode", f"_codecs.encode with encoding {encoding!r} is not plain data")
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
    raise _Refused(global_name, f"{global_name} called with {type(source).__name__} arguments is not plain data")


def _plain_bytes(*args: Any) -> bytes:
    _check_text_or_bytes("builtins.bytes", args)
    return bytes(*args)


def _plain_bytearray(*args: Any) -> bytearray:
    _check_text_or_bytes("builtins.bytearray", args)
    return bytearray(*args)


def _plain_str(*args: Any) -> str:
    # str(data, encoding) looks the codec up by name, importing its module.
    if len(args) > 1:
        raise _Refused("builtins.str", "str() with an encoding is not plain data")
    return str(*args)


class _Guard:
    """A callable standing in for an allowed global, with checked arguments.

    It has no ``__dict__`` and its ``__setstate__`` refuses, so a ``BUILD``
    opcode aimed at it cannot patch it for later loads.
    """

    __slots__ = ("_function", "_name")

    def __init__(self, name: str, function: Callable[..., Any]) -> None:
        self._name = name
        self._function = function

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setstate__(self, state: Any) -> None:
        raise _Refused(self._name, f"BUILD on {self._name} is not plain data")

    def __repr__(self) -> str:
        return f"<safe {self._name}>"


_PLAIN_TYPES: dict[tuple[str, str], object] = {
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "str"): _Guard("builtins.str", _plain_str),
    ("builtins", "bytes"): _Guard("builtins.bytes", _plain_bytes),
    ("builtins", "bytearray"): _Guard("builtins.bytearray", _plain_bytearray),
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
    ("_codecs", "encode"): _Guard("_codecs.encode", _latin1_encode),
}


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Protocols 0-1 rebuild instances of Python classes (e.g. uuid.UUID) as
    # ``copyreg._reconstructor(cls, object, None)``. Any other base would run
    # ``base.__init__(obj, state)``: bytearray's zero-fills ``state`` bytes.
    plain_classes = {value for value in _PLAIN_TYPES.values() if isinstance(value, type)}
    if not (isinstance(cls, type) and cls in plain_classes and base is builtins.object and state is None):
        raise _Refused("copyreg._reconstructor", "copyreg._reconstructor used other than for a plain-data class")
    import copyreg

    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


_SPECIAL: dict[tuple[str, str], object] = {
    ("copyreg", "_reconstructor"): _Guard("copyreg._reconstructor", _safe_reconstructor),
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


class _NumpyFound(Exception):
    """The fast unpickler met a numpy global: load again with the checking unpickler."""


class _RestrictedUnpickler(pickle.Unpickler):
    """The fast (C) unpickler: only :data:`ALLOWED_GLOBALS`, and numpy hands over to :class:`_NumpyUnpickler`."""

    def __init__(self, file: io.BytesIO, *, path: str) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        key = (_PY2_MODULES.get(module, module), name)
        found = _PLAIN_TYPES.get(key) or _SPECIAL.get(key)
        if found is None and key in _NUMPY_NAMES and importlib.util.find_spec("numpy") is not None:
            raise _NumpyFound
        if found is None:
            raise _refuse_global(self._path, module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise UnsafePickleError(
            f"{self._path}: the pickle uses a persistent id ({pid!r}), which plain data never does.",
            path=self._path,
            global_name="persistent_load",
        )


_TYPE_CODE = re.compile(r"[A-Za-z][0-9]{0,12}")


class _NumpyChecks:
    """Check every numpy construction a pickle asks for before numpy sees it.

    numpy's own pickles only ever call ``_reconstruct(ndarray, (0,), b'b')``
    and fill the array with ``BUILD``, build dtypes as ``dtype(str, False,
    True)`` (plus a ``BUILD``), and scalars as ``scalar(dtype, raw_bytes)``.
    Anything else is refused.

    Parameters
    ----------
    payload_size
        Size of the whole pickle: object arrays may not be much larger.
    """

    #: An element costs at least one byte of pickle; object arrays get this much headroom.
    _BYTES_PER_PICKLE_BYTE = 64

    def __init__(self, payload_size: int) -> None:
        import numpy

        self.np = numpy
        self.budget = self._BYTES_PER_PICKLE_BYTE * payload_size + (1 << 20)

    def canonical_dtype(self, dtype: Any) -> Any:
        """Return ``dtype`` if numpy's own constructor builds the same layout; refuse otherwise.

        ``dtype.__setstate__`` accepts any field offsets and flags; a dtype whose
        object field overlaps another field, or whose flags hide an object
        field, turns bytes into pointers.
        """
        np = self.np
        if not isinstance(dtype, np.dtype):
            raise _Refused("numpy.dtype", f"a numpy array state with a {type(dtype).__name__} as its dtype")
        rebuilt = self._rebuild(dtype)
        same = (
            rebuilt == dtype
            and rebuilt.itemsize == dtype.itemsize
            and rebuilt.flags == dtype.flags
            and rebuilt.hasobject == dtype.hasobject
        )
        if not same:
            raise _Refused("numpy.dtype", f"a numpy dtype whose state is inconsistent ({dtype!r})")
        return dtype

    def _rebuild(self, dtype: Any) -> Any:
        np = self.np
        try:
            if dtype.fields is not None:
                names, formats, offsets, titles = [], [], [], []
                for name in dtype.names:
                    field = dtype.fields[name]
                    names.append(name)
                    formats.append(self._rebuild(field[0]))
                    offsets.append(field[1])
                    titles.append(field[2] if len(field) > 2 else None)
                spec: dict[str, Any] = {"names": names, "formats": formats, "offsets": offsets}
                spec["itemsize"] = dtype.itemsize
                if any(title is not None for title in titles):
                    spec["titles"] = titles
                return np.dtype(spec, align=dtype.isalignedstruct)
            if dtype.subdtype is not None:
                base, shape = dtype.subdtype
                return np.dtype((self._rebuild(base), shape))
            return np.dtype(dtype.str)
        except (TypeError, ValueError) as exc:
            raise _Refused("numpy.dtype", f"a numpy dtype numpy itself refuses to build ({exc})") from exc

    def dtype(self, spec: Any = None, align: Any = False, copy: Any = False) -> Any:
        # numpy pickles a dtype as a bare type code ("f8", "V16", "M8"); longer
        # strings go through numpy's parser, which compiles shape expressions.
        if not (isinstance(spec, str) and _TYPE_CODE.fullmatch(spec)) or not (
            isinstance(align, bool) and isinstance(copy, bool)
        ):
            raise _Refused("numpy.dtype", f"numpy.dtype({spec!r:.40}) is not how numpy pickles a dtype")
        return self.np.dtype(spec, align, copy)

    def reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not self.np.ndarray or shape != (0,) or dtype != b"b":
            raise _Refused("numpy._core.multiarray._reconstruct", "_reconstruct other than numpy's empty template")
        return _resolve_numpy(("numpy._core.multiarray", "_reconstruct"))(subtype, shape, dtype)  # type: ignore[operator]

    def scalar(self, dtype: Any, data: Any = None) -> Any:
        checked = self.canonical_dtype(dtype)
        if checked.hasobject or not isinstance(data, bytes) or len(data) != checked.itemsize:
            raise _Refused("numpy._core.multiarray.scalar", f"a numpy scalar of {checked!r} from {type(data).__name__}")
        return _resolve_numpy(("numpy._core.multiarray", "scalar"))(checked, data)  # type: ignore[operator]

    def frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> Any:
        checked = self.canonical_dtype(dtype)
        count = self._count(shape)
        if checked.hasobject or not isinstance(buffer, (bytes, bytearray)) or len(buffer) != count * checked.itemsize:
            raise _Refused("numpy._core.numeric._frombuffer", "an array buffer that does not match its dtype and shape")
        frombuffer = _resolve_numpy(("numpy._core.numeric", "_frombuffer"))
        return frombuffer(buffer, checked, shape, order)  # type: ignore[operator]

    def _count(self, shape: Any) -> int:
        if not isinstance(shape, tuple) or not all(type(size) is int and size >= 0 for size in shape):
            raise _Refused("numpy.ndarray", f"a numpy array shape that is not a tuple of sizes: {shape!r}")
        count = math.prod(shape)
        if count > self.budget:
            raise _Refused("numpy.ndarray", f"a numpy array of {count} elements from a {self.budget}-byte budget")
        return count

    def build_array(self, array: Any, state: Any) -> None:
        """``BUILD`` of an array: the element list or bytes must match the shape exactly."""
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("numpy.ndarray", "a numpy array state that is not numpy's")
        shape, dtype, data = state[-4], state[-3], state[-1]
        checked = self.canonical_dtype(dtype)
        count = self._count(shape)
        if checked.hasobject:
            # numpy reads ``count`` items from the list without checking its length.
            if type(data) is not list or len(data) != count:
                raise _Refused("numpy.ndarray", "a numpy object array whose element list does not match its shape")
            if count * checked.itemsize > self.budget:
                raise _Refused("numpy.ndarray", "a numpy object array far larger than the file could describe")
        elif not isinstance(data, (bytes, bytearray)) or len(data) != count * checked.itemsize:
            raise _Refused("numpy.ndarray", "a numpy array whose data does not match its dtype and shape")
        array.__setstate__(state)

    def build_dtype(self, dtype: Any, state: Any) -> None:
        """``BUILD`` of a dtype: apply numpy's state, then require a layout numpy itself would build."""
        dtype.__setstate__(state)
        self.canonical_dtype(dtype)


class _NumpyUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """The pure-Python unpickler with every call and ``BUILD`` checked; used for pickles that name numpy.

    Slower than the C unpickler, but it can see each opcode: numpy's
    ``__setstate__`` methods trust their input and crash the interpreter on a
    crafted one, so they are only reached through :class:`_NumpyChecks`.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: io.BytesIO, *, path: str, payload_size: int) -> None:
        super().__init__(file)
        self._path = path
        self._checks = _NumpyChecks(payload_size)
        np = self._checks.np
        self._numpy_functions: dict[tuple[str, str], object] = {
            ("multiarray", "_reconstruct"): _Guard("_reconstruct", self._checks.reconstruct),
            ("multiarray", "scalar"): _Guard("scalar", self._checks.scalar),
            ("numeric", "_frombuffer"): _Guard("_frombuffer", self._checks.frombuffer),
            ("", "ndarray"): np.ndarray,
            ("", "dtype"): np.dtype,
        }

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        key = (_PY2_MODULES.get(module, module), name)
        found = _PLAIN_TYPES.get(key) or _SPECIAL.get(key)
        if found is None and key in _NUMPY_NAMES:
            found = self._numpy_functions[_NUMPY_NAMES[key]]
        if found is None:
            raise _refuse_global(self._path, module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise UnsafePickleError(
            f"{self._path}: the pickle uses a persistent id ({pid!r}), which plain data never does.",
            path=self._path,
            global_name="persistent_load",
        )

    def _call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        np = self._checks.np
        if func is np.ndarray:
            # ndarray(shape, object) fills every element: gigabytes from a few bytes.
            raise _Refused("numpy.ndarray", "numpy.ndarray called directly (numpy's pickles never do)")
        if func is np.dtype:
            return self._checks.dtype(*args, **kwargs)
        return func(*args, **kwargs)

    def _new(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        np = self._checks.np
        if cls is np.ndarray or cls is np.dtype:
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

    def _instantiate(self, klass: Any, args: tuple[Any, ...]) -> None:  # INST and OBJ
        self.append(self._call(klass, tuple(args), {}))

    def load_build(self) -> None:
        np = self._checks.np
        inst = self.stack[-2]
        if isinstance(inst, np.ndarray):
            state = self.stack.pop()
            self._checks.build_array(inst, state)
        elif isinstance(inst, np.dtype):
            state = self.stack.pop()
            self._checks.build_dtype(inst, state)
        elif isinstance(inst, np.generic) or inst in (np.ndarray, np.dtype):
            raise _Refused("numpy", f"BUILD on a {type(inst).__name__}")
        else:
            super().load_build()

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


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
        obj = make(buffer).load()
    except (StoreError, _NumpyFound):
        raise
    except _Refused as exc:
        raise UnsafePickleError(
            f"{path}: refused to load: {exc.reason}. Safe loading builds only plain data; nothing from "
            "the file was run. If you trust this file, open it with trusted=True.",
            path=path,
            global_name=exc.global_name,
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
        The pickle names a global outside :data:`ALLOWED_GLOBALS`, or calls an
        allowed one in a way plain data never does.
    CorruptStoreError
        The bytes are not a complete pickle.
    """
    try:
        return _load(data, path, lambda buffer: _RestrictedUnpickler(buffer, path=path), safe=True)
    except _NumpyFound:
        pass
    return _load(data, path, lambda buffer: _NumpyUnpickler(buffer, path=path, payload_size=len(data)), safe=True)


def trusted_loads(data: bytes, *, path: str) -> Any:
    """Unpickle ``data`` with the full, unrestricted unpickler (code in it runs)."""
    return _load(data, path, pickle.Unpickler, safe=False)
