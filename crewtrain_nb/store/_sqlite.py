"""The SQLite backend: constant-cost, durable appends and lazy reads for large stores.

``CrewTrainingHandler("runs.db")`` (suffix ``.db``, ``.sqlite`` or ``.sqlite3``)
returns a :class:`SQLiteHandler`: the same API and guarantees as the pickle
handler, but an append writes one row instead of the whole file, and reads can
fetch one agent or one record.

Layout (one database file, plus SQLite's ``-wal`` and ``-shm`` files beside it):

* ``agents``: one row per top-level key of the stored dict, in insertion
  order (``position``). ``name`` is the key when it is a ``str`` (every CrewAI
  store), otherwise ``key`` holds the pickled key. ``value`` is ``NULL`` for an
  entry of iterations (kept in ``records``) and the pickled entry otherwise
  (e.g. a trained agent's ``{"suggestions", "quality", "final_summary"}``).
* ``records``: one row per ``(agent, iteration)``, the record pickled; the
  ``id`` keeps insertion order, an upsert keeps a replaced record's place.

Every value is a pickle read back with the same restricted unpickler as the
pickle handler (``trusted=True`` opts out). Writes run in ``BEGIN IMMEDIATE``
transactions (SQLite's write lock, waited for up to ``lock_timeout`` by its
busy handler) in WAL mode with ``synchronous=FULL``: the WAL is fsynced on
every commit, so an acknowledged append survives a crash or a power cut, and
readers never wait for writers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CorruptStoreError, StoreError, StoreFormatError, StoreLockTimeout, StoreWriteError
from ._checks import (
    SQLITE_SUFFIXES,
    check_agent_id,
    check_file_name,
    check_iteration,
    check_lock_timeout,
    check_writable,
    resolve_store_path,
)
from ._contract import DEFAULT_LOCK_TIMEOUT, PICKLE_PROTOCOL, TrainingStore
from ._copy import copy_plain
from ._lazy import (
    StoreStats,
    check_agent_key,
    check_iteration_key,
    is_iteration_entry,
    not_iterations,
    unknown_agent,
    unknown_iteration,
    utc_time,
)
from ._placeholders import dumps
from ._unpickle import allowed_class_map, safe_loads, trusted_loads

__all__ = ["SQLITE_SUFFIXES", "SQLiteHandler"]
#: Written to ``meta``; a higher number means a newer crewtrain_nb wrote the file.
FORMAT_VERSION = 1
#: Rows fetched per query when streaming records: memory stays flat, no cursor outlives a call.
_PAGE = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    position INTEGER PRIMARY KEY,
    name TEXT UNIQUE,
    key BLOB,
    value BLOB
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY,
    agent INTEGER NOT NULL,
    iteration INTEGER NOT NULL,
    record BLOB NOT NULL,
    UNIQUE (agent, iteration)
);
CREATE INDEX IF NOT EXISTS records_in_order ON records (agent, id);
"""
_TABLES = {"meta", "agents", "records"}

# SQLite primary result codes (sqlite3.h); ``sqlite_errorcode`` exists from Python 3.11.
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26
_MESSAGES = {
    "database is locked": _BUSY,
    "database table is locked": _LOCKED,
    "readonly": _READONLY,
    "disk i/o error": _IOERR,
    "malformed": _CORRUPT,
    "database or disk is full": _FULL,
    "unable to open": _CANTOPEN,
    "not a database": _NOTADB,
}


#: What opening a WAL database fails with where SQLite cannot create its ``-shm`` file (a read-only directory).
_NO_SHM = (_READONLY, _CANTOPEN)

#: Messages of SQLite's generic error code that, in a file holding our tables, mean a damaged file.
_DAMAGE = ("could not decode to utf-8", "unsupported file format", "no such column", "no such table")


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return int(code) & 0xFF
    text = str(exc).lower()
    return next((value for needle, value in _MESSAGES.items() if needle in text), None)


# Connections inherited through fork belong to the parent: never closed (or used) in the child.
_INHERITED: list[sqlite3.Connection] = []


@dataclass
class _Connection:
    conn: sqlite3.Connection
    #: (st_dev, st_ino); for a read-only connection also size, mtime and whether a -wal file exists.
    identity: tuple[int, ...]
    pid: int
    #: Our tables were found (they cannot vanish while this file is open).
    ready: bool = False
    #: The file is in WAL mode (set on the first write: reading never changes a file).
    wal: bool = False
    #: Opened read-only because the directory is (see ``_connect_read_only``); never used to write.
    read_only: bool = False


