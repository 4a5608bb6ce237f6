"""A CPython bug the C unpickler can trip on crafted input, kept from printing.

When ``PyByteArray_FromStringAndSize`` cannot allocate a huge buffer (a
``BYTEARRAY8`` opcode declaring terabytes), CPython 3.10-3.13 frees the new
object before setting its export count, so ``bytearray``'s destructor reads
whatever the allocator left in that field. When that is not zero it calls
``PyErr_Print``: ``SystemError: deallocated bytearray object has exported
buffers`` goes to ``sys.excepthook`` (stderr) and into ``sys.last_value``,
although nothing was exported and the load then fails cleanly with
``MemoryError`` (the store reports the file as corrupt). Whether it prints
depends on the heap's earlier contents, so no cheap test of the bytes can
predict it; ruling the opcode out would mean walking every opcode in Python,
seconds on a large store.

:func:`quiet_bytearray_bug` keeps exactly that message, raised in the loading
thread while a load runs, from reaching the user's hook, and puts back the
``sys.last_*`` values ``PyErr_Print`` overwrote. Every other exception,
thread and message goes to the hook that was installed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = ["BYTEARRAY_BUG_MESSAGE", "quiet_bytearray_bug"]

#: What CPython's ``bytearray`` destructor prints when it believes buffers are still exported.
BYTEARRAY_BUG_MESSAGE = "deallocated bytearray object has exported buffers"

# What PyErr_Print sets (``last_exc`` exists from 3.12 on).
_LAST_NAMES = ("last_type", "last_value", "last_traceback", "last_exc")
_MISSING = object()

_guard = threading.Lock()
_loading: dict[int, int] = {}  # thread id -> nesting depth of loads running in it
_swallowed: set[int] = set()  # threads whose load had the message kept from the hook


class _QuietHook:
    """``sys.excepthook`` while a load runs: drops the bytearray message of a loading thread, passes on the rest."""

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(self, kind: type[BaseException], value: BaseException, traceback: TracebackType | None) -> Any:
        thread = threading.get_ident()
        if kind is SystemError and str(value) == BYTEARRAY_BUG_MESSAGE and thread in _loading:
            _swallowed.add(thread)
            return None
        return self.previous(kind, value, traceback)


@contextmanager
def quiet_bytearray_bug() -> Iterator[None]:
    """Run an unpickling without CPython's spurious ``bytearray`` ``SystemError`` printing or lingering."""
    thread = threading.get_ident()
    saved = {name: getattr(sys, name, _MISSING) for name in _LAST_NAMES}
    with _guard:
        if not _loading:
            sys.excepthook = _QuietHook(sys.excepthook)
        _loading[thread] = _loading.get(thread, 0) + 1
    try:
        yield
    finally:
        with _guard:
            _loading[thread] -= 1
            if not _loading[thread]:
                del _loading[thread]
            hook = sys.excepthook
            # Someone may have installed their own hook meanwhile (IPython does): leave theirs in place.
            if not _loading and isinstance(hook, _QuietHook):
                sys.excepthook = hook.previous
            swallowed = thread in _swallowed and thread not in _loading
            if swallowed:
                _swallowed.discard(thread)
        if swallowed:
            for name, value in saved.items():
                if value is _MISSING:
                    if hasattr(sys, name):
                        delattr(sys, name)
                else:
                    setattr(sys, name, value)
