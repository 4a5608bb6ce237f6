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
(see :class:`~crewtrain_nb.store._numpy_checks.FastNumpy`).

Three modules, each one idea: ``_allowlist`` (what a pickle may name, and the
guards for the calls that need checks), ``_numpy_checks`` (numpy's
constructions, checked, and the stand-ins the C unpickler calls), and this one
(the C fast path, the checked pure-Python unpickler, and loading a file's bytes
with them).
"""

from __future__ import annotations

import collections.abc
import importlib.util
import io
import pickle
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import CorruptStoreError, StoreError, UnsafePickleError
from ._allowlist import (
    ALLOWED_GLOBALS,
    CHECKED_GLOBALS,
    COPYREG_NEWOBJ,
    GETATTR,
    NUMPY_NAMES,
    OPAQUE_PATTERNS,
    PLAIN_TYPES,
    PY2_MODULES,
    SPECIAL,
    NeedsChecks,
    Refused,
    check_str,
    check_text_or_bytes,
    refuse_getattr,
    refuse_global,
    refuse_newobj,
    refuse_newobj_ex,
    refuse_persistent_id,
    resolve_numpy,
)
from ._numpy_checks import FAST_NUMPY, FastNumpy, GiveUp, NumpyChecks
from ._placeholders import ClassRef, OpaqueHashError, OpaqueLoading, OpaqueObject, ShapeRefused, may_be_opaque
from ._quirks import quiet_bytearray_bug
from ._tail import is_uncommitted_tail

__all__ = ["ALLOWED_GLOBALS", "allowed_class_map", "safe_loads", "trusted_loads"]


class _RestrictedUnpickler(pickle.Unpickler):
    """The fast (C) unpickler: only :data:`ALLOWED_GLOBALS`, and only those safe to call with any arguments."""

    def __init__(
        self,
        file: io.BufferedIOBase,
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
        self.numpy: FastNumpy | None = None

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        key = (PY2_MODULES.get(module, module), name)
        role = FAST_NUMPY.get(key)
        if role is not None and importlib.util.find_spec("numpy") is not None:
            if self.numpy is None:
                self.numpy = FastNumpy(self._payload_size)
            return self.numpy.stand_in(role)
        if key in CHECKED_GLOBALS:
            raise NeedsChecks
        found = PLAIN_TYPES.get(key) or SPECIAL.get(key) or self._allowed_classes.get(key)
        if found is None:
            if may_be_opaque(*key):
                raise NeedsChecks  # maybe a placeholder's class: the checked unpickler sees how it is used
            raise refuse_global(self._path, module, name)
        return found

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise refuse_persistent_id(self._path, pid)


def _checked_bytes(*args: Any) -> bytes:
    check_text_or_bytes("builtins.bytes", args)
    return bytes(*args)


def _checked_bytearray(*args: Any) -> bytearray:
    check_text_or_bytes("builtins.bytearray", args)
    return bytearray(*args)


def _checked_str(*args: Any) -> str:
    check_str(args)
    return str(*args)


if TYPE_CHECKING:

    class _PureUnpickler(pickle._Unpickler):
        """``pickle._Unpickler`` with the undocumented internals the checked one uses (typeshed: the public API)."""

        memo: dict[int, Any]
        stack: list[Any]
        append: Callable[[Any], None]
        read: Callable[[int], bytes]
        readline: Callable[[], bytes]
        dispatch: ClassVar[dict[int, Callable[[Any], None]]]

        def load_build(self) -> None: ...

else:
    _PureUnpickler = pickle._Unpickler


class _CheckedUnpickler(_PureUnpickler):
    """The pure-Python unpickler, with every call and ``BUILD`` checked.

    Slower than the C unpickler, but it sees each opcode: ``bytearray(n)``
    must not be called with a size, and numpy's ``__setstate__`` methods
    trust their input and crash the interpreter on a crafted one, so they are
    only reached through :class:`NumpyChecks`.
    """

    dispatch = dict(_PureUnpickler.dispatch)

    def __init__(
        self,
        file: io.BufferedIOBase,
        *,
        path: str,
        payload_size: int,
        allowed_classes: dict[tuple[str, str], type] | None = None,
    ) -> None:
        super().__init__(file)
        self._path = path
        self._payload_size = payload_size
        #: Classes outside the allow-list: placeholders where the opcodes only create and fill them.
        self._opaque = OpaqueLoading(allowed_classes or {}, OPAQUE_PATTERNS)
        self._numpy: NumpyChecks | None = None
        #: Memo slots holding each unfilled dtype template, so its BUILD can replace it there too.
        self._template_memo: dict[int, list[int]] = {}
        #: Checks by the identity of the callable a pickle calls.
        self._checks: dict[int, Callable[..., Any]] = {
            id(bytes): _checked_bytes,
            id(bytearray): _checked_bytearray,
            id(str): _checked_str,
        }

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        key = (PY2_MODULES.get(module, module), name)
        found = PLAIN_TYPES.get(key) or SPECIAL.get(key)
        if found is None and key in NUMPY_NAMES and importlib.util.find_spec("numpy") is not None:
            found = resolve_numpy(key)
            if self._numpy is None:
                self._numpy = NumpyChecks(self._payload_size)
                self._checks.update(self._numpy.checks())
        if found is None and key in COPYREG_NEWOBJ:
            # Only a placeholder's class may be their argument (OpaqueLoading.call).
            found = refuse_newobj if name == "__newobj__" else refuse_newobj_ex
        if found is None and key == GETATTR:
            found = refuse_getattr
        if found is None:
            found = self._opaque.find_class(*key)
        if found is None:
            raise refuse_global(self._path, module, name)
        return found

    def load(self) -> Any:  # noqa: D102 - pickle API
        loaded = super().load()
        self._opaque.finish(self.memo)
        return loaded

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise refuse_persistent_id(self._path, pid)

    def _call(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if type(args) is tuple:
            handled, made = self._opaque.call(func, args)
            if handled:
                return made
        check = self._checks.get(id(func))
        if check is not None:
            if kwargs:
                raise Refused(getattr(func, "__name__", "?"), "a checked call with keyword arguments")
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
            raise Refused(getattr(inst, "__name__", "?"), "BUILD on a class or function")
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


class _Loader(Protocol):
    """What :func:`_load` needs of an unpickler (the C one, the checked pure-Python one, the trusted one)."""

    @property
    def memo(self) -> object: ...  # read after the load, for the store's tails

    def load(self) -> Any: ...


#: Called after a load with where the pickle ended and the unpickler's memo (for the store's tails).
OnEnd = Callable[[int, Any], None]


def _load(
    data: bytes,
    path: str,
    make: Callable[[io.BufferedIOBase], _Loader],
    *,
    safe: bool,
    on_end: OnEnd | None = None,
) -> Any:
    # A reader with ``peek``: the C unpickler then reads ahead in blocks instead of calling ``read`` for each
    # opcode of a pickle without FRAMEs (the store's own files and their tails), which halves their load time.
    buffer = io.BufferedReader(io.BytesIO(data), buffer_size=1 << 16)
    try:
        with quiet_bytearray_bug():
            unpickler = make(buffer)
            obj = unpickler.load()
    except (StoreError, NeedsChecks):
        raise
    except (Refused, ShapeRefused) as exc:
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
    end = buffer.tell()
    # What follows the pickle may only be a tail a writer has not committed (yet, or ever: it crashed).
    if end != len(data) and not is_uncommitted_tail(data, end):
        raise CorruptStoreError(
            f"{path}: {len(data) - end} unexpected bytes after the end of the "
            "pickle. The file is left untouched; restore it from a backup or move it aside.",
            path=path,
        )
    if on_end is not None:
        on_end(end, unpickler.memo)
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


def safe_loads(data: bytes, *, path: str, allowed_classes: Any = None, on_end: OnEnd | None = None) -> Any:
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
    on_end
        Called with the offset where the pickle ended and the unpickler's memo
        (what a writer of tails needs, see ``_tail``). Bytes after the end are
        accepted only when they are an uncommitted tail.

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

    def fast(buffer: io.BufferedIOBase) -> _RestrictedUnpickler:
        made.append(_RestrictedUnpickler(buffer, path=path, payload_size=len(data), allowed_classes=allowed))
        return made[0]

    try:
        loaded = _load(data, path, fast, safe=True, on_end=on_end)
    except NeedsChecks:
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
        except GiveUp:
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
        on_end=on_end,
    )


class _TrustedUnpickler(pickle.Unpickler):
    """The full unpickler, which says which class it could not import and why."""

    def __init__(self, file: io.BufferedIOBase, *, path: str) -> None:
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


def trusted_loads(data: bytes, *, path: str, on_end: OnEnd | None = None) -> Any:
    """Unpickle ``data`` with the full, unrestricted unpickler (code in it runs)."""
    return _load(data, path, lambda buffer: _TrustedUnpickler(buffer, path=path), safe=False, on_end=on_end)
