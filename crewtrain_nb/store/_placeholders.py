"""Instances of classes safe loading does not import, kept as inert :class:`OpaqueObject` placeholders.

CrewAI stores the user's own (pydantic) objects for ``output_pydantic`` tasks.
Safe loading never imports the class: where the opcodes only *name* it as the
class of a new object (``NEWOBJ``/``NEWOBJ_EX``, or the ``copyreg`` patterns
pickle itself emits) and then ``BUILD`` it with plain state, the loader puts an
:class:`OpaqueObject` there, which holds the class's dotted name and that state
and runs no code of the class. The checks on the opcode shape live in
``_unpickle``; this module holds the placeholder, the rule for which names may
become one, and the writer that pickles a placeholder back as exactly the class
reference and state it came from (the standard pickler cannot: it imports the
class's module to check the reference). A process that has the class (CrewAI)
loads the real object from that file with plain ``pickle.load``.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, overload

__all__ = ["OpaqueObject", "dumps"]

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

#: Top-level packages whose classes never become placeholders: the standard library (what is importable
#: anyway and decided by the allow-list, including every code-running module) and numpy (checked apart).
_NEVER_OPAQUE: frozenset[str] = frozenset(
    {*getattr(sys, "stdlib_module_names", ()), "__builtin__", "copy_reg", "builtins", "numpy", "pickle", "_pickle"}
)


def may_be_opaque(module: str, qualname: str) -> bool:
    """Whether ``module.qualname`` may stand for a placeholder's class (by its spelling alone, nothing imported)."""
    if not (_DOTTED.fullmatch(module) and _DOTTED.fullmatch(qualname)):
        return False
    if "<" in qualname or any(part.startswith("__") for part in qualname.split(".")):
        return False
    return module.split(".", 1)[0] not in _NEVER_OPAQUE


class OpaqueHashError(TypeError):
    """An :class:`OpaqueObject` was hashed (used as a dict key or set element).

    Attributes
    ----------
    class_name
        The placeholder's :attr:`OpaqueObject.class_name`.
    """

    def __init__(self, class_name: str) -> None:
        super().__init__(f"an OpaqueObject ({class_name}) is unhashable: it cannot be a dict key or set element")
        self.class_name = class_name


class OpaquePicklingError(pickle.PicklingError):
    """The standard pickler met an :class:`OpaqueObject`; crewtrain_nb's writer pickles it instead."""


