"""CrewAI-compatible pickle handlers that are atomic, locked, cached and safe to open.

:class:`PickleHandler` (and :class:`CrewTrainingHandler`, the name CrewAI code
uses) implements the store contract (``_contract.TrainingStore``) on one
pickle file, whose mechanics are a :class:`~._pickle_file.PickleFile` it holds.
``CrewTrainingHandler(name)`` of a ``.db``/``.sqlite``/``.sqlite3`` name
returns the sibling backend, :class:`~crewtrain_nb.store.SQLiteHandler`,
which is registered as a virtual subclass of both names, so
``isinstance(handler, CrewTrainingHandler)`` holds for every backend.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Hashable, Iterator
from typing import Any, cast

from ..errors import CorruptStoreError, RemoteStoreWarning, StoreFormatError
from ._backups import StoreVersion
from ._checks import (
    PICKLE_SUFFIXES,
    check_agent_id,
    check_backups,
    check_file_name,
    check_iteration,
    check_lock_timeout,
    check_max_decompressed_size,
    check_read_retry_timeout,
    is_sqlite_name,
    resolve_store_path,
)
from ._codec import DEFAULT_MAX_DECOMPRESSED_SIZE, StoreCodec, resolve_key
from ._contract import DEFAULT_LOCK_TIMEOUT, PICKLE_PROTOCOL
from ._copy import copy_plain
from ._lazy import LazyAccess
from ._pickle_file import NOTHING, PickleFile
from ._remote import RemoteFile
from ._sqlite import SQLiteHandler
from ._unpickle import allowed_class_map

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "DEFAULT_READ_RETRY_TIMEOUT",
    "PICKLE_PROTOCOL",
    "CrewTrainingHandler",
    "PickleHandler",
]

#: Seconds a read keeps retrying a zero-byte or truncated file that a writer without a lock may be writing.
DEFAULT_READ_RETRY_TIMEOUT = 1.0


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
    tails
        ``True`` (default): an ``append``, ``save_trained_data`` or ``save`` of
        a dict that changes a few keys is written as a *tail* after the pickle,
        in place, costing one record and two syncs at any store size (see the
        README's "Tails"). ``False``: every write is an atomic full rewrite.
        Compressed, encrypted and versioned (``backups``) stores always rewrite.

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
    * :meth:`batch` holds ``<file>.lock`` for the whole block (other
      crewtrain_nb handlers wait) but not CrewAI's lock, so CrewAI can keep
      saving meanwhile; at the end, under CrewAI's lock, the file is read again
      and the block's operations are applied to what is there, so a record
      CrewAI saved during the block is kept. Inside the block ``append``,
      ``save_trained_data``, ``save`` and ``clear`` change an in-memory copy.
    * The file mechanics (locks, snapshot cache, atomic replace, versions,
      audit lines) are a :class:`~crewtrain_nb.store._pickle_file.PickleFile`
      the handler holds; the handler implements the store contract
      (:class:`~crewtrain_nb.store._contract.TrainingStore`) on top of it.

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

    supports_versions = True
    supports_audit = True
    supports_any_object = True

    def __new__(cls, file_name: Any = None, *args: Any, **kwargs: Any) -> PickleHandler:
        """Pick the backend by suffix: ``PickleHandler(...)`` and ``CrewTrainingHandler(...)`` of a
        ``.db``/``.sqlite``/``.sqlite3`` name return a :class:`~crewtrain_nb.store.SQLiteHandler`.

        Why ``__new__``: callers (CrewAI code, ``open_source``, the CLI) construct
        ``CrewTrainingHandler(path)`` and keep working unchanged, and the result is
        still an instance of both classes (``SQLiteHandler`` is registered as a
        virtual subclass of ``CrewTrainingHandler``). User subclasses are never redirected.
        """
        if cls in (PickleHandler, CrewTrainingHandler) and is_sqlite_name(file_name):
            # Not an instance of ``cls`` by type, so Python does not call ``__init__`` again on it.
            # The cast: a virtual subclass, which isinstance() accepts and a type checker cannot know.
            return cast(PickleHandler, SQLiteHandler(file_name, *args, **kwargs))
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
        tails: bool = True,
    ) -> None:
        super().__init__()
        name = check_file_name(file_name, example="training_data.pkl")
        # file:// is a local path with every local guarantee; other URLs go through fsspec.
        path, remote = resolve_store_path(name, suffixes=PICKLE_SUFFIXES, default_suffix=".pkl", add_suffix=add_suffix)
        check_lock_timeout(lock_timeout)
        self.read_retry_timeout = check_read_retry_timeout(read_retry_timeout)
        self.file_path: str = path
        self.trusted = bool(trusted)
        self.allowed_classes: tuple[type, ...] = tuple(allowed_class_map(allowed_classes).values())
        self.lock_timeout = float(lock_timeout)
        size = check_max_decompressed_size(
            DEFAULT_MAX_DECOMPRESSED_SIZE if max_decompressed_size is None else max_decompressed_size
        )
        self.backups = check_backups(backups)
        self.audit = bool(audit)
        self.tails = bool(tails)
        if key is True:
            raise TypeError("key=True is not a key; pass the key's bytes or base64 text, or key=False")
        codec = StoreCodec(path, key=resolve_key(key, path=path), max_decompressed_size=size)
        self._file = PickleFile(
            path,
            remote=remote,
            codec=codec,
            trusted=self.trusted,
            allowed_classes=self.allowed_classes,
            lock_timeout=self.lock_timeout,
            backups=self.backups,
            audit=self.audit,
            crewai_lock=crewai_lock,
            read_retry_timeout=self.read_retry_timeout,
            tails=self.tails,
        )
        self.lock_path: str = self._file.lock_path
        #: What a batch() did, in order, to replay on the file as it is at the end of the block.
        self._batch_ops: list[Callable[[Any], Any]] = []
        self._pending: Any = None
        self._pending_dirty = False
        # What the public method being run is: (operation, agent, iteration), for the audit log.
        self._operation: tuple[str, str | None, int | None] | None = None
        self._batch_changes: list[tuple[str | None, int | None]] = []
        #: Writes made through this handler: part of the change token (a write inside batch() changes no file).
        self._writes = 0
        if remote:
            warnings.warn(f"{self.file_path} {RemoteFile.warning_text}", RemoteStoreWarning, stacklevel=2)

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
            with self._file.locked(), self._file.crewai_held():
                # A few keys changed since the snapshot (CrewAI's load, change, save): a tail of them.
                if self._file.save_as_tail(data, audit_fields=self._audit_fields):
                    return
                # The caller keeps ``data`` and may mutate it, so it is not cached.
                self._file.write(data, cache=False, audit_fields=self._audit_fields)

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
            data = self._pending if self._batch_depth else self._file.read()
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
            return self._pending if self._batch_depth else self._file.read()

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
            self._mutate(change, agent, inserted=record, entry=iteration)

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
            if not self._batch_depth and self._file.remote is None:
                with self._file.locked():
                    if not os.path.exists(self.file_path):
                        return
                    with self._file.crewai_held():
                        self._file.write({}, cache=False, audit_fields=self._audit_fields)
                return
            self.save({})

    @contextlib.contextmanager
    def _outermost_batch(self) -> Iterator[None]:
        """Hold the lock for the block; at its end, replay its operations on the file as it is then, and write once."""
        with self._file.locked():
            # Work on the cached snapshot itself: no copy. It is dropped
            # below if the block fails, so the cache never holds unsaved changes.
            self._pending = self._file.read()
            self._pending_dirty = False
            self._batch_changes = []
            self._batch_ops = []
            self._batch_depth = 1
            try:
                yield
                if self._pending_dirty:
                    with self._file.crewai_held():
                        data = self._file.read()
                        if data is not self._pending:
                            # The file changed during the block (CrewAI saved), or the block saved
                            # a new object: replay what the block did on the file as it is now.
                            for operation in self._batch_ops:
                                data = operation(data)
                        self._file.write(data, cache=True, audit_fields=self._audit_fields)
            except BaseException:
                self._file.drop_snapshot()
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
        return self._file.versions()

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
            with self._describing("restore"):
                self._file.restore(version, audit_fields=self._audit_fields)

    def exists(self) -> bool:
        """Whether the store file exists (inside :meth:`batch`: always, the batch writes it).

        ``load`` returns ``{}`` for a missing file, as CrewAI's handler does;
        views call this to say "no such file" instead of "the store is empty".
        """
        with self._state_lock:
            return bool(self._batch_depth) or self._file.exists()

    def close(self) -> None:
        """Release the descriptor held for the cache. The handler stays usable."""
        with self._state_lock:
            self._file.close()

    def change_token(self) -> Hashable:
        """A value that differs whenever the stored data may have changed (see the store contract).

        The file's identity (device, inode, size, times; every atomic replace
        makes a new file) and the count of this handler's writes (a write inside
        :meth:`batch` changes no file). A remote (fsspec) store has no identity
        to compare: its token is new at every call.
        """
        with self._state_lock:
            return (self._file.identity(), self._writes)

    def companion_paths(self) -> list[str]:
        """``[<file>.lock]``: the lock file beside the store (none for a remote store, locked by its own lock)."""
        return [] if self._file.remote is not None else [self.lock_path]

    # -- internals ------------------------------------------------------------

    def _mutate(
        self, change: Callable[[Any], None], key: Any, *, inserted: Any = NOTHING, entry: Any = NOTHING
    ) -> None:
        """Apply ``change`` (which alters only ``data[key]``) to the stored dict under the lock, and save.

        ``inserted``: the new copy ``change`` puts inside ``data[key]`` (an append's record), if that is all it
        does, at ``data[key][entry]``.
        """
        with self._state_lock:
            if self._batch_depth:
                change(self._expect_dict(self._pending))
                self._file.forget_piece(key, inserted)
                self._pending_dirty = True

                def replay(current: Any) -> Any:
                    change(self._expect_dict(current))
                    self._file.forget_piece(key)
                    return current

                self._batch_ops.append(replay)
                self._note_batch_change()
                return
            with self._file.locked(), self._file.crewai_held():
                data = self._expect_dict(self._file.read())
                try:
                    change(data)
                    self._file.forget_piece(key, inserted)
                    # One changed entry: a tail of that record (or of the key's whole value), or a full rewrite.
                    if not self._file.write_change(key, entry, audit_fields=self._audit_fields):
                        self._file.write(data, cache=True, audit_fields=self._audit_fields)
                except BaseException:
                    # ``data`` is the cached snapshot and may now differ from the file.
                    self._file.drop_snapshot()
                    raise

    @contextlib.contextmanager
    def _describing(self, operation: str, agent: str | None = None, iteration: int | None = None) -> Iterator[None]:
        """Name the public write running, for the audit log, and count it; an outer one (clear -> save) wins."""
        with self._state_lock:
            if self._operation is not None:
                yield
                return
            self._operation = (operation, agent, iteration)
            try:
                yield
            finally:
                self._operation = None
                self._writes += 1

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


class CrewTrainingHandler(PickleHandler):
    """Drop-in for CrewAI's ``CrewTrainingHandler``: ``append``, ``save_trained_data``, ``clear``.

    Every method is one locked read-modify-write; see :class:`PickleHandler`
    for the guarantees and :meth:`PickleHandler.batch` for many writes at once.
    A ``.db``/``.sqlite``/``.sqlite3`` name gives a
    :class:`~crewtrain_nb.store.SQLiteHandler`, which ``isinstance`` counts as one.
    """


# The sibling backend counts as both CrewAI names (CrewTrainingHandler is a PickleHandler), without inheriting
# anything: user code written against CrewAI's classes checks isinstance(handler, CrewTrainingHandler).
CrewTrainingHandler.register(SQLiteHandler)
