"""numpy under safe loading: the checks of every numpy construction a pickle asks for, and the stand-ins
and placeholders that let the C unpickler load numpy's own pickles through those checks.

``ndarray.__setstate__`` and ``dtype.__setstate__`` trust their input (a short element list is read out
of bounds, an object field overlapping an int field forges pointers; both crash the interpreter), so a
pickle's numpy objects are only ever built here: by :class:`NumpyChecks` in the checked unpickler, and
by :class:`FastNumpy` (through the same checks) in the C unpickler, which hands anything else to the
checked one by raising :class:`~crewtrain_nb.store._allowlist.NeedsChecks`. This module is the unit to
review for numpy.
"""

from __future__ import annotations

import collections
import math
import pickle
import re
import sys
from collections.abc import Callable
from typing import Any

from ._allowlist import NeedsChecks, Refused, resolve_numpy


def _numpy_function(key: tuple[str, str]) -> Callable[..., Any]:
    """The numpy function a check calls once the arguments passed (numpy is imported: the checks exist)."""
    found = resolve_numpy(key)
    assert callable(found), key  # resolve_numpy returns None only without numpy
    return found

_TYPE_CODE = re.compile(r"[A-Za-z][0-9]{0,12}")
_TIME_UNIT = re.compile(rb"[A-Za-z]{1,3}")


