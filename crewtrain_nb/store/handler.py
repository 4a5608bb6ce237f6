"""CrewAI-compatible pickle handlers that are atomic, locked, cached and safe to open."""

from __future__ import annotations

import contextlib
import numbers
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import filelock

from ..errors import (
    CorruptStoreError,
    RemoteStoreWarning,
    StoreError,
    StoreFormatError,
    StoreLockTimeout,
    StoreVersionError,
    StoreWriteError,
)
from ._atomic import sweep_stale_temps, write_atomic
from ._audit import PendingAudit
from ._backups import StoreVersion, discard_version, find_version, finish_rotation, link_current, list_versions
from ._checks import check_agent_id, check_file_name, check_iteration, check_lock_timeout, check_writable
from ._codec import COMPRESSED_SUFFIXES, DEFAULT_MAX_DECOMPRESSED_SIZE, StoreCodec, resolve_key
from ._copy import copy_plain
from ._crewai_lock import CrewAILock, CrewAILockTimeout
from ._lazy import LazyAccess
from ._pieces import Piece, dumps_dict, entry_after_insert
from ._placeholders import dumps
from ._remote import RemoteFile, is_url, local_path_of
from ._unpickle import allowed_class_map, safe_loads, trusted_loads

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_READ_RETRY_TIMEOUT",
    "PICKLE_PROTOCOL",
    "CrewTrainingHandler",
    "PickleHandler",
]

#: Seconds to wait for another process's lock before :class:`StoreLockTimeout`.
DEFAULT_LOCK_TIMEOUT = 60.0
#: Seconds a read keeps retrying a zero-byte or truncated file that a writer without a lock may be writing.
DEFAULT_READ_RETRY_TIMEOUT = 1.0
#: What CrewAI writes (Python's default on 3.8-3.13); every Python >= 3.4 reads it.
PICKLE_PROTOCOL = 4
#: Names ending with one of these are used as given; any other name gets ``.pkl`` appended.
STORE_SUFFIXES: tuple[str, ...] = (".pkl", *COMPRESSED_SUFFIXES)

_StatKey = tuple[int, int, int, int, int]
_NOTHING: Any = object()


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
    pieces: dict[Any, Piece] = field(default_factory=dict)


def _close_snapshot(box: list[_Snapshot | None]) -> None:
    snapshot = box[0]
    box[0] = None
    if snapshot is not None:
        with contextlib.suppress(OSError):
            os.close(snapshot.fd)


