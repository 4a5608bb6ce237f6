"""CrewAI-compatible pickle handlers that are atomic, locked, cached and safe to open."""

from __future__ import annotations

import contextlib
import numbers
import os
import pickle
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import filelock

from ..errors import CorruptStoreError, StoreError, StoreFormatError, StoreLockTimeout, StoreWriteError
from ._atomic import sweep_stale_temps, write_atomic
from ._copy import copy_plain
from ._pieces import dumps_dict
from ._unpickle import safe_loads, trusted_loads

__all__ = ["DEFAULT_LOCK_TIMEOUT", "PICKLE_PROTOCOL", "CrewTrainingHandler", "PickleHandler"]

#: Seconds to wait for another process's lock before :class:`StoreLockTimeout`.
DEFAULT_LOCK_TIMEOUT = 60.0
#: What CrewAI writes (Python's default on 3.8-3.13); every Python >= 3.4 reads it.
PICKLE_PROTOCOL = 4

_StatKey = tuple[int, int, int, int, int]


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Snapshot:
    """What ``load`` last read or ``save`` last wrote, keyed by the file's identity.

    ``fd`` stays open so the inode cannot be freed and reused by another file
    while the key refers to it.
    """

    key: _StatKey
    data: Any
    fd: int
    #: Pickled ``key, value`` pieces of a dict ``data`` (see ``_pieces``); built on first write.
    pieces: dict[Any, bytes] = field(default_factory=dict)


def _close_snapshot(box: list[_Snapshot | None]) -> None:
    snapshot = box[0]
    box[0] = None
    if snapshot is not None:
        with contextlib.suppress(OSError):
            os.close(snapshot.fd)