def _close_connection(box: list[_Connection | None]) -> None:
    held = box[0]
    box[0] = None
    if held is None:
        return
    if held.pid != os.getpid():
        _INHERITED.append(held.conn)
        return
    with contextlib.suppress(sqlite3.Error):
        held.conn.close()


class _Translated:
    """Turns a sqlite3 error raised in the block into the StoreError that says what to do.

    A class, not ``contextlib.contextmanager``: it wraps every statement of an
    append, and a generator-based manager costs several times as much to enter.
    """

    __slots__ = ("_handler", "_action")

    def __init__(self, handler: SQLiteHandler, action: str) -> None:
        self._handler = handler
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        if kind is None:
            return
        if isinstance(exc, sqlite3.Error):
            raise self._handler._error(exc, self._action) from exc
        if isinstance(exc, UnicodeDecodeError):  # sqlite3 decoding a TEXT value of a damaged page
            raise self._handler._damaged(f"a text value is not UTF-8: {exc}") from exc


@dataclass
class _Cache:
    token: tuple[int, ...]
    data: dict[Any, Any]


class SQLiteHandler(TrainingStore):
    """A training store in one SQLite file: appends cost the same at any size, reads can be lazy.

    Construct it directly, or through ``CrewTrainingHandler(name)`` /
    ``PickleHandler(name)`` with a ``.db``, ``.sqlite`` or ``.sqlite3`` name.
    It implements the store contract (``_contract.TrainingStore``) beside the
    pickle handler, inheriting nothing of it, and is registered as a virtual
    subclass of ``CrewTrainingHandler`` and ``PickleHandler``, so ``isinstance``
    checks written against CrewAI's class names hold.

    Parameters
    ----------
    file_name
        The database file. ``.db`` is appended when the name has none of the
        SQLite suffixes (unless ``add_suffix=False``); never ``.pkl``.
    trusted
        ``False`` (default) unpickles stored values with the restricted
        unpickler; ``True`` unpickles anything (only for files you trust).
    lock_timeout
        Seconds a write waits for another writer (SQLite's busy timeout)
        before :class:`~crewtrain_nb.StoreLockTimeout`.
    add_suffix
        ``False`` uses ``file_name`` as given.

    Notes
    -----
    * Same guarantees as the pickle handler: each write is one transaction
      (atomic, durable: the write-ahead log is fsynced at every commit);
      ``batch()`` is one transaction, rolled back if the block raises; many
      processes append at once and nothing is lost; a file that is not a
      database, or a damaged one, raises :class:`~crewtrain_nb.CorruptStoreError`
      naming it, never reads as ``{}``; new files are ``0600``.
    * What it stores is a dict (agent -> entry), as every CrewAI store is.
      ``save`` of anything else raises :class:`~crewtrain_nb.StoreFormatError`
      (use a ``.pkl`` file for arbitrary objects). A ``dict`` subclass is
      stored as its items and loads as a plain ``dict``.
    * There is no ``<file>.lock`` (``lock_path`` is ``None``): SQLite locks the database itself.
      ``-wal`` and ``-shm`` files live beside the database; copy the three
      together, or use :func:`crewtrain_nb.store.convert` to make a copy.
    * In a read-only directory, where SQLite cannot create ``-shm``, the
      store is still read: the file alone when there is no ``-wal``, else
      through its writer's ``-shm``, read-only. Writes there raise
      :class:`~crewtrain_nb.StoreWriteError`.
    * ``load()`` reads every row; use :meth:`agents`, :meth:`iterations`,
      :meth:`get`, :meth:`entry` and :meth:`records` to read less.
    * No versions (``backups``) and no audit log: ``supports_versions`` and
      ``supports_audit`` are ``False``; ``backups`` is ``0``, ``audit`` ``False``.

    Examples
    --------
    >>> import tempfile, os
    >>> from crewtrain_nb import CrewTrainingHandler
    >>> handler = CrewTrainingHandler(os.path.join(tempfile.mkdtemp(), "runs.db"))
    >>> type(handler).__name__, isinstance(handler, CrewTrainingHandler)
    ('SQLiteHandler', True)
    >>> handler.append(0, "agent-a", {"loss": 0.5})
    >>> handler.get("agent-a", 0)
    {'loss': 0.5}
    >>> handler.load()
    {'agent-a': {0: {'loss': 0.5}}}
    >>> handler.close()
    """

    supports_lazy_reads = True
    supports_versions = False
    supports_audit = False
    supports_any_object = False
    #: SQLite locks the database file itself: there is no lock file.
    lock_path: str | None = None
    backups = 0
    audit = False
    #: Reads never retry: a SQLite reader never sees a half-written store.
    read_retry_timeout = 0.0

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
    ) -> None:
        super().__init__()
        name = check_file_name(file_name, example="runs.db")
        # The pickle handler's file-level options do not apply to a database: refuse them rather than ignore them.
        unsupported = [
            option
            for option, given in (("key", key not in (None, False)), ("backups", bool(backups)), ("audit", audit))
            if given
        ]
        if max_decompressed_size is not None:
            unsupported.append("max_decompressed_size")
        if unsupported:
            raise ValueError(
                f"{name}: {', '.join(unsupported)} apply to pickle stores only, not to a SQLite store; "
                "use a .pkl name (see convert()) or leave them out."
            )
        path, remote = resolve_store_path(
            name, suffixes=SQLITE_SUFFIXES, default_suffix=".db", add_suffix=add_suffix, ignore_case=True
        )
        if remote:
            raise ValueError(
                f"{name}: a SQLite store must be a local file (SQLite needs file locks); "
                "use a local path, or a .pkl store for fsspec URLs."
            )
        check_lock_timeout(lock_timeout)
        self.file_path: str = path
        self.trusted = bool(trusted)
        self.lock_timeout = float(lock_timeout)
        self._connection_box: list[_Connection | None] = [None]
        self._finalizer = weakref.finalize(self, _close_connection, self._connection_box)
        self._cache: _Cache | None = None
        #: Writes committed through this handler: part of the change token.
        self._writes = 0
        self.allowed_classes: tuple[type, ...] = tuple(allowed_class_map(allowed_classes).values())
        self._unpickle: Callable[..., Any] = (
            trusted_loads if self.trusted else functools.partial(safe_loads, allowed_classes=self.allowed_classes)
        )

    # -- writing -------------------------------------------------------------------

    def initialize_file(self) -> None:
        """Write an empty store (creating the database), replacing whatever it held."""
        self.save({})

    def clear(self) -> None:
        """Empty the store, in one transaction."""
        self.save({})

    def versions(self) -> list[Any]:
        """Not available: versions are kept for pickle stores (``backups=``) only."""
        raise StoreError(
            f"{self.file_path}: a SQLite store keeps no versions (backups= is for pickle stores); "
            "back it up with convert() to a .pkl or .db file.",
            path=self.file_path,
        )

    def restore(self, version: Any) -> None:
        """Not available: see :meth:`versions`."""
        self.versions()

    def save(self, data: Any) -> None:
        """Replace the whole store with ``data`` (a dict), in one transaction.

        Raises
        ------
        StoreFormatError
            ``data`` is not a dict: a SQLite store holds agent -> entry.
        StoreWriteError
            A value cannot be pickled, or the file system failed; the store is unchanged.
        """
        if not isinstance(data, dict):
            raise StoreFormatError(
                f"{self.file_path}: a SQLite store holds a dict of agents, not a {type(data).__name__}; "
                "save other objects to a .pkl file.",
                path=self.file_path,
            )
        rows = [self._agent_row(key, entry) for key, entry in data.items()]
        with self._transaction() as conn:
            conn.execute("DELETE FROM records")
            conn.execute("DELETE FROM agents")
            for name, key, value, records in rows:
                position = conn.execute(
                    "INSERT INTO agents (name, key, value) VALUES (?, ?, ?)", (name, key, value)
                ).lastrowid
                conn.executemany(
                    "INSERT INTO records (agent, iteration, record) VALUES (?, ?, ?)",
                    ((position, iteration, blob) for iteration, blob in records),
                )

    def append(self, train_iteration: int, agent_id: str, new_data: Any) -> None:
        """Store ``new_data`` as iteration ``train_iteration`` of ``agent_id``: one row, one commit.

        An existing record for that iteration is replaced in place, as in CrewAI.
        """
        iteration = check_iteration(train_iteration)
        agent = check_agent_id(agent_id)
        blob = self._dumps(new_data)
        with self._transaction() as conn:
            found = conn.execute("SELECT position, value FROM agents WHERE name = ?", (agent,)).fetchone()
            if found is None:
                position = conn.execute("INSERT INTO agents (name) VALUES (?)", (agent,)).lastrowid
            elif found[1] is not None:
                # Not an entry of iterations: do what the pickle handler does to that value.
                entry = self._loads(found[1], path=self.file_path)
                if not isinstance(entry, dict):
                    raise StoreFormatError(
                        f"{self.file_path}: agent {agent!r} holds a {type(entry).__name__}, not a dict "
                        "of iterations; this looks like a trained-agents file, not training data.",
                        path=self.file_path,
                    )
                entry[iteration] = copy_plain(new_data)
                conn.execute("UPDATE agents SET value = ? WHERE position = ?", (self._dumps(entry), found[0]))
                return
            else:
                position = found[0]
            conn.execute(
                "INSERT INTO records (agent, iteration, record) VALUES (?, ?, ?) "
                "ON CONFLICT (agent, iteration) DO UPDATE SET record = excluded.record",
                (position, iteration, blob),
            )

    def save_trained_data(self, agent_id: str, trained_data: Any) -> None:
        """Store ``trained_data`` as the entry of ``agent_id`` (replacing it, keeping its place)."""
        agent = check_agent_id(agent_id)
        name, key, value, records = self._agent_row(agent, trained_data)
        with self._transaction() as conn:
            found = conn.execute("SELECT position FROM agents WHERE name = ?", (agent,)).fetchone()
            if found is None:
                position = conn.execute("INSERT INTO agents (name, value) VALUES (?, ?)", (name, value)).lastrowid
            else:
                position = found[0]
                conn.execute("DELETE FROM records WHERE agent = ?", (position,))
                conn.execute("UPDATE agents SET value = ? WHERE position = ?", (value, position))
            conn.executemany(
                "INSERT INTO records (agent, iteration, record) VALUES (?, ?, ?)",
                ((position, iteration, blob) for iteration, blob in records),
            )

    @contextlib.contextmanager
    def _outermost_batch(self) -> Iterator[None]:
        """One transaction around the block: all of it is committed at the end, or nothing if it raises.

        The write lock is held for the whole block; ``load`` and the lazy
        reads inside it see the block's changes.
        """
        conn = self._begin_write()
        self._batch_depth = 1
        try:
            yield
        except BaseException:
            self._batch_depth = 0
            self._rollback(conn)
            raise
        self._batch_depth = 0
        self._commit(conn)

    def exists(self) -> bool:
        """Whether the database file exists (inside :meth:`batch`: always, the batch writes it)."""
        with self._state_lock:
            return bool(self._batch_depth) or os.path.exists(self.file_path)

    def close(self) -> None:
        """Close the database connection. The handler stays usable (it reconnects)."""
        with self._state_lock:
            self._cache = None
            _close_connection(self._connection_box)

    def change_token(self) -> Hashable:
        """A value that differs whenever the stored data may have changed (see the store contract).

        The file's identity, SQLite's ``data_version`` (which changes when
        another connection commits), this connection's change count, and the
        count of this handler's writes (``None`` first when there is no store file).
        """
        with self._state_lock:
            return (self._version(), self._writes)

    def companion_paths(self) -> list[str]:
        """SQLite's ``-wal`` and ``-shm`` files beside the database (they exist while a connection is open)."""
        return [self.file_path + "-wal", self.file_path + "-shm"]

    # -- reading ---------------------------------------------------------------------

    def load(self) -> dict[Any, Any]:
        """The whole store as a dict (a copy: yours to mutate); ``{}`` when the file is missing or empty."""
        with self._state_lock:
            data: dict[Any, Any] = copy_plain(self._read_all())
            return data

    def peek(self) -> dict[Any, Any]:
        """The whole store *without* copying it (read-only; cached while the database is unchanged)."""
        with self._state_lock:
            return self._read_all()

    def agents(self) -> list[Any]:
        """The agent ids in stored order (one small query)."""
        with self._reading() as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT name, key FROM agents ORDER BY position").fetchall()
        return [name if key is None else self._loads(key, path=self.file_path) for name, key in rows]

    def iterations(self, agent_id: str) -> list[int]:
        """The iterations of ``agent_id`` in stored order (one indexed query; no record is unpickled)."""
        agent = check_agent_key(agent_id)
        with self._reading() as conn:
            conn, position, value = self._find(conn, agent)
            if value is None:
                found = [
                    row[0]
                    for row in conn.execute("SELECT iteration FROM records WHERE agent = ? ORDER BY id", (position,))
                ]
                if not all(type(iteration) is int for iteration in found):
                    raise self._damaged(f"agent {agent!r} has an iteration that is not an integer")
                return found
        return list(self._as_iterations(agent, value))

    def get(self, agent_id: str, iteration: int) -> Any:
        """One record, by primary-key lookup: the cost does not depend on the store's size."""
        number = check_iteration_key(iteration)
        agent = check_agent_key(agent_id)
        with self._reading() as conn:
            conn, position, value = self._find(conn, agent)
            if value is None:
                row = conn.execute(
                    "SELECT record FROM records WHERE agent = ? AND iteration = ?", (position, number)
                ).fetchone()
                if row is not None:
                    return self._loads(row[0], path=self.file_path)
                if conn.execute(
                    "SELECT 1 FROM records NOT INDEXED WHERE agent = ? AND iteration = ?", (position, number)
                ).fetchone():
                    raise self._damaged(f"its index misses iteration {number} of agent {agent!r}")
                listed = [
                    row[0]
                    for row in conn.execute(
                        "SELECT iteration FROM records WHERE agent = ? ORDER BY id LIMIT 11", (position,)
                    )
                ]
                total = conn.execute("SELECT COUNT(*) FROM records WHERE agent = ?", (position,)).fetchone()[0]
                raise unknown_iteration(self.file_path, agent, number, listed, total)
        entry = self._as_iterations(agent, value)
        if number not in entry:
            raise unknown_iteration(self.file_path, agent, number, entry, len(entry))
        return entry[number]

    def entry(self, agent_id: str) -> Any:
        """The whole entry of ``agent_id`` (its iterations dict, or its value), reading only that agent."""
        agent = check_agent_key(agent_id)
        with self._reading() as conn:
            conn, position, value = self._find(conn, agent)
            if value is not None:
                return self._loads(value, path=self.file_path)
            return {
                iteration: self._loads(blob, path=self.file_path)
                for iteration, blob in conn.execute(
                    "SELECT iteration, record FROM records WHERE agent = ? ORDER BY id", (position,)
                )
            }

    def records(self, agent_id: str | None = None) -> Iterator[tuple[Any, int, Any]]:
        """Stream ``(agent_id, iteration, record)``, a page of rows per query: memory stays flat.

        Entries that are not iterations are skipped when ``agent_id`` is ``None``.
        """
        if agent_id is not None:
            agent = check_agent_key(agent_id)
            with self._reading() as conn:
                conn, position, value = self._find(conn, agent)
            if value is not None:
                self._as_iterations(agent, value)  # raises: not iterations
            return self._stream([(agent, position)])
        with self._reading() as conn:
            if conn is None:
                return iter(())
            rows = conn.execute("SELECT position, name, key FROM agents WHERE value IS NULL ORDER BY position")
            chosen = [
                (name if key is None else self._loads(key, path=self.file_path), position)
                for position, name, key in rows.fetchall()
            ]
        return self._stream(chosen)

    def _stream(self, chosen: list[tuple[Any, int]]) -> Iterator[tuple[Any, int, Any]]:
        for agent, position in chosen:
            last = -1
            while True:
                with self._reading() as conn:
                    if conn is None:
                        return
                    page = conn.execute(
                        "SELECT id, iteration, record FROM records WHERE agent = ? AND id > ? ORDER BY id LIMIT ?",
                        (position, last, _PAGE),
                    ).fetchall()
                for row_id, iteration, blob in page:
                    last = row_id
                    yield agent, iteration, self._loads(blob, path=self.file_path)
                if len(page) < _PAGE:
                    break

    def __len__(self) -> int:
        """Number of ``(agent, iteration)`` records (counted by SQLite, nothing unpickled)."""
        with self._reading() as conn:
            return 0 if conn is None else conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def stats(self) -> StoreStats:
        """Records, agents, bytes on disk (database + write-ahead log) and last change (UTC).

        The last change is the newest modification time of the database and its
        ``-wal`` file; a checkpoint (SQLite moving the log into the database)
        also counts as a change.
        """
        with self._reading() as conn:
            if conn is None:
                return StoreStats(0, 0, 0, None)
            records = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            agents = conn.execute("SELECT COUNT(*) FROM agents").fetchone()[0]
        size, changed = 0, 0.0
        for path in (self.file_path, self.file_path + "-wal"):
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(path)
                size += st.st_size
                changed = max(changed, st.st_mtime)
        return StoreStats(records, agents, size, utc_time(changed) if size else None)

    # -- internals: values ------------------------------------------------------------

    def _dumps(self, value: Any) -> bytes:
        try:
            return dumps(value, protocol=PICKLE_PROTOCOL)
        except Exception as exc:  # pickling can raise nearly anything from user objects
            raise StoreWriteError(
                f"{self.file_path}: the data cannot be pickled ({type(exc).__name__}: {exc}); the store is unchanged.",
                path=self.file_path,
            ) from exc

    def _loads(self, blob: Any, *, path: str) -> Any:
        """Unpickle a stored value; a value that is not bytes (a damaged page can change its type) is corrupt."""
        if not isinstance(blob, bytes):
            raise self._damaged(f"a stored value is {type(blob).__name__}, not pickled bytes")
        return self._unpickle(blob, path=path)

    def _damaged(self, what: str) -> CorruptStoreError:
        return CorruptStoreError(
            f"{self.file_path}: the database is damaged ({what}). The file is left untouched; restore it from a "
            "backup, or check it with: sqlite3 FILE 'PRAGMA integrity_check'.",
            path=self.file_path,
        )

    def _agent_row(self, key: Any, entry: Any) -> tuple[str | None, bytes | None, bytes | None, list[Any]]:
        """``(name, pickled key, pickled value or None, [(iteration, pickled record)])`` of one entry."""
        name, pickled_key = (key, None) if type(key) is str else (None, self._dumps(key))
        if is_iteration_entry(entry):
            return name, pickled_key, None, [(iteration, self._dumps(record)) for iteration, record in entry.items()]
        return name, pickled_key, self._dumps(entry), []

    def _as_iterations(self, agent: str, value: bytes) -> dict[int, Any]:
        entry = self._loads(value, path=self.file_path)
        if not is_iteration_entry(entry):
            raise not_iterations(self.file_path, agent, entry)
        iterations: dict[int, Any] = entry
        return iterations

    def _find(self, conn: sqlite3.Connection | None, agent: str) -> tuple[sqlite3.Connection, int, bytes | None]:
        """``(conn, position, value)`` of ``agent``, or a KeyError listing the agents there are (none: no file)."""
        row = (
            None
            if conn is None
            else conn.execute("SELECT position, value FROM agents WHERE name = ?", (agent,)).fetchone()
        )
        if row is not None and conn is not None:
            return conn, row[0], row[1]
        names: list[Any] = []
        total = 0
        if conn is not None:
            if conn.execute("SELECT 1 FROM agents NOT INDEXED WHERE name = ?", (agent,)).fetchone():
                raise self._damaged(f"its index misses agent {agent!r}")
            names = [
                name if name is not None else "(non-str key)"
                for (name,) in conn.execute("SELECT name FROM agents ORDER BY position LIMIT 11")
            ]
            total = conn.execute("SELECT COUNT(*) FROM agents").fetchone()[0]
        raise unknown_agent(self.file_path, agent, names, total)

    def _read_all(self) -> dict[Any, Any]:
        with self._reading() as conn:
            if conn is None:
                self._cache = None
                return {}
            token = None if self._batch_depth else self._token(conn)
            if token is not None and self._cache is not None and self._cache.token == token:
                return self._cache.data
            data: dict[Any, Any] = {}
            positions: dict[int, dict[int, Any]] = {}
            for position, name, key, value in conn.execute(
                "SELECT position, name, key, value FROM agents ORDER BY position"
            ):
                agent = name if key is None else self._loads(key, path=self.file_path)
                if value is None:
                    data[agent] = positions[position] = {}
                else:
                    data[agent] = self._loads(value, path=self.file_path)
            loads, path = self._loads, self.file_path
            for position, iteration, blob in conn.execute(
                "SELECT agent, iteration, record FROM records ORDER BY agent, id"
            ):
                entry = positions.get(position)
                if entry is None:
                    raise self._damaged(f"a record belongs to agent row {position!r}, which holds no iterations")
                entry[iteration] = loads(blob, path=path)
        if token is not None:
            self._cache = _Cache(token, data)
        return data

    def _version(self) -> tuple[int, ...] | None:
        """The part of :meth:`change_token` the file gives (``None``: no store file)."""
        with self._reading() as conn:
            return None if conn is None else self._token(conn)

    def _token(self, conn: sqlite3.Connection) -> tuple[int, ...]:
        """Changes whenever the data may have: another connection committed, or this one wrote."""
        held = self._connection_box[0]
        assert held is not None
        return (*held.identity, conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)

    # -- internals: connection and transactions ------------------------------------------------

    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        """The open connection for the file as it is now; ``None`` when it is missing and ``create`` is false."""
        held = self._connection_box[0]
        if held is not None and held.pid != os.getpid():
            _close_connection(self._connection_box)  # inherited through fork: not ours to use
            held = None
        try:
            st = os.stat(self.file_path)
        except FileNotFoundError:
            if held is not None:
                self._forget_connection()
            if not create:
                return None
            st = self._create_file()
        except OSError as exc:
            raise StoreError(f"{self.file_path}: cannot read ({exc.strerror or exc}).", path=self.file_path) from exc
        identity = (st.st_dev, st.st_ino)
        if held is not None and held.read_only:
            # A read-only snapshot connection sees no changes by itself: any change of the file ends it.
            if not create and held.identity == (*identity, st.st_size, st.st_mtime_ns, self._log_size() > 0):
                return held.conn
            self._forget_connection()
        elif held is not None and held.identity == identity:
            return held.conn
        elif held is not None:  # the file was replaced: talk to the new one
            self._forget_connection()
        if not os.path.isfile(self.file_path):
            raise StoreError(
                f"{self.file_path}: is not a regular file; give the path of a SQLite store file.",
                path=self.file_path,
            )
        try:
            conn = sqlite3.connect(
                self.file_path, timeout=self.lock_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc
        try:
            with self._translated("open"):
                # FULL: the WAL is fsynced at every commit, so each acknowledged append survives a power cut.
                conn.execute("PRAGMA synchronous = FULL")
        except StoreWriteError as exc:
            conn.close()
            if create or not isinstance(exc.__cause__, sqlite3.Error) or _code(exc.__cause__) not in _NO_SHM:
                raise
            return self._connect_read_only(st, exc)
        except BaseException:
            conn.close()
            raise
        self._connection_box[0] = _Connection(conn, identity, os.getpid())
        return conn

    def _connect_read_only(self, st: os.stat_result, refused: StoreWriteError) -> sqlite3.Connection:
        """Read a store that SQLite cannot open as usual because its directory is read-only.

        A WAL database is normally read through a ``-shm`` file created beside
        it. Without a ``-wal`` file the database file alone holds every
        committed change, so it is read as immutable, which needs no ``-shm``.
        With one, the log must be read through the ``-shm`` of the process
        writing it, read-only. Otherwise ``refused`` (the first error) is raised.
        """
        logged = self._log_size() > 0
        uri = Path(self.file_path).absolute().as_uri() + ("?mode=ro" if logged else "?mode=ro&immutable=1")
        try:
            conn = sqlite3.connect(
                uri, uri=True, timeout=self.lock_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error:
            raise refused from None
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            conn.close()
            failure = self._error(exc, "read")
            if isinstance(failure, CorruptStoreError):  # a damaged file, whatever its directory
                raise failure from exc
            raise refused from None
        # A writer elsewhere (with the rights this process lacks) changes the file or starts a log: reconnect.
        identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, logged)
        self._connection_box[0] = _Connection(conn, identity, os.getpid(), read_only=True)
        return conn

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.file_path + "-wal")
        except OSError:
            return 0

    def _forget_connection(self) -> None:
        self._cache = None
        _close_connection(self._connection_box)

    def _create_file(self) -> os.stat_result:
        directory = os.path.dirname(self.file_path)
        if not os.path.isdir(directory):
            raise StoreWriteError(
                f"{self.file_path}: the directory {directory} does not exist; create it first.",
                path=self.file_path,
            )
        try:
            # Created here, not by SQLite, so it is owner-only (0600); the -wal and -shm files copy its mode.
            fd = os.open(self.file_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        except FileExistsError:
            pass  # another process created it first
        except OSError as exc:
            raise StoreWriteError(
                f"{self.file_path}: cannot create the database ({exc.strerror or exc}); the directory must be "
                "writable.",
                path=self.file_path,
            ) from exc
        else:
            self._remove_stale_log()
        return os.stat(self.file_path)

    def _remove_stale_log(self) -> None:
        """Remove a ``-wal``/``-shm`` left by a deleted database of the same name.

        SQLite would replay such a log into the new, empty file. A log older
        than the file just created cannot belong to it.
        """
        created = os.stat(self.file_path).st_mtime_ns
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.file_path + suffix).st_mtime_ns <= created:
                    os.unlink(self.file_path + suffix)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """A connection with a consistent snapshot for the block (``None``: no store file yet)."""
        with self._state_lock:
            if self._batch_depth:
                held = self._connection_box[0]
                assert held is not None
                with self._translated("read"):
                    yield held.conn
                return
            conn = self._connect(create=False)
            if conn is None or not self._schema_present(conn):
                yield None
                return
            with self._translated("read"):
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("COMMIT")

    def _schema_present(self, conn: sqlite3.Connection) -> bool:
        """Whether the file holds our tables; ``False`` for a new, empty database; an error for a foreign one."""
        held = self._connection_box[0]
        if held is not None and held.conn is conn and held.ready:
            return True
        with self._translated("read"):
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return False
            version = None
            if _TABLES <= tables:
                row = conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
                version = int(row[0]) if row and str(row[0]).isdigit() else None
        if version is None:
            raise StoreFormatError(
                f"{self.file_path}: is a SQLite database but not a crewtrain_nb store (tables: "
                f"{', '.join(sorted(tables))}); it is left untouched. Give another file name.",
                path=self.file_path,
            )
        if version > FORMAT_VERSION:
            raise StoreFormatError(
                f"{self.file_path}: written by a newer crewtrain_nb (store format {version}, this one reads "
                f"{FORMAT_VERSION}); upgrade crewtrain_nb.",
                path=self.file_path,
            )
        if held is not None and held.conn is conn:
            held.ready = True
        return True

    def _begin_write(self) -> sqlite3.Connection:
        check_writable(self.file_path)
        conn = self._connect(create=True)
        held = self._connection_box[0]
        assert conn is not None and held is not None
        self._schema_present(conn)  # refuses a foreign database before anything is changed in it
        with self._translated("write"):
            if not held.wal:
                # WAL: readers never wait for writers, and a commit appends to the log instead of
                # rewriting pages in place. Persistent in the file; a no-op once set.
                if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                held.wal = True
            conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._schema_present(conn):
                with self._translated("write"):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES ('format_version', ?), ('format', ?)",
                        (str(FORMAT_VERSION), "crewtrain_nb training store"),
                    )
        except BaseException:
            self._rollback(conn)
            raise
        return conn

    def _commit(self, conn: sqlite3.Connection) -> None:
        try:
            with self._translated("write"):
                conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise

    def _rollback(self, conn: sqlite3.Connection) -> None:
        self._cache = None
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write: its own transaction, or a savepoint inside ``batch()`` (a failed write leaves no trace)."""
        with self._state_lock:
            if self._batch_depth:
                held = self._connection_box[0]
                assert held is not None
                conn = held.conn
                with self._translated("write"):
                    conn.execute("SAVEPOINT one_write")
                try:
                    with self._translated("write"):
                        yield conn
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK TO one_write")
                        conn.execute("RELEASE one_write")
                    raise
                with self._translated("write"):
                    conn.execute("RELEASE one_write")
                self._writes += 1
                return
            conn = self._begin_write()
            try:
                with self._translated("write"):
                    yield conn
            except BaseException:
                self._rollback(conn)
                raise
            self._commit(conn)
            self._writes += 1

    def _translated(self, action: str) -> _Translated:
        return _Translated(self, action)

    def _error(self, exc: sqlite3.Error, action: str) -> StoreError:
        """The StoreError for a sqlite3 error: what happened to which file, and what to do."""
        code = _code(exc)
        path = self.file_path
        if code in (_BUSY, _LOCKED):
            return StoreLockTimeout(
                f"{path}: another process held the database's write lock for more than {self.lock_timeout:g} s. "
                "Wait for it to finish, or raise lock_timeout.",
                path=path,
            )
        if code in (_NOTADB, _CORRUPT) or any(needle in str(exc).lower() for needle in _DAMAGE):
            return CorruptStoreError(
                f"{path}: not a readable SQLite store ({exc}). The file is left untouched; restore it from a "
                "backup or move it aside.",
                path=path,
            )
        if code in (_READONLY, _CANTOPEN, _IOERR, _FULL) and action != "read":
            return StoreWriteError(
                f"{path}: cannot {action} the database ({exc}); the store is unchanged. The file and its "
                "directory must be writable (SQLite keeps -wal and -shm files beside it), with free disk space.",
                path=path,
            )
        return StoreError(f"{path}: SQLite failed to {action} the store ({exc}).", path=path)