class OpaqueObject:
    """An instance of a class safe loading did not import: its class's name and the state it was built with.

    Nothing of the class runs: the placeholder only holds what the pickle
    said. Saved through a crewtrain_nb handler (``append``, ``save``,
    ``convert``, a copy, a version restore, ``import_json``), it is written
    back as that same class reference and state, so a process that has the
    class (CrewAI, with the user's code) loads the real object. Load it as the
    real class here with ``allowed_classes=[TheClass]``.

    Attributes
    ----------
    class_name
        ``"module.QualName"`` of the class the pickle names.
    state
        What ``BUILD`` passed (for a pydantic v2 model a dict with
        ``__dict__``, ``__pydantic_extra__``, ``__pydantic_fields_set__`` and
        ``__pydantic_private__``).
    fields
        The field values as a dict (see :attr:`fields`).

    Examples
    --------
    >>> from crewtrain_nb.store import OpaqueObject
    >>> facts = OpaqueObject("app.models", "ResearchFacts", state={"__dict__": {"title": "Q3"}})
    >>> facts.class_name, facts.fields
    ('app.models.ResearchFacts', {'title': 'Q3'})
    """

    __slots__ = ("_args", "_kwargs", "_module", "_qualname", "_state")

    def __init__(
        self,
        module: str,
        qualname: str,
        *,
        state: Any = None,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(module, str) or not isinstance(qualname, str) or not module or not qualname:
            raise TypeError(f"module and qualname must be non-empty str, got {module!r} and {qualname!r}")
        if not isinstance(args, tuple):
            raise TypeError(f"args must be a tuple, got {type(args).__name__}")
        self._module = module
        self._qualname = qualname
        self._state = state
        self._args = args
        self._kwargs = dict(kwargs) if kwargs else {}

    @property
    def module(self) -> str:
        """The module the class is defined in, as the pickle spells it."""
        return self._module

    @property
    def qualname(self) -> str:
        """The class's qualified name inside its module (``Outer.Inner`` for a nested class)."""
        return self._qualname

    @property
    def class_name(self) -> str:
        """``"module.QualName"``: the dotted name of the class."""
        return f"{self._module}.{self._qualname}"

    @property
    def state(self) -> Any:
        """The state ``BUILD`` gave the object (``None`` when it had none)."""
        return self._state

    @property
    def args(self) -> tuple[Any, ...]:
        """Positional arguments of ``cls.__new__`` (empty for pydantic models)."""
        return self._args

    @property
    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``cls.__new__`` (``NEWOBJ_EX``; usually empty)."""
        return dict(self._kwargs)

    @property
    def fields(self) -> dict[str, Any]:
        """The object's field values, by name.

        pydantic (v1 and v2) keeps fields in ``state["__dict__"]`` and extra
        fields in ``state["__pydantic_extra__"]``; a plain class's state is its
        ``__dict__``; a class with ``__slots__`` gives ``(dict, slots)``.
        Any other state is shown as ``{"state": state}``.
        """
        state = self._state
        if state is None:
            return {}
        if type(state) is tuple and len(state) == 2 and all(part is None or type(part) is dict for part in state):
            merged: dict[str, Any] = {}
            for part in state:
                merged.update(part or {})
            return merged
        if type(state) is dict:
            if type(state.get("__dict__")) is dict:
                fields = dict(state["__dict__"])
                extra = state.get("__pydantic_extra__")
                if type(extra) is dict:
                    fields.update(extra)
                return fields
            return dict(state)
        return {"state": state}

    def to_dict(self) -> dict[str, Any]:
        """:attr:`fields` with nested placeholders turned into their dicts too (a JSON-like view)."""
        return {str(name): _plain(value) for name, value in self.fields.items()}

    def __str__(self) -> str:
        """The JSON-like view: the class's name, then :meth:`to_dict` as JSON (what frames and diffs show)."""
        return f"{self._qualname} {json.dumps(self.to_dict(), ensure_ascii=False, default=str)}"

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.fields.items())
        return f"<OpaqueObject {self.class_name}({shown})>"

    def __eq__(self, other: object) -> bool:
        if type(other) is not OpaqueObject:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        raise OpaqueHashError(self.class_name)

    def _key(self) -> tuple[Any, ...]:
        return (self._module, self._qualname, self._args, self._kwargs, self._state)

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise OpaquePicklingError(
            f"an OpaqueObject ({self.class_name}) cannot be pickled by the standard pickler, which would need "
            "its class; save it through a crewtrain_nb handler, or crewtrain_nb.store.dumps()."
        )

    def __copy__(self) -> OpaqueObject:
        return OpaqueObject(self._module, self._qualname, state=self._state, args=self._args, kwargs=self._kwargs)

    def __deepcopy__(self, memo: dict[int, Any]) -> OpaqueObject:
        made = OpaqueObject(self._module, self._qualname)
        memo[id(self)] = made  # a state that refers back to the object keeps doing so
        made._args = copy.deepcopy(self._args, memo)
        made._kwargs = copy.deepcopy(self._kwargs, memo)
        made._state = copy.deepcopy(self._state, memo)
        return made


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind is OpaqueObject:
        return value.to_dict()
    if kind is dict:
        return {key: _plain(item) for key, item in value.items()}
    if kind in (list, tuple):
        return [_plain(item) for item in value]
    if kind in (set, frozenset):
        return sorted((_plain(item) for item in value), key=repr)
    return value


if TYPE_CHECKING:

    class _PurePickler(pickle._Pickler):
        """``pickle._Pickler`` with the undocumented internals the writer uses (typeshed declares the public API)."""

        memo: dict[int, tuple[int, Any]]
        write: Callable[[bytes], object]
        dispatch: ClassVar[dict[type, Callable[[Any, Any], None]]]

        def save(self, obj: Any, save_persistent_id: bool = True) -> None: ...
        def memoize(self, obj: Any) -> None: ...
        def put(self, idx: int) -> bytes: ...
        def get(self, i: int) -> bytes: ...

else:
    _PurePickler = pickle._Pickler


