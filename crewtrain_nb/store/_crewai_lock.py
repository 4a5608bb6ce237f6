"""CrewAI's own lock on a store file, shared without importing CrewAI.

CrewAI 1.x (``PickleHandler.load``/``save``) holds
``crewai_core.lock_store.lock(f"file:{os.path.realpath(path)}")`` while it
reads, and while it truncates the file and writes it in place. Its default
backend is a ``portalocker`` lock (``flock`` on POSIX) on
``<tempfile.gettempdir()>/crewai:<md5 of the name>.lock``; with ``REDIS_URL``
set (and ``redis`` installed) it is a Redis lock, and a program may set its own
backend with ``crewai_core.lock_store.set_lock_backend``.

:class:`CrewAILock` takes the same lock: through ``crewai_core.lock_store``
itself when that module is importable in this process (so a Redis or custom
backend is honoured), else by ``flock`` on the same file, which excludes
portalocker's ``flock`` because both lock the same inode. Nothing here imports
CrewAI at import time: the backend is chosen on first use.

Two processes exclude each other only when they compute the same lock file:
they must share ``TMPDIR`` (``tempfile.gettempdir()``) and run as the same user.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import importlib.util
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CrewAILock", "crewai_lock_file", "crewai_lock_name"]

#: How often a waiting reader or writer tries CrewAI's lock again (seconds).
_POLL_INTERVAL = 0.002
_LOCK_STORE = "crewai_core.lock_store"
#: ``lock(name, timeout=...)`` of ``crewai_core.lock_store`` once looked up; ``None``: not importable here.
_backend: list[Callable[..., Any] | None] = []
_backend_guard = threading.Lock()


class CrewAILockTimeout(TimeoutError):
    """CrewAI's lock stayed held past the deadline (the handler turns this into ``StoreLockTimeout``)."""


def crewai_lock_name(path: str) -> str:
    """The name CrewAI's ``PickleHandler`` locks for ``path``: ``file:`` and the real path.

    Examples
    --------
    >>> crewai_lock_name("/tmp/../tmp/x.pkl") == "file:" + os.path.realpath("/tmp/x.pkl")
    True
    """
    return f"file:{os.path.realpath(path)}"


def crewai_lock_file(path: str) -> str:
    """The lock file CrewAI's default (portalocker) backend uses for ``path``.

    ``os.path.join(tempfile.gettempdir(), "crewai:" + md5(name).hexdigest() + ".lock")``
    with the name of :func:`crewai_lock_name`, as ``crewai_core.lock_store`` computes it.
    """
    digest = hashlib.md5(crewai_lock_name(path).encode(), usedforsecurity=False).hexdigest()
    return os.path.join(tempfile.gettempdir(), f"crewai:{digest}.lock")


def _crewai_backend() -> Callable[..., Any] | None:
    """``crewai_core.lock_store.lock`` when crewai is installed in this environment, else ``None``.

    Cheap in a notebook without crewai: one ``find_spec`` the first time, then
    a cached answer. When ``crewai_core`` is installed its small ``lock_store``
    module is imported (not ``crewai``), so a Redis or custom backend a program
    set up is used.
    """
    module = sys.modules.get(_LOCK_STORE)
    if module is not None:
        lock: Callable[..., Any] = module.lock
        return lock
    with _backend_guard:
        if not _backend:
            found: Callable[..., Any] | None = None
            try:
                if importlib.util.find_spec("crewai_core") is not None:
                    found = importlib.import_module(_LOCK_STORE).lock
            except Exception:  # noqa: BLE001 - a broken crewai install: fall back to the lock file itself
                found = None
            _backend.append(found)
        return _backend[0]


class CrewAILock:
    """CrewAI's lock for one store path; re-entrant for its owner (callers serialise with their own lock).

    Parameters
    ----------
    path
        The store file (its real path names the lock, as in CrewAI).
    use_crewai
        ``None`` (default): use ``crewai_core.lock_store`` when importable,
        else ``flock`` on the lock file. ``False``: always the lock file.
    """

    def __init__(self, path: str, *, use_crewai: bool | None = None) -> None:
        self.path = path
        self._use_crewai = use_crewai
        self._depth = 0
        self._release: Callable[[], None] | None = None

    @property
    def lock_file(self) -> str:
        """Where CrewAI's default backend keeps the lock (``tempfile.gettempdir()`` of this process)."""
        return crewai_lock_file(self.path)

    @contextlib.contextmanager
    def held(self, deadline: float) -> Iterator[None]:
        """Hold the lock until the block ends; wait until ``deadline`` (``time.monotonic()``) at most.

        Raises
        ------
        CrewAILockTimeout
            Another process held it until the deadline.
        OSError
            The lock file cannot be opened.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._release = self._acquire(deadline)
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            release, self._release = self._release, None
            if release is not None:
                release()

    def _acquire(self, deadline: float) -> Callable[[], None]:
        backend = _crewai_backend() if self._use_crewai is not False else None
        if backend is not None:
            return _acquire_through(backend, crewai_lock_name(self.path), deadline)
        return _acquire_flock(self.lock_file, deadline)


def _acquire_through(lock: Callable[..., Any], name: str, deadline: float) -> Callable[[], None]:
    """Enter ``crewai_core.lock_store.lock(name, timeout=...)``; return what leaves it."""
    manager = lock(name, timeout=max(deadline - time.monotonic(), 0.0))
    try:
        manager.__enter__()
    except Exception as exc:
        # portalocker raises its own LockException/AlreadyLocked, redis its LockError: all mean "held".
        raise CrewAILockTimeout(f"CrewAI's lock {name!r} was not free in time ({type(exc).__name__}: {exc})") from exc
    return lambda: manager.__exit__(None, None, None)


def _acquire_flock(lock_file: str, deadline: float) -> Callable[[], None]:
    """``flock(LOCK_EX)`` on ``lock_file`` (created as CrewAI's portalocker would), polling until ``deadline``."""
    import fcntl

    try:
        # 0o666 less the umask, as portalocker's open(..., "a") creates it, so CrewAI can open it too.
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:
        # Someone else's lock file (another user): flock works on a read-only descriptor too.
        fd = os.open(lock_file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if time.monotonic() >= deadline:
                raise CrewAILockTimeout(f"CrewAI's lock file {lock_file} stayed locked")
            time.sleep(_POLL_INTERVAL)
    except BaseException:
        os.close(fd)
        raise

    def release() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    return release