class PickleHandler:
    """Read and write one pickled object, the way CrewAI's ``PickleHandler`` does, but safely.

    Parameters
    ----------
    file_name
        The store file. ``.pkl`` is appended when the name does not end with it
        (as CrewAI does); a relative name resolves against the current directory.
    trusted
        ``False`` (default) loads only plain data and refuses any other global
        with :class:`~crewtrain_nb.UnsafePickleError`. ``True`` uses the full
        unpickler: only for files you trust, since a pickle can run code.
    lock_timeout
        Seconds to wait for the cross-process lock before raising
        :class:`~crewtrain_nb.StoreLockTimeout`.
    add_suffix
        ``False`` uses ``file_name`` exactly as given, even without ``.pkl``.

    Notes
    -----
    * Every write goes to a temporary file in the same directory which is
      fsynced and renamed over the store: a crash leaves the old file or the
      new one, never a torn one.
    * Writers hold a lock file (``<file>.lock``) for the whole
      read-modify-write, so processes appending at once lose nothing.
    * ``load`` keeps the last snapshot and returns a copy of it while the file
      is unchanged (same device, inode, size and times).

    Examples
    --------
    >>> import tempfile, os
    >>> from crewtrain_nb import CrewTrainingHandler
    >>> handler = CrewTrainingHandler(os.path.join(tempfile.mkdtemp(), "training_data"))
    >>> handler.file_path.endswith("training_data.pkl")
    True
    >>> handler.append(0, "agent-a", {"loss": 0.5})
    >>> handler.load()
    {'agent-a': {0: {'loss': 0.5}}}
    """

    def __init__(
        self,
        file_name: str | os.PathLike[str],
        *,
        trusted: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        add_suffix: bool = True,
    ) -> None:
        name = os.fspath(file_name) if isinstance(file_name, (str, os.PathLike)) else None
        if not isinstance(name, str):
            raise TypeError(f"file_name must be a str or os.PathLike of str, got {type(file_name).__name__}")
        if not name:
            raise ValueError("file_name is empty; give the store's file name, e.g. 'training_data.pkl'")
        if add_suffix and not name.endswith(".pkl"):
            name += ".pkl"
        if not isinstance(lock_timeout, numbers.Real) or lock_timeout < 0:
            raise ValueError(f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}")
        self.file_path: str = os.path.abspath(os.path.join(os.getcwd(), name))
        self.lock_path: str = self.file_path + ".lock"
        self.trusted = bool(trusted)
        self.lock_timeout = float(lock_timeout)
        # A short poll keeps many contending writers moving; flock itself is cheap.
        self._file_lock = filelock.FileLock(self.lock_path, timeout=self.lock_timeout, mode=0o600, poll_interval=0.005)
        self._state_lock = threading.RLock()
        # A one-item box so the finalizer can close the descriptor without a
        # reference to ``self``.
        self._snapshot_box: list[_Snapshot | None] = [None]
        self._finalizer = weakref.finalize(self, _close_snapshot, self._snapshot_box)
        self._batch_depth = 0
        self._pending: Any = None
        self._pending_dirty = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.file_path!r}, trusted={self.trusted})"

    # -- public API ---------------------------------------------------------

    def initialize_file(self) -> None:
        """Write an empty store (``{}``), replacing whatever the file held."""
        self.save({})

    def save(self, data: Any) -> None:
        """Replace the store with ``data``, atomically.

        Parameters
        ----------
        data
            Any picklable object; training stores are dicts.

        Raises
        ------
        StoreWriteError
            ``data`` cannot be pickled, or the file system failed; the
            previous file is unchanged and no temporary file is left.
        StoreLockTimeout
            Another process held the lock for longer than ``lock_timeout``.
        """
        with self._state_lock:
            if self._batch_depth:
                self._pending = copy_plain(data)
                self._pending_dirty = True
                return
            with self._locked():
                # The caller keeps ``data`` and may mutate it, so it is not cached.
                self._write(data, cache=False)

    def load(self) -> Any:
        """Return the stored object; ``{}`` when the file is missing or empty.

        The result is the caller's to mutate: it never changes what a later
        ``load`` returns unless it is saved.

        Raises
        ------
        CorruptStoreError
            The file is truncated or not a pickle; it is left untouched.
        UnsafePickleError
            The file names a global that safe loading refuses; nothing ran.
        """
        with self._state_lock:
            data = self._pending if self._batch_depth else self._read()
            try:
                return copy_plain(data)
            except RecursionError as exc:
                # A few bytes of pickle can nest lists 100,000 deep; nothing
                # that deep is a training store, and every walk over it fails.
                raise CorruptStoreError(
                    f"{self.file_path}: the data is nested too deeply to be a training store. "
                    "The file is left untouched; restore it from a backup or move it aside.",
                    path=self.file_path,
                ) from exc

    def peek(self) -> Any:
        """Return the stored object *without* copying it: read-only, for fast readers.

        Frames and plots use this to avoid copying a large store they only read.
        Mutating the result corrupts this handler's cache; use :meth:`load`
        for data you want to change.
        """
        with self._state_lock:
            return self._pending if self._batch_depth else self._read()

    @contextlib.contextmanager
    def batch(self) -> Iterator[PickleHandler]:
        """Hold the lock and write once at the end of the block.

        Inside the block, ``append``, ``save_trained_data``, ``save`` and
        ``clear`` change an in-memory copy and ``load`` returns it. If the
        block raises, nothing is written. A nested ``batch`` joins the outer one.

        Yields
        ------
        PickleHandler
            This handler.

        Examples
        --------
        >>> import tempfile, os
        >>> from crewtrain_nb import CrewTrainingHandler
        >>> handler = CrewTrainingHandler(os.path.join(tempfile.mkdtemp(), "run"))
        >>> with handler.batch():
        ...     for step in range(3):
        ...         handler.append(step, "agent-a", {"loss": 1 / (step + 1)})
        >>> sorted(handler.load()["agent-a"])
        [0, 1, 2]
        """
        with self._state_lock:
            if self._batch_depth:
                self._batch_depth += 1
                try:
                    yield self
                finally:
                    self._batch_depth -= 1
                return
            with self._locked():
                # Work on the cached snapshot itself: no copy. It is dropped
                # below if the block fails, so the cache never holds unsaved changes.
                self._pending = self._read()
                self._pending_dirty = False
                self._batch_depth = 1
                try:
                    yield self
                    if self._pending_dirty:
                        self._write(self._pending, cache=True)
                except BaseException:
                    self._drop_snapshot()
                    raise
                finally:
                    self._batch_depth = 0
                    self._pending = None
                    self._pending_dirty = False

    def close(self) -> None:
        """Release the descriptor held for the cache. The handler stays usable."""
        with self._state_lock:
            self._drop_snapshot()

    def __enter__(self) -> PickleHandler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------

    def _mutate(self, change: Callable[[Any], None], key: Any) -> None:
        """Apply ``change`` (which alters only ``data[key]``) to the stored dict under the lock, and save."""
        with self._state_lock:
            if self._batch_depth:
                change(self._expect_dict(self._pending))
                self._forget_piece(key)
                self._pending_dirty = True
                return
            with self._locked():
                data = self._expect_dict(self._read())
                try:
                    change(data)
                    self._forget_piece(key)
                    self._write(data, cache=True)
                except BaseException:
                    # ``data`` is the cached snapshot and may now differ from the file.
                    self._drop_snapshot()
                    raise

    def _expect_dict(self, data: Any) -> dict[Any, Any]:
        if not isinstance(data, dict):
            raise StoreFormatError(
                f"{self.file_path}: holds a {type(data).__name__}, not a dict of agents; "
                "use another file name or initialize_file() to start an empty store.",
                path=self.file_path,
            )
        return data

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        directory = os.path.dirname(self.file_path)
        if not os.path.isdir(directory):
            raise StoreWriteError(
                f"{self.file_path}: the directory {directory} does not exist; create it first.",
                path=self.file_path,
            )
        try:
            self._file_lock.acquire()
        except filelock.Timeout as exc:
            raise StoreLockTimeout(
                f"{self.file_path}: another process held the lock {self.lock_path} for more than "
                f"{self.lock_timeout:g} s. Wait for it to finish, or raise lock_timeout.",
                path=self.file_path,
            ) from exc
        except OSError as exc:
            raise StoreWriteError(
                f"{self.file_path}: cannot create the lock file {self.lock_path} ({exc.strerror or exc}); "
                "the directory must be writable.",
                path=self.file_path,
            ) from exc
        try:
            sweep_stale_temps(self.file_path)
            yield
        finally:
            self._file_lock.release()

    def _forget_piece(self, key: Any) -> None:
        snapshot = self._snapshot_box[0]
        if snapshot is not None:
            snapshot.pieces.pop(key, None)

    def _drop_snapshot(self) -> None:
        _close_snapshot(self._snapshot_box)

    def _read(self) -> Any:
        """Return the stored object, shared with the cache: callers must not mutate it."""
        try:
            st = os.stat(self.file_path)
        except FileNotFoundError:
            self._drop_snapshot()
            return {}
        except OSError as exc:
            raise StoreError(f"{self.file_path}: cannot read ({exc.strerror or exc}).", path=self.file_path) from exc
        snapshot = self._snapshot_box[0]
        if snapshot is not None and snapshot.key == _stat_key(st):
            return snapshot.data
        try:
            fd = os.open(self.file_path, os.O_RDONLY)
        except FileNotFoundError:
            self._drop_snapshot()
            return {}
        except OSError as exc:
            raise StoreError(
                f"{self.file_path}: cannot open ({exc.strerror or exc}); check that it is a readable file.",
                path=self.file_path,
            ) from exc
        try:
            st = os.fstat(fd)
            with os.fdopen(os.dup(fd), "rb") as stream:
                payload = stream.read()
        except OSError as exc:
            os.close(fd)
            raise StoreError(
                f"{self.file_path}: cannot read ({exc.strerror or exc}); check that it is a readable file.",
                path=self.file_path,
            ) from exc
        if not payload:
            os.close(fd)
            self._drop_snapshot()
            return {}
        loads = trusted_loads if self.trusted else safe_loads
        try:
            data = loads(payload, path=self.file_path)
        except BaseException:
            os.close(fd)
            raise
        self._replace_snapshot(_Snapshot(_stat_key(st), data, fd))
        return data

    def _replace_snapshot(self, snapshot: _Snapshot) -> None:
        self._drop_snapshot()
        self._snapshot_box[0] = snapshot

    def _write(self, data: Any, *, cache: bool) -> None:
        """Pickle ``data`` and replace the file; the caller holds the lock."""
        snapshot = self._snapshot_box[0]
        reuse = cache and type(data) is dict and snapshot is not None and snapshot.data is data
        pieces = snapshot.pieces if reuse and snapshot is not None else {}
        try:
            if type(data) is dict:
                # Only changed agents are re-pickled; the bytes are a plain pickled dict.
                payload = dumps_dict(data, pieces)
            else:
                payload = pickle.dumps(data, protocol=PICKLE_PROTOCOL)
        except Exception as exc:  # pickling can raise nearly anything from user objects
            raise StoreWriteError(
                f"{self.file_path}: the data cannot be pickled ({type(exc).__name__}: {exc}); the file is unchanged.",
                path=self.file_path,
            ) from exc
        try:
            fd, st = write_atomic(self.file_path, payload)
        except OSError as exc:
            self._drop_snapshot()
            raise StoreWriteError(
                f"{self.file_path}: saving failed ({exc.strerror or exc}); the previous file is "
                "unchanged. Free disk space or fix permissions and try again.",
                path=self.file_path,
            ) from exc
        if cache:
            self._replace_snapshot(_Snapshot(_stat_key(st), data, fd, pieces))
        else:
            os.close(fd)
            self._drop_snapshot()