class _Writer(_PurePickler):
    """The pure-Python pickler, which also writes :class:`OpaqueObject` as its class reference and state.

    ``memo_base`` shifts every memo index (protocols below 4 write them
    explicitly), so a piece written on its own can sit after others in one file.
    """

    dispatch = dict(_PurePickler.dispatch)

    def __init__(self, file: io.BytesIO, protocol: int, *, memo_base: int = 0, fast: bool = False) -> None:
        super().__init__(file, protocol)
        if memo_base and protocol >= 4:
            raise ValueError("MEMOIZE numbers memo slots by position: a memo base needs protocol < 4")
        self._memo_base = memo_base
        self.fast = fast
        self._class_refs: dict[tuple[str, str], tuple[str, str]] = {}

    def put(self, idx: int) -> bytes:  # noqa: D102 - pickle API
        return super().put(idx + self._memo_base)

    def get(self, i: int) -> bytes:  # noqa: D102 - pickle API
        return super().get(i + self._memo_base)

    def save_opaque(self, obj: OpaqueObject) -> None:
        # What pickle writes for ``object.__reduce_ex__(2+)``: the class, NEWOBJ(_EX), the object, BUILD.
        self._save_class(obj.module, obj.qualname)
        if obj._kwargs:
            self.save(obj._args)
            self.save(obj._kwargs)
            self.write(pickle.NEWOBJ_EX)
        else:
            self.save(obj._args)
            self.write(pickle.NEWOBJ)
        self.memoize(obj)
        if obj._state is not None:
            self.save(obj._state)
            self.write(pickle.BUILD)

    def _save_class(self, module: str, qualname: str) -> None:
        # One object stands for the class in the memo, so a second instance refers to the first reference.
        ref = self._class_refs.setdefault((module, qualname), (module, qualname))
        found = self.memo.get(id(ref))
        if found is not None:
            self.write(self.get(found[0]))
            return
        self.save(module)
        self.save(qualname)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(ref)

    dispatch[OpaqueObject] = save_opaque


def dumps(obj: Any, *, protocol: int = 4) -> bytes:
    """``pickle.dumps(obj, protocol)``, also for data holding :class:`OpaqueObject` placeholders.

    Data without placeholders is pickled by the C pickler (the same bytes as
    ``pickle.dumps``); a placeholder is written as its class reference,
    ``NEWOBJ`` and ``BUILD`` of its state, as the class's own pickle would be.
    """
    try:
        return pickle.dumps(obj, protocol=protocol)
    except OpaquePicklingError:
        pass
    buffer = io.BytesIO()
    _Writer(buffer, protocol).dump(obj)
    return buffer.getvalue()


# -- pieces of a dict, for the store's per-key reuse ------------------------------------------------------------

#: Types whose values are immutable and hold nothing mutable: sharing them is invisible, so they need no memo.
_ATOMS: frozenset[type] = frozenset({str, bytes, int, float, complex, bool, type(None)})


def _extra_atoms() -> frozenset[type]:
    import datetime
    import decimal
    import uuid

    return frozenset(
        {datetime.datetime, datetime.date, datetime.time, datetime.timedelta, datetime.timezone, decimal.Decimal,
         uuid.UUID}
    )  # fmt: skip


_IMMUTABLE = _ATOMS | _extra_atoms()


def is_tree(values: Iterable[Any], *, fresh: bool = False) -> bool:
    """Whether no mutable object is reached twice from ``values`` (no sharing, no cycle): then no memo is needed.

    Strings, numbers and other immutable values may be shared (a copy loads
    equal). An object this does not know (a user's class, a numpy array of
    objects) counts as possibly shared, so its piece keeps a memo. With
    ``fresh``, also ``False`` when a frozenset holds anything but immutable
    values: copies share frozensets, so what they hold may be shared elsewhere.
    """
    seen: set[int] = set()
    stack = list(values)
    immutable = _IMMUTABLE
    numpy = sys.modules.get("numpy")
    while stack:
        obj = stack.pop()
        kind = type(obj)
        if kind in immutable:
            continue
        if kind is tuple or kind is frozenset:
            inner = [item for item in obj if type(item) not in immutable]
            if fresh and inner and kind is frozenset:
                return False
            stack.extend(inner)
            continue
        ident = id(obj)
        if ident in seen:
            return False
        seen.add(ident)
        if kind is dict:
            stack.extend(item for item in obj.values() if type(item) not in immutable)
            stack.extend(key for key in obj if type(key) not in immutable)
        elif kind is list or kind is set:
            stack.extend(item for item in obj if type(item) not in immutable)
        elif kind is OpaqueObject:
            stack.extend((obj._args, obj._kwargs, obj._state))
        elif kind is bytearray:
            continue
        elif numpy is not None and isinstance(obj, numpy.generic | numpy.dtype):
            if getattr(obj, "dtype", obj).hasobject:
                return False
            seen.discard(ident)  # immutable: sharing is invisible
        elif numpy is not None and kind is numpy.ndarray:
            if obj.dtype.hasobject:
                return False  # objects inside: the memo keeps what they share
        else:
            return False
    return True