class NumpyChecks:
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
            raise Refused("numpy.ndarray", "numpy.ndarray called directly (numpy's pickles never do)")

        return {
            id(np.ndarray): refuse_ndarray,
            id(np.dtype): self.dtype,
            id(resolve_numpy(("numpy._core.multiarray", "_reconstruct"))): self.reconstruct,
            id(resolve_numpy(("numpy._core.multiarray", "scalar"))): self.scalar,
            id(resolve_numpy(("numpy._core.numeric", "_frombuffer"))): self.frombuffer,
        }

    def handles(self, inst: Any) -> bool:
        """Whether a ``BUILD`` on ``inst`` must go through :meth:`build`."""
        return isinstance(inst, (self.np.ndarray, self.np.dtype, self.np.generic))

    def build(self, inst: Any, state: Any) -> Any:
        """``BUILD`` on a numpy object: once, on what this load created; returns what replaces ``inst``."""
        if self.unfilled.pop(id(inst), None) is not inst:
            raise Refused("numpy", f"BUILD on a numpy {type(inst).__name__} numpy's pickles never fill")
        if isinstance(inst, self.np.ndarray):
            self.fill_array(inst, state)
            return inst
        return self.dtype_from_state(inst, state)

    def checked_dtype(self, dtype: Any) -> Any:
        if not isinstance(dtype, self.np.dtype):
            raise Refused("numpy.dtype", f"a {type(dtype).__name__} where numpy's pickles have a dtype")
        return dtype

    def dtype(self, code: Any = None, align: Any = False, copy: Any = False) -> Any:
        # numpy pickles a dtype as a bare type code ("f8", "V16", "M8"); longer
        # strings go through numpy's parser, which compiles shape expressions.
        if not (isinstance(code, str) and _TYPE_CODE.fullmatch(code)) or not (isinstance(align, bool) and copy is True):
            # Without copy=True, dtype("f8") is numpy's shared float64, which a BUILD would change process-wide.
            raise Refused("numpy.dtype", f"numpy.dtype({code!r:.40}, ...) is not how numpy pickles a dtype")
        dtype = self.np.dtype(code, align, copy)
        self.unfilled[id(dtype)] = dtype
        return dtype

    def dtype_from_state(self, template: Any, state: Any) -> Any:
        """The dtype ``template.__setstate__(state)`` would describe, built by numpy's constructor."""
        np = self.np
        if type(state) is not tuple or len(state) not in (8, 9):
            raise Refused("numpy.dtype", "a numpy dtype state that is not numpy's")
        version, byteorder, subarray, names, fields, itemsize, _alignment, flags = state[:8]
        if version not in (3, 4) or byteorder not in ("<", ">", "|", "=") or type(flags) is not int:
            raise Refused("numpy.dtype", "a numpy dtype state that is not numpy's")
        try:
            if names is not None:
                dtype = np.dtype(self._struct_spec(template, names, fields, itemsize), align=bool(flags & 0x80))
            elif subarray is not None:
                if type(subarray) is not tuple or len(subarray) != 2:
                    raise Refused("numpy.dtype", "a numpy subarray state that is not numpy's")
                base, shape = subarray
                dtype = np.dtype((self.checked_dtype(base), self._shape(shape)))
            else:
                dtype = self._simple(template, byteorder, state[8] if len(state) == 9 else None)
        except (TypeError, ValueError) as exc:
            raise Refused("numpy.dtype", f"a numpy dtype numpy itself refuses to build ({exc})") from exc
        if type(itemsize) is not int or itemsize not in (-1, dtype.itemsize):
            raise Refused("numpy.dtype", f"a numpy dtype state whose size {itemsize!r} does not match {dtype}")
        return dtype

    def _struct_spec(self, template: Any, names: Any, fields: Any, itemsize: Any) -> dict[str, Any]:
        if template.kind != "V" or type(names) is not tuple or type(fields) is not dict or type(itemsize) is not int:
            raise Refused("numpy.dtype", "a numpy structured dtype state that is not numpy's")
        formats, offsets, titles = [], [], []
        for name in names:
            field = fields.get(name) if type(name) is str else None
            if type(field) is not tuple or len(field) not in (2, 3) or type(field[1]) is not int:
                raise Refused("numpy.dtype", f"a numpy field state that is not numpy's: {name!r:.40}")
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
                raise Refused("numpy.dtype", "a numpy datetime dtype state that is not numpy's")
            dtype = np.dtype(f"{template.kind}8[{unit[1]}{unit[0].decode()}]")
        if byteorder in "<>" and dtype.byteorder != "|":
            dtype = dtype.newbyteorder(byteorder)
        return dtype

    def _shape(self, shape: Any) -> tuple[int, ...]:
        if not isinstance(shape, tuple) or not all(type(size) is int and size >= 0 for size in shape):
            raise Refused("numpy.ndarray", f"a numpy shape that is not a tuple of sizes: {shape!r:.60}")
        return shape

    def _count(self, shape: Any) -> int:
        count = math.prod(self._shape(shape))
        if count > self.budget:
            raise Refused("numpy.ndarray", f"a numpy array of {count} elements from a {self.budget}-byte budget")
        return count

    def reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        if subtype is not self.np.ndarray or shape != (0,) or dtype != b"b":
            raise Refused("numpy._core.multiarray._reconstruct", "_reconstruct other than numpy's empty template")
        array = _numpy_function(("numpy._core.multiarray", "_reconstruct"))(subtype, shape, dtype)
        self.unfilled[id(array)] = array
        return array

    def scalar(self, dtype: Any, data: Any = None) -> Any:
        checked = self.checked_dtype(dtype)
        if checked.hasobject or type(data) is not bytes or len(data) != checked.itemsize:
            raise Refused("numpy._core.multiarray.scalar", f"a numpy scalar of {checked!r} from {type(data).__name__}")
        return _numpy_function(("numpy._core.multiarray", "scalar"))(checked, data)

    def frombuffer(self, buffer: Any, dtype: Any, shape: Any, order: Any) -> Any:
        checked = self.checked_dtype(dtype)
        count = self._count(shape)
        if checked.hasobject or not isinstance(buffer, (bytes, bytearray)) or len(buffer) != count * checked.itemsize:
            raise Refused("numpy._core.numeric._frombuffer", "an array buffer that does not match its dtype and shape")
        if order not in ("C", "F"):
            raise Refused("numpy._core.numeric._frombuffer", f"array order {order!r:.20}")
        frombuffer = _numpy_function(("numpy._core.numeric", "_frombuffer"))
        return frombuffer(buffer, checked, shape, order)

    def fill_array(self, array: Any, state: Any) -> None:
        """``BUILD`` of an array: version 1, a checked dtype, and data that matches the shape exactly."""
        if type(state) is not tuple or len(state) != 5 or state[0] != 1 or type(state[3]) is not bool:
            raise Refused("numpy.ndarray", "a numpy array state that is not numpy's")
        _, shape, dtype, fortran, data = state
        checked = self.checked_dtype(dtype)
        count = self._count(shape)
        if checked.hasobject:
            # numpy reads ``count`` items from the list without checking its length.
            if type(data) is not list or len(data) != count:
                raise Refused("numpy.ndarray", "a numpy object array whose element list does not match its shape")
        elif type(data) is not bytes or len(data) != count * checked.itemsize:
            raise Refused("numpy.ndarray", "a numpy array whose data does not match its dtype and shape")
        if count * checked.itemsize > self.budget:
            raise Refused("numpy.ndarray", "a numpy array far larger than the file could describe")
        array.__setstate__((1, shape, checked, fortran, data))