def _check_agent_id(agent_id: object) -> str:
    if not isinstance(agent_id, str):
        raise TypeError(f"agent_id must be a str (e.g. str(agent.id)), got {type(agent_id).__name__}: {agent_id!r}")
    if not agent_id:
        raise ValueError("agent_id must be a non-empty str, got ''")
    return agent_id


def _check_iteration(train_iteration: object) -> int:
    if isinstance(train_iteration, bool) or not isinstance(train_iteration, numbers.Integral):
        raise TypeError(f"train_iteration must be an int, got {type(train_iteration).__name__}: {train_iteration!r}")
    if train_iteration < 0:
        raise ValueError(f"train_iteration must be >= 0, got {train_iteration}")
    return int(train_iteration)


class CrewTrainingHandler(PickleHandler):
    """Drop-in for CrewAI's ``CrewTrainingHandler``: ``append``, ``save_trained_data``, ``clear``.

    Every method is one locked read-modify-write; see :class:`PickleHandler`
    for the guarantees and :meth:`PickleHandler.batch` for many writes at once.
    """

    def append(self, train_iteration: int, agent_id: str, new_data: Any) -> None:
        """Store ``new_data`` as iteration ``train_iteration`` of agent ``agent_id``.

        An existing record for that iteration is replaced, as in CrewAI.

        Parameters
        ----------
        train_iteration
            The iteration number, an ``int`` >= 0.
        agent_id
            The agent's id (CrewAI uses ``str(agent.id)``).
        new_data
            The record; copied, so later changes by the caller are not stored.
        """
        iteration = _check_iteration(train_iteration)
        agent = _check_agent_id(agent_id)
        record = copy_plain(new_data)

        def change(data: dict[Any, Any]) -> None:
            iterations = data.get(agent)
            if iterations is None:
                data[agent] = {iteration: record}
            elif isinstance(iterations, dict):
                iterations[iteration] = record
            else:
                raise StoreFormatError(
                    f"{self.file_path}: agent {agent!r} holds a {type(iterations).__name__}, not a dict "
                    "of iterations; this looks like a trained-agents file, not training data.",
                    path=self.file_path,
                )

        self._mutate(change, agent)

    def save_trained_data(self, agent_id: str, trained_data: Any) -> None:
        """Store ``trained_data`` under ``agent_id`` (CrewAI passes the agent's role).

        Parameters
        ----------
        agent_id
            Key of the entry, a non-empty ``str``.
        trained_data
            The value, e.g. ``{"suggestions": [...], "quality": 8.0, "final_summary": "..."}``.
        """
        agent = _check_agent_id(agent_id)
        value = copy_plain(trained_data)
        self._mutate(lambda data: data.__setitem__(agent, value), agent)

    def clear(self) -> None:
        """Empty the store (write ``{}``)."""
        self.save({})