def _fast_body(obj: Any) -> bytes:
    """``obj`` pickled with protocol 3 and no memo: PROTO and STOP stripped, so bodies concatenate anywhere."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=3)
    pickler.fast = True
    try:
        pickler.dump(obj)
    except OpaquePicklingError:
        buffer = io.BytesIO()
        _Writer(buffer, 3, fast=True).dump(obj)
    return buffer.getvalue()[2:-1]


def put_op(slot: int) -> bytes:
    """``BINPUT``/``LONG_BINPUT`` of memo slot ``slot``."""
    return pickle.BINPUT + bytes([slot]) if slot < 256 else pickle.LONG_BINPUT + slot.to_bytes(4, "little")


def _memo_seed(size: int) -> pickle.Pickler:
    """A C pickler whose memo already holds ``size`` objects nothing else can reach: it numbers from ``size``."""
    seed = pickle.Pickler(io.BytesIO(), protocol=3)
    if size:
        seed.dump([[] for _ in range(size - 1)])  # the list itself and its size - 1 lists
    return seed


class Piece:
    """One ``key, value`` pair of a top-level dict, pickled to be spliced into the store's file.

    Attributes
    ----------
    memo_base
        ``None`` for a memo-free piece (it can sit anywhere; a dict value gets
        its memo slot at the splice); otherwise the first memo slot it defines
        (it must be re-pickled to sit elsewhere).
    memo_count
        Memo slots the piece defines.
    slot
        The memo slot of the value (an agent's dict) in the file last written, or ``None``.
    """

    __slots__ = ("key", "memo_base", "memo_count", "slot", "value", "value_is_dict")

    def __init__(self, key: bytes, value: bytes, *, value_is_dict: bool, memo_base: int | None, memo_count: int):
        self.key = key
        self.value = value
        self.value_is_dict = value_is_dict
        self.memo_base = memo_base
        self.memo_count = memo_count
        self.slot: int | None = None

    def fits(self, base: int) -> bool:
        """Whether the piece can start at memo slot ``base`` as it is."""
        return self.memo_base is None or self.memo_base == base

    def parts(self, base: int) -> tuple[bytes, ...]:
        """The bytes of the piece starting at memo slot ``base`` (which :meth:`fits`)."""
        if self.memo_base is not None:
            return (self.key, self.value)
        if self.value_is_dict:
            self.slot = base
            return (self.key, pickle.EMPTY_DICT, put_op(base), self.value)
        return (self.key, self.value)


def pickle_piece(key: Any, value: Any, *, memo_base: int, tree: bool | None = None) -> Piece:
    """Pickle ``key, value`` to sit in a file where memo slots below ``memo_base`` are taken.

    ``tree=True`` says the caller knows the pair shares no mutable object (see :func:`is_tree`).
    """
    value_is_dict = type(value) is dict
    if tree or (tree is None and is_tree((key, value))):
        body = _fast_body(value)
        if value_is_dict:
            assert body[:1] == pickle.EMPTY_DICT
            body = body[1:]
        piece = Piece(_fast_body(key), body, value_is_dict=value_is_dict, memo_base=None, memo_count=value_is_dict)
        return piece
    # Shared or cyclic: a memo numbered from memo_base, so its references stay inside the piece.
    try:
        buffer = io.BytesIO()
        pickler = pickle.Pickler(buffer, protocol=3)
        pickler.memo = _memo_seed(memo_base).memo
        pickler.dump(key)
        split = len(buffer.getvalue())
        after_key = len(pickler.memo.copy())
        pickler.dump(value)
        total = len(pickler.memo.copy())
    except OpaquePicklingError:
        buffer = io.BytesIO()
        writer = _Writer(buffer, 3, memo_base=memo_base)
        writer.dump(key)
        split = len(buffer.getvalue())
        after_key = memo_base + len(writer.memo)
        writer.dump(value)
        total = memo_base + len(writer.memo)
    data = buffer.getvalue()
    piece = Piece(data[2 : split - 1], data[split + 2 : -1], value_is_dict=value_is_dict, memo_base=memo_base,
                  memo_count=total - memo_base)  # fmt: skip
    piece.slot = after_key if value_is_dict else None
    return piece


# -- loading: which opcode shapes make a placeholder -----------------------------------------------------------


class ShapeRefused(Exception):
    """A global outside the allow-list is used other than as the class of a new object built with plain state."""

    def __init__(self, global_name: str, reason: str) -> None:
        super().__init__(reason)
        self.global_name = global_name
        self.reason = reason


class ClassRef:
    """What ``GLOBAL``/``STACK_GLOBAL`` of a class outside the allow-list pushes: its name only, nothing imported.

    Only ``NEWOBJ``/``NEWOBJ_EX`` (or ``copyreg._reconstructor(ref, object,
    None)`` / ``copyreg.__newobj__(ref, *args)``) may use it; anything else
    that reaches it is refused by :class:`OpaqueLoading`.
    """

    __slots__ = ("module", "qualname")

    def __init__(self, module: str, qualname: str) -> None:
        self.module = module
        self.qualname = qualname

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"

    def __hash__(self) -> int:
        raise ShapeRefused(self.name, f"{self.name} used as a dict key or set element (a class pushed as a value)")

    def __repr__(self) -> str:
        return f"<class reference {self.name}>"


@overload
def _escaped_ref(value: Any) -> ClassRef | None: ...
@overload
def _escaped_ref(value: Any, *, callables: bool) -> object | None: ...
def _escaped_ref(value: Any, *, callables: bool = False) -> object | None:
    """The first :class:`ClassRef` (or, with ``callables``, class or function) reachable from ``value``."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        obj = stack.pop()
        kind = type(obj)
        if kind in _IMMUTABLE:
            continue
        if type(obj) is ClassRef:
            return obj
        if callables and (isinstance(obj, type) or callable(obj)):
            escaped: object = obj  # a class or function: what it is does not matter, only that it is there
            return escaped
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if kind is dict:
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif kind in (list, tuple, set, frozenset):
            stack.extend(obj)
        elif kind is OpaqueObject:
            stack.extend((obj._args, obj._kwargs, obj._state))
    return None


class OpaqueLoading:
    """The placeholder rules of one safe load, used by the checked unpickler at each call, ``NEWOBJ`` and ``BUILD``.

    Parameters
    ----------
    allowed
        ``(module, qualname) -> class`` of the user's ``allowed_classes``, loaded as real instances.
    patterns
        ``id(callable) -> name`` of what the unpickler resolves ``copyreg._reconstructor``,
        ``copyreg.__newobj__`` and ``copyreg.__newobj_ex__`` to.
    """

    def __init__(self, allowed: Mapping[tuple[str, str], type], patterns: Mapping[int, str]) -> None:
        self.allowed = allowed
        self._patterns = patterns
        self._refs: list[ClassRef] = []
        self._unbuilt: dict[int, OpaqueObject] = {}
        self.made = 0

    def find_class(self, module: str, name: str) -> Any:
        """The allowed class, a :class:`ClassRef`, or ``None`` (refuse the global)."""
        found = self.allowed.get((module, name))
        if found is not None:
            return found
        if not may_be_opaque(module, name):
            return None
        ref = ClassRef(module, name)
        self._refs.append(ref)
        return ref

    def new(self, ref: Any, args: Any, kwargs: Any) -> OpaqueObject:
        """``NEWOBJ``/``NEWOBJ_EX`` of a class reference: a placeholder waiting for its ``BUILD``."""
        if type(ref) is OpaqueObject:
            raise ShapeRefused(ref.class_name, f"an instance of {ref.class_name} used as the class of a new object")
        if type(args) is not tuple or type(kwargs) is not dict:
            raise ShapeRefused(ref.name, f"{ref.name} created with arguments that are not a tuple and a dict")
        found = _escaped_ref((args, kwargs), callables=True)
        if found is not None:
            raise ShapeRefused(ref.name, f"{ref.name} created with a class or callable among its arguments")
        made = OpaqueObject(ref.module, ref.qualname, args=args, kwargs=kwargs)
        self._unbuilt[id(made)] = made
        self.made += 1
        return made

    def call(self, func: Any, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """``REDUCE``/``INST``/``OBJ`` of ``func``: ``(True, result)`` for a copyreg pattern, else ``(False, None)``.

        Raises :class:`ShapeRefused` when a class reference is called, or passed to a call.
        """
        if type(func) is ClassRef:
            raise ShapeRefused(func.name, f"{func.name} is called (REDUCE/INST/OBJ), which runs its code")
        if type(func) is OpaqueObject:
            raise ShapeRefused(func.class_name, f"an instance of {func.class_name} is called (REDUCE/INST/OBJ)")
        if not self._refs:
            return False, None  # no class reference in this load: nothing to look for
        pattern = self._patterns.get(id(func))
        if args and type(args[0]) is ClassRef and pattern is not None:
            ref = args[0]
            if pattern == "_reconstructor":
                if len(args) == 3 and args[1] is object and args[2] is None:
                    return True, self.new(ref, (), {})
                raise ShapeRefused(ref.name, f"copyreg._reconstructor of {ref.name} with a base or state")
            if pattern == "__newobj__":
                return True, self.new(ref, tuple(args[1:]), {})
            if pattern == "__newobj_ex__" and len(args) == 3:
                return True, self.new(ref, args[1], args[2])
            if pattern == "getattr" and len(args) == 2 and type(args[1]) is str:
                qualname = f"{ref.qualname}.{args[1]}"
                if not may_be_opaque(ref.module, qualname):
                    raise ShapeRefused(f"{ref.module}.{qualname}", f"getattr of {args[1]!r}, which is no class name")
                nested = ClassRef(ref.module, qualname)
                self._refs.append(nested)
                return True, nested
        found = _escaped_ref(args)
        if found is not None:
            raise ShapeRefused(found.name, f"{found.name} passed to a call (a class pushed as a value)")
        return False, None

    def build(self, inst: Any, state: Any) -> bool:
        """``BUILD``: fill a placeholder once (``True``); refuse class references in any other ``BUILD``."""
        if type(inst) is ClassRef:
            raise ShapeRefused(inst.name, f"BUILD on the class {inst.name} itself")
        if type(inst) is OpaqueObject:
            if self._unbuilt.pop(id(inst), None) is not inst:
                raise ShapeRefused(inst.class_name, f"a second BUILD of an instance of {inst.class_name}")
            found = _escaped_ref(state)
            if found is not None:
                raise ShapeRefused(found.name, f"{found.name} inside the state of {inst.class_name}")
            inst._state = state
            return True
        found = _escaped_ref(state) if self._refs else None
        if found is not None:
            raise ShapeRefused(found.name, f"{found.name} used in the BUILD of a {type(inst).__name__}")
        return False

    def finish(self, memo: dict[Any, Any]) -> None:
        """After the load: every placeholder was built once, and no class reference is left anywhere."""
        for made in self._unbuilt.values():
            raise ShapeRefused(made.class_name, f"an instance of {made.class_name} never given its state (no BUILD)")
        if not self._refs:
            return
        memo.clear()  # the memo's references are the only others a finished load leaves
        if _EXACT_REFCOUNTS:
            # CPython counts references exactly. What the loop itself adds (the list's, the loop variable's, the
            # argument's) is measured on an object nothing else holds, with the very same loop.
            baseline = 0
            for probe in [object()]:
                baseline = sys.getrefcount(probe)
            escaped = []
            for ref in self._refs:
                if sys.getrefcount(ref) > baseline:
                    escaped.append(ref)
        else:
            escaped = self._refs  # no exact counts: refuse what cannot be shown to be gone
        if escaped:
            name = escaped[0].name
            raise ShapeRefused(name, f"{name} pushed as a value (only the class of a new object may be named)")


#: Whether ``sys.getrefcount`` is exact (not on free-threaded CPython, which defers some counts).
_EXACT_REFCOUNTS: bool = getattr(sys, "_is_gil_enabled", lambda: True)()