#: The numpy globals numpy's own pickles name, which the C unpickler may call through :class:`FastNumpy`.
FAST_NUMPY: dict[tuple[str, str], str] = {("numpy", "dtype"): "dtype", ("numpy", "ndarray"): "ndarray"}
for _core in ("numpy.core", "numpy._core"):
    FAST_NUMPY[(f"{_core}.multiarray", "scalar")] = "scalar"
    FAST_NUMPY[(f"{_core}.multiarray", "_reconstruct")] = "reconstruct"
    FAST_NUMPY[(f"{_core}.numeric", "_frombuffer")] = "frombuffer"


class _StandIn:
    """What the C unpickler gets for an allowed numpy global: calls go to the checks; ``BUILD`` on it is refused."""

    __slots__ = ("_call", "role")

    def __init__(self, call: Callable[..., Any], role: str) -> None:
        self._call = call
        self.role = role

    def __call__(self, *args: Any) -> Any:
        return self._call(*args)

    def __setstate__(self, state: Any) -> None:
        raise NeedsChecks  # BUILD on a global: the checked unpickler refuses it, naming it


class _PendingDtype:
    """A dtype numpy's pickles build in two steps, ``dtype(code, align, True)`` then ``BUILD``.

    The C unpickler holds this in its place; ``BUILD`` (its ``__setstate__``)
    checks the state and builds the dtype with numpy's own constructor, as
    :meth:`NumpyChecks.dtype_from_state` does for the checked unpickler. Only
    plain dtypes: a structured or subarray state goes to the checked unpickler.
    """

    __slots__ = ("_checks", "_template", "built")

    def __init__(self, checks: NumpyChecks, template: Any) -> None:
        self._checks = checks
        self._template = template
        self.built: Any = None

    def __setstate__(self, state: Any) -> None:
        if self.built is not None or type(state) is not tuple or len(state) not in (8, 9):
            raise NeedsChecks
        if state[2] is not None or state[3] is not None:  # subarray, field names
            raise NeedsChecks
        try:
            self.built = self._checks.dtype_from_state(self._template, state)
        except Refused:
            raise NeedsChecks from None


def _filled_dtype(value: Any) -> Any:
    """The dtype a filled :class:`_PendingDtype` built; anything else is for the checked unpickler to judge."""
    if type(value) is not _PendingDtype or value.built is None:
        raise NeedsChecks
    return value.built