class PickleHandler(LazyAccess):
    """Read and write one pickled object, the way CrewAI's ``PickleHandler`` does, but safely.

    A name ending in ``.db``, ``.sqlite`` or ``.sqlite3`` gives a
    :class:`~crewtrain_nb.store.SQLiteHandler` instead (see :meth:`__new__`).

    Parameters
    ----------
    file_name
        The store file. ``.pkl`` is appended when the name ends with none of
        ``.pkl``, ``.pkl.gz``, ``.pkl.bz2``, ``.pkl.xz`` (as CrewAI does for
        ``.pkl``); a relative name resolves against the current directory.
        The last three suffixes store the pickle compressed (gzip, bz2, xz).
    trusted
        ``False`` (default) loads only plain data and refuses any other global
        with :class:`~crewtrain_nb.UnsafePickleError`. ``True`` uses the full
        unpickler: only for files you trust, since a pickle can run code.
    lock_timeout
        Seconds to wait for the cross-process locks (this package's and
        CrewAI's together) before raising :class:`~crewtrain_nb.StoreLockTimeout`.
    add_suffix
        ``False`` uses ``file_name`` exactly as given, even without ``.pkl``.
    key
        Encrypt the store at rest (AES-256-GCM; needs ``crewtrain-nb[crypto]``):
        32 raw bytes or base64 text of 32 bytes. ``None`` (default) uses the
        ``CREWTRAIN_KEY`` environment variable when it is set; ``False`` never
        encrypts. With a key, a plain file is refused (:class:`~crewtrain_nb.DecryptionError`).
    max_decompressed_size
        Largest size in bytes a compressed store may inflate to before it is
        refused as a decompression bomb; default ``min(4 GiB, RAM / 2)``.
    backups
        Keep this many previous versions of the file in ``<file>.versions/``
        (see :meth:`versions` and :meth:`restore`); ``0`` (default) keeps none.
    audit
        Append one hash-chained JSON line per write to ``<file>.audit.jsonl``
        (check it with :func:`~crewtrain_nb.verify_audit`).
    allowed_classes
        Classes (already imported) whose instances safe loading builds as the
        real objects, e.g. ``[ResearchFacts]``. An instance of any other class
        outside the allow-list loads as an :class:`~crewtrain_nb.store.OpaqueObject`
        (its class's name and state; nothing of it runs) and is written back
        as it came.
    crewai_lock
        ``True`` (default) also holds CrewAI's own lock on the file around each
        read of a changed file and each write, so a read never sees CrewAI
        1.x's in-place write half done and a write never drops a record CrewAI
        saved meanwhile. ``False`` takes only ``<file>.lock``.
    read_retry_timeout
        Seconds a read retries (with backoff) a file that is empty or does not
        unpickle, for writers that take no lock (CrewAI 0.x, scripts) and
        truncate the file before writing it. A file still empty then is ``{}``
        (as in CrewAI); one that still does not unpickle raises
        :class:`~crewtrain_nb.CorruptStoreError`. ``0`` reads once.

    Notes
    -----
    * Every write goes to a temporary file in the same directory which is
      fsynced and renamed over the store: a crash leaves the old file or the
      new one, never a torn one.
    * Writers hold a lock file (``<file>.lock``) for the whole
      read-modify-write, so processes appending at once lose nothing.
    * Reads of a changed file and every write also hold CrewAI's lock for the
      file (see ``crewai_lock``): ``crewai_core.lock_store.lock`` when crewai is
      installed in this environment (so a Redis or custom backend is used),
      else ``flock`` on the same file in ``tempfile.gettempdir()`` that CrewAI's
      default backend locks. A notebook and a training process exclude each
      other only when they share ``TMPDIR`` and run as the same user. Our lock
      is always taken first; CrewAI's is held only for the short read or
      re-read-merge-write, never across a ``batch()`` body.
    * A store path that is a symlink stays a link: writes replace the file it
      points to, and ``<file>.lock``, ``<file>.versions/`` and the audit log
      sit beside that target (as resolved when the handler is created).
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

    def __new__(cls, file_name: Any = None, *args: Any, **kwargs: Any) -> PickleHandler:
        """Pick the backend by suffix: ``PickleHandler(...)`` and ``CrewTrainingHandler(...)`` of a
        ``.db``/``.sqlite``/``.sqlite3`` name return a :class:`~crewtrain_nb.store.SQLiteHandler`.

        Why ``__new__``: callers (CrewAI code, ``open_source``, the CLI) construct
        ``CrewTrainingHandler(path)`` and keep working unchanged, and the result is
        still an instance of both classes (``SQLiteHandler`` subclasses
        ``CrewTrainingHandler``). User subclasses are never redirected.
        """
        if cls in (PickleHandler, CrewTrainingHandler) and _is_sqlite_name(file_name):
            from ._sqlite import SQLiteHandler

            return super().__new__(SQLiteHandler)
        return super().__new__(cls)

    def __init__(
        self,
        file_name: str | os.PathLike[str],
        *,
        trusted: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        add_suffix: bool = True,
        key: bytes | str | bool | None = None,
        max_decompressed_size: int | None = None,
        backups: int = 0,
        audit: bool = False,
        allowed_classes: Any = None,
        crewai_lock: bool = True,
        read_retry_timeout: float = DEFAULT_READ_RETRY_TIMEOUT,
    ) -> None:
        name = check_file_name(file_name, example="training_data.pkl")
        # file:// is a local path with every local guarantee; other URLs go through fsspec.
        name = local_path_of(name) or name
        remote = is_url(name)
        if add_suffix and not name.endswith(STORE_SUFFIXES):
            name += ".pkl"
        check_lock_timeout(lock_timeout)
        if not isinstance(read_retry_timeout, numbers.Real) or not 0 <= read_retry_timeout < float("inf"):
            raise ValueError(f"read_retry_timeout must be a number of seconds >= 0, got {read_retry_timeout!r}")
        self.file_path: str = name if remote else os.path.abspath(os.path.join(os.getcwd(), name))
        #: Where writes go: the file itself, or the target of a symlinked store (which stays a link).
        self._target: str = self.file_path if remote else os.path.realpath(self.file_path)
        self.lock_path: str = self._target + ".lock"
        self.read_retry_timeout = float(read_retry_timeout)
        self._crewai_lock: CrewAILock | None = CrewAILock(self.file_path) if crewai_lock and not remote else None
        #: The deadline of the lock being taken now (``lock_timeout`` covers our lock and CrewAI's together).
        self._lock_deadline: float | None = None
        #: Stat key of a file that stayed unreadable through a whole retry: read once, not retried, until it changes.
        self._settled_corrupt: _StatKey | None = None
        #: What a batch() did, in order, to replay on the file as it is at the end of the block.
        self._batch_ops: list[Callable[[Any], Any]] = []
        self.trusted = bool(trusted)
        self.allowed_classes: tuple[type, ...] = tuple(allowed_class_map(allowed_classes).values())
        self.lock_timeout = float(lock_timeout)
        if max_decompressed_size is None:
            max_decompressed_size = DEFAULT_MAX_DECOMPRESSED_SIZE
        if isinstance(max_decompressed_size, bool) or not isinstance(max_decompressed_size, numbers.Integral):
            raise TypeError(f"max_decompressed_size must be an int of bytes, got {max_decompressed_size!r}")
        if isinstance(backups, bool) or not isinstance(backups, numbers.Integral) or backups < 0:
            raise ValueError(f"backups must be an int >= 0 (how many previous versions to keep), got {backups!r}")
        self.backups = int(backups)
        self.audit = bool(audit)
        if key is True:
            raise TypeError("key=True is not a key; pass the key's bytes or base64 text, or key=False")
        self._codec = StoreCodec(
            self.file_path,
            key=resolve_key(key, path=self.file_path),
            max_decompressed_size=int(max_decompressed_size),
        )
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
        # What the public method being run is: (operation, agent, iteration), for the audit log.
        self._operation: tuple[str, str | None, int | None] | None = None
        self._batch_changes: list[tuple[str | None, int | None]] = []
        self._remote: RemoteFile | None = None
        if remote:
            if self.backups or self.audit:
                raise ValueError(
                    f"{self.file_path}: backups= and audit= need a local file (they rely on hard links, "
                    "O_APPEND and a lock file); use them on a local copy."
                )
            self._remote = RemoteFile(self.file_path)
            warnings.warn(f"{self.file_path} {RemoteFile.warning_text}", RemoteStoreWarning, stacklevel=2)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.file_path!r}, trusted={self.trusted})"

    # -- public API ---------------------------------------------------------

    def initialize_file(self) -> None:
        """Write an empty store (``{}``), replacing whatever the file held."""
        with self._describing("initialize_file"):
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
        with self._state_lock, self._describing("save"):
            if self._batch_depth:
                saved = self._pending = copy_plain(data)
                self._pending_dirty = True
                self._batch_ops.append(lambda _current: saved)
                self._note_batch_change()
                return
            with self._locked(), self._crewai_held():
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

        The block holds ``<file>.lock`` (other crewtrain_nb handlers wait) but
        not CrewAI's lock, so CrewAI can keep saving meanwhile; at the end,
        under CrewAI's lock, the file is read again and the block's operations
        are applied to what is there, so a record CrewAI saved during the block
        is kept.

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
                self._batch_changes = []
                self._batch_ops = []
                self._batch_depth = 1
                try:
                    yield self
                    if self._pending_dirty:
                        with self._crewai_held():
                            data = self._read()
                            if data is not self._pending:
                                # The file changed during the block (CrewAI saved), or the block saved
                                # a new object: replay what the block did on the file as it is now.
                                for operation in self._batch_ops:
                                    data = operation(data)
                            self._write(data, cache=True)
                except BaseException:
                    self._drop_snapshot()
                    raise
                finally:
                    self._batch_depth = 0
                    self._pending = None
                    self._pending_dirty = False
                    self._batch_changes = []
                    self._batch_ops = []

    def versions(self) -> list[StoreVersion]:
        """The kept previous versions of the store, newest first.

        Returns
        -------
        list of StoreVersion
            Each with ``id`` (pass it to :meth:`restore`), ``time`` (UTC, when
            that version was written), ``size`` (bytes) and ``path``.
        """
        return list_versions(self._target)

    def restore(self, version: int | str | StoreVersion) -> None:
        """Make a previous version the current store again, atomically.

        The current file is kept as a new version first (even with
        ``backups=0``), so a restore can itself be undone. The version is
        checked to load (decrypted, decompressed, safely unpickled) before
        anything changes, and is written back byte for byte.

        Parameters
        ----------
        version
            A version id from :meth:`versions` (or the :class:`StoreVersion`).

        Raises
        ------
        StoreVersionError
            No such version; the message lists the ones that exist.
        CorruptStoreError, UnsafePickleError, DecryptionError
            The version does not load; nothing was changed.
        """
        with self._state_lock:
            if self._batch_depth:
                raise RuntimeError("restore() cannot run inside batch(); call it after the block")
            with self._locked():
                found = find_version(self._target, version)
                if found is None:
                    ids = ", ".join(str(item.id) for item in self.versions()) or "none"
                    raise StoreVersionError(
                        f"{self.file_path}: no version {version!r}; the versions kept are: {ids} (see versions()).",
                        path=self.file_path,
                    )
                try:
                    with open(found.path, "rb") as file:
                        payload = file.read()
                except OSError as exc:
                    raise StoreError(
                        f"{found.path}: cannot read this version ({exc.strerror or exc}).", path=found.path
                    ) from exc
                if payload:
                    self._loads(self._codec.decode(payload), path=found.path)
                self._drop_snapshot()
                with self._describing("restore"), self._crewai_held():
                    fd, _ = self._replace_file(payload, keep_version=True, version=found.id)
                os.close(fd)

    def exists(self) -> bool:
        """Whether the store file exists (inside :meth:`batch`: always, the batch writes it).

        ``load`` returns ``{}`` for a missing file, as CrewAI's handler does;
        views call this to say "no such file" instead of "the store is empty".
        """
        with self._state_lock:
            if self._batch_depth:
                return True
            if self._remote is not None:
                return self._remote.exists()
            return os.path.exists(self.file_path)

    def close(self) -> None:
        """Release the descriptor held for the cache. The handler stays usable."""
        with self._state_lock:
            self._drop_snapshot()

    def __enter__(self) -> PickleHandler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------

    def _mutate(self, change: Callable[[Any], None], key: Any, *, inserted: Any = _NOTHING) -> None:
        """Apply ``change`` (which alters only ``data[key]``) to the stored dict under the lock, and save.

        ``inserted``: the new copy ``change`` puts inside ``data[key]`` (an append's record), if that is all it does.
        """
        with self._state_lock:
            if self._batch_depth:
                change(self._expect_dict(self._pending))
                self._forget_piece(key, inserted)
                self._pending_dirty = True

                def replay(current: Any) -> Any:
                    change(self._expect_dict(current))
                    self._forget_piece(key)
                    return current

                self._batch_ops.append(replay)
                self._note_batch_change()
                return
            with self._locked(), self._crewai_held():
                data = self._expect_dict(self._read())
                try:
                    change(data)
                    self._forget_piece(key, inserted)
                    self._write(data, cache=True)
                except BaseException:
                    # ``data`` is the cached snapshot and may now differ from the file.
                    self._drop_snapshot()
                    raise

    @contextlib.contextmanager
    def _describing(self, operation: str, agent: str | None = None, iteration: int | None = None) -> Iterator[None]:
        """Name the public operation running, for the audit log; an outer one (clear -> save) wins."""
        with self._state_lock:
            if self._operation is not None:
                yield
                return
            self._operation = (operation, agent, iteration)
            try:
                yield
            finally:
                self._operation = None

    def _note_batch_change(self) -> None:
        if self.audit and self._operation is not None:
            self._batch_changes.append(self._operation[1:])

    def _audit_fields(self) -> dict[str, Any]:
        """``operation``, ``agent``, ``iteration``, ``count`` of the write about to happen."""
        if self._batch_depth:
            agents = {agent for agent, _ in self._batch_changes}
            only = self._batch_changes[0] if len(self._batch_changes) == 1 else (None, None)
            return {
                "operation": "batch",
                "agent": agents.pop() if len(agents) == 1 else None,
                "iteration": only[1],
                "count": len(self._batch_changes),
            }
        operation, agent, iteration = self._operation or ("save", None, None)
        count = 1 if operation in {"append", "save_trained_data"} else None
        return {"operation": operation, "agent": agent, "iteration": iteration, "count": count}

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
        if self._remote is not None:
            with self._remote.locked():
                yield
            return
        directory = os.path.dirname(self.file_path)
        if not os.path.isdir(directory):
            raise StoreWriteError(
                f"{self.file_path}: the directory {directory} does not exist; create it first.",
                path=self.file_path,
            )
        outer_deadline = self._lock_deadline
        if outer_deadline is None:
            self._lock_deadline = time.monotonic() + self.lock_timeout
        try:
            self._file_lock.acquire(timeout=max(self._lock_deadline - time.monotonic(), 0.0))
        except filelock.Timeout as exc:
            self._lock_deadline = outer_deadline
            raise StoreLockTimeout(
                f"{self.file_path}: another process held the lock {self.lock_path} for more than "
                f"{self.lock_timeout:g} s. Wait for it to finish, or raise lock_timeout.",
                path=self.file_path,
            ) from exc
        except OSError as exc:
            self._lock_deadline = outer_deadline
            raise StoreWriteError(
                f"{self.file_path}: cannot create the lock file {self.lock_path} ({exc.strerror or exc}); "
                "the directory must be writable.",
                path=self.file_path,
            ) from exc
        try:
            sweep_stale_temps(self._target)
            yield
        finally:
            self._file_lock.release()
            self._lock_deadline = outer_deadline

    @contextlib.contextmanager
    def _crewai_held(self) -> Iterator[None]:
        """Hold CrewAI's lock for this file (after ours, within the same ``lock_timeout``), if interop is on."""
        lock = self._crewai_lock
        if lock is None:
            yield
            return
        deadline = self._lock_deadline
        if deadline is None:
            deadline = time.monotonic() + self.lock_timeout
        held = lock.held(deadline)
        try:
            held.__enter__()
        except CrewAILockTimeout as exc:
            raise StoreLockTimeout(
                f"{self.file_path}: CrewAI held its lock on this file ({lock.lock_file} or its configured "
                f"backend) for more than {self.lock_timeout:g} s. Wait for it to finish, or raise lock_timeout.",
                path=self.file_path,
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"{self.file_path}: cannot open CrewAI's lock file {lock.lock_file} ({exc.strerror or exc}); "
                "the temporary directory (TMPDIR) must be writable, or pass crewai_lock=False.",
                path=self.file_path,
            ) from exc
        try:
            yield
        finally:
            held.__exit__(None, None, None)

    def _forget_piece(self, key: Any, inserted: Any = _NOTHING) -> None:
        snapshot = self._snapshot_box[0]
        if snapshot is not None:
            old = snapshot.pieces.pop(key, None)
            if inserted is not _NOTHING:
                # Still sharing nothing? Then the re-pickling need not walk the agent's other records again.
                entry = entry_after_insert(old, inserted)
                if entry is not None:
                    snapshot.pieces[key] = entry

    def _drop_snapshot(self) -> None:
        _close_snapshot(self._snapshot_box)

    def _read(self) -> Any:
        """Return the stored object, shared with the cache: callers must not mutate it."""
        if self._remote is not None:
            # No file identity to key a cache on: read the whole file every time.
            self._drop_snapshot()
            stored = self._remote.read()
            if not stored:
                return {}
            return self._loads(self._codec.decode(stored), path=self.file_path)
        try:
            st = os.stat(self.file_path)
        except FileNotFoundError:
            self._drop_snapshot()
            return {}
        except OSError as exc:
            raise StoreError(f"{self.file_path}: cannot read ({exc.strerror or exc}).", path=self.file_path) from exc
        snapshot = self._snapshot_box[0]
        if snapshot is not None and snapshot.key == _stat_key(st):
            return snapshot.data  # unchanged: a stat, no lock
        give_up = time.monotonic() + self.read_retry_timeout
        pause = 0.002
        while True:
            with self._crewai_held():
                opened = self._read_bytes()
            if opened is None:
                self._drop_snapshot()
                return {}
            fd, key, payload = opened
            try:
                data = self._loads(self._codec.decode(payload), path=self.file_path) if payload else {}
            except CorruptStoreError:
                os.close(fd)
                # A writer without a lock may be between truncating and writing: retry for a bounded time.
                if key == self._settled_corrupt or time.monotonic() + pause > give_up:
                    self._settled_corrupt = key
                    self._drop_snapshot()
                    raise
            except BaseException:
                os.close(fd)
                raise
            else:
                if payload or time.monotonic() + pause > give_up:
                    # A file still empty after the retries (and read under CrewAI's lock) is {}, as in CrewAI;
                    # it is cached like any other, so the next load of it is a stat.
                    self._settled_corrupt = None
                    self._replace_snapshot(_Snapshot(key, data, fd))
                    return data
                os.close(fd)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _read_bytes(self) -> tuple[int, _StatKey, bytes] | None:
        """Open and read the whole file: its descriptor (kept for the cache), stat key and bytes; ``None``: missing."""
        try:
            fd = os.open(self.file_path, os.O_RDONLY)
        except FileNotFoundError:
            return None
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
        return fd, _stat_key(st), payload

    def _loads(self, data: bytes, *, path: str) -> Any:
        if self.trusted:
            return trusted_loads(data, path=path)
        return safe_loads(data, path=path, allowed_classes=self.allowed_classes)

    def _replace_file(
        self, payload: bytes, *, keep_version: bool = False, version: int | None = None
    ) -> tuple[int, os.stat_result]:
        """Write the encoded ``payload`` over the store: version, atomic replace, audit; the caller holds the lock.

        The current file is linked into the versions *before* it is replaced,
        so a crash leaves at worst an extra version, never a lost store. The
        audit log is opened first (a broken log stops the write) and its line
        appended after the replace (a crash between leaves a log whose last
        line does not match the store, which ``verify_audit`` reports).
        """
        target = self._target
        check_writable(target)
        pending = PendingAudit.open(target) if self.audit else None
        new_version = None
        try:
            if self.backups or keep_version:
                new_version = link_current(target)
            # A symlinked store: replace the file the link points to, so the link (and whoever reads
            # through it, like CrewAI) sees the new data.
            fd, st = write_atomic(target, payload)
        except OSError as exc:
            self._drop_snapshot()
            if pending is not None:
                pending.close()
            if new_version is not None:
                discard_version(new_version)
            raise StoreWriteError(
                f"{self.file_path}: saving failed ({exc.strerror or exc}); the previous file is "
                "unchanged. Free disk space or fix permissions and try again.",
                path=self.file_path,
            ) from exc
        if new_version is not None:
            finish_rotation(target, new_version, keep=self.backups or None)
        if pending is not None:
            try:
                pending.commit(**self._audit_fields(), version=version, payload=payload)
            except OSError as exc:
                os.close(fd)
                self._drop_snapshot()
                raise StoreWriteError(
                    f"{self.file_path}: the store was saved, but its audit line could not be written "
                    f"({exc.strerror or exc}); verify_audit() will report this write as unaudited.",
                    path=self.file_path,
                ) from exc
        return fd, st

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
                payload = dumps(data, protocol=PICKLE_PROTOCOL)
        except Exception as exc:  # pickling can raise nearly anything from user objects
            raise StoreWriteError(
                f"{self.file_path}: the data cannot be pickled ({type(exc).__name__}: {exc}); the file is unchanged.",
                path=self.file_path,
            ) from exc
        if self._remote is not None:
            self._remote.write(self._codec.encode(payload))
            self._drop_snapshot()
            return
        fd, st = self._replace_file(self._codec.encode(payload))
        if cache:
            self._replace_snapshot(_Snapshot(_stat_key(st), data, fd, pieces))
        else:
            os.close(fd)
            self._drop_snapshot()


def _is_sqlite_name(file_name: Any) -> bool:
    from ._sqlite import SQLITE_SUFFIXES

    try:
        name = os.fspath(file_name)
    except TypeError:
        return False
    return isinstance(name, str) and name.lower().endswith(SQLITE_SUFFIXES)


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
        iteration = check_iteration(train_iteration)
        agent = check_agent_id(agent_id)
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

        with self._describing("append", agent, iteration):
            self._mutate(change, agent, inserted=record)

    def save_trained_data(self, agent_id: str, trained_data: Any) -> None:
        """Store ``trained_data`` under ``agent_id`` (CrewAI passes the agent's role).

        Parameters
        ----------
        agent_id
            Key of the entry, a non-empty ``str``.
        trained_data
            The value, e.g. ``{"suggestions": [...], "quality": 8.0, "final_summary": "..."}``.
        """
        agent = check_agent_id(agent_id)
        value = copy_plain(trained_data)
        with self._describing("save_trained_data", agent):
            self._mutate(lambda data: data.__setitem__(agent, value), agent)

    def clear(self) -> None:
        """Empty the store (write ``{}``); a missing file stays missing, as in CrewAI."""
        with self._state_lock, self._describing("clear"):
            if not self._batch_depth and self._remote is None:
                with self._locked():
                    if not os.path.exists(self.file_path):
                        return
                    with self._crewai_held():
                        self._write({}, cache=False)
                return
            self.save({})