class _PendingArray:
    """An array numpy's pickles build in two steps, ``_reconstruct(ndarray, (0,), b"b")`` then ``BUILD``.

    ``BUILD`` (its ``__setstate__``) fills a new empty array through
    :meth:`NumpyChecks.fill_array`, never numpy's ``__setstate__`` on
    unchecked input; :meth:`FastNumpy.finish` then puts the array where the
    C unpickler put this. Arrays of objects go to the checked unpickler.
    """

    __slots__ = ("_checks", "built")

    def __init__(self, checks: NumpyChecks) -> None:
        self._checks = checks
        self.built: Any = None

    def __setstate__(self, state: Any) -> None:
        if self.built is not None or type(state) is not tuple or len(state) != 5:
            raise NeedsChecks
        dtype = _filled_dtype(state[2])
        if dtype.hasobject:
            raise NeedsChecks
        empty = _numpy_function(("numpy._core.multiarray", "_reconstruct"))(self._checks.np.ndarray, (0,), b"b")
        try:
            self._checks.fill_array(empty, (*state[:2], dtype, *state[3:]))
        except Refused:
            raise NeedsChecks from None
        self.built = empty


class GiveUp(Exception):
    """A placeholder sits where :meth:`FastNumpy.finish` does not replace it: load with the checked unpickler."""


class FastNumpy:
    """numpy for the C unpickler, built by :class:`NumpyChecks`; anything else raises :class:`NeedsChecks`.

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
        self._checks = NumpyChecks(payload_size)
        #: Every stand-in and placeholder this load made.
        self._made: list[_StandIn | _PendingDtype | _PendingArray] = []
        self._arrays = False

    def stand_in(self, role: str) -> _StandIn:
        made = _StandIn(getattr(self, role), role)
        self._made.append(made)
        return made

    def ndarray(self, *args: Any) -> Any:
        raise NeedsChecks  # numpy's pickles never call it; the checked unpickler refuses it

    def frombuffer(self, *args: Any) -> Any:
        """Protocol 5: ``_frombuffer(buffer, dtype, shape, order)``, no ``BUILD``."""
        if len(args) != 4:
            raise NeedsChecks
        try:
            return self._checks.frombuffer(args[0], _filled_dtype(args[1]), args[2], args[3])
        except Refused:
            raise NeedsChecks from None

    def reconstruct(self, *args: Any) -> _PendingArray:
        if len(args) != 3 or type(args[0]) is not _StandIn or args[0].role != "ndarray":
            raise NeedsChecks
        if type(args[1]) is not tuple or args[1] != (0,) or type(args[2]) is not bytes or args[2] != b"b":
            raise NeedsChecks
        pending = _PendingArray(self._checks)
        self._made.append(pending)
        self._arrays = True
        return pending

    def finish(self, loaded: Any) -> Any:
        """``loaded`` with each array placeholder replaced by its array; raises :class:`GiveUp` where it cannot.

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
                    raise GiveUp
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
            raise GiveUp from None

    def dtype(self, *args: Any) -> _PendingDtype:
        try:
            template = self._checks.dtype(*args)
        except (Refused, TypeError):
            raise NeedsChecks from None
        self._checks.unfilled.pop(id(template), None)  # filled by _PendingDtype, never by a BUILD of numpy's
        pending = _PendingDtype(self._checks, template)
        self._made.append(pending)
        return pending

    def scalar(self, *args: Any) -> Any:
        if len(args) != 2:
            raise NeedsChecks
        try:
            return self._checks.scalar(_filled_dtype(args[0]), args[1])
        except Refused:
            raise NeedsChecks from None

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


#: Whether :meth:`FastNumpy.kept` may trust ``sys.getrefcount``: on the CPythons the package tests (3.10-3.13,
#: with the GIL) a finished load's references are exact, and the baseline is measured in the same expression, so
#: 3.12's immortal objects (none of ours is) change nothing. Free-threaded CPython defers some counts, and 3.14
#: borrows stack references; they are not tested, so there every pickle naming numpy loads with the checked
#: unpickler (correct first, fast second) until they are.
_EXACT_REFCOUNTS: bool = sys.version_info < (3, 14) and getattr(sys, "_is_gil_enabled", lambda: True)()
