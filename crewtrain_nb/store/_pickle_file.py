"""The pickle store's file mechanics, a component the pickle handler holds (never a base class).

:class:`PickleFile` owns one pickle store file: its lock file and CrewAI's lock,
the cached snapshot (keyed by the file's identity), reading with retries,
pickling with reused per-agent pieces, the atomic replace, versions and the
audit hooks. The handler (``store/handler.py``) keeps the API on top: argument
checks, copies, ``batch()`` and what each operation means. As ``diskcache``
keeps ``Disk`` (how values become files) apart from ``Cache`` (the API), no
other backend inherits any of this.

The caller holds the handler's thread lock around every call.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

import filelock

from ..errors import CorruptStoreError, StoreError, StoreLockTimeout, StoreVersionError, StoreWriteError
from ._atomic import sweep_stale_temps, write_atomic
from ._audit import PendingAudit
from ._backups import StoreVersion, discard_version, find_version, finish_rotation, link_current, list_versions
from ._checks import check_writable
from ._codec import StoreCodec
from ._contract import PICKLE_PROTOCOL
from ._copy import copy_plain
from ._crewai_lock import CrewAILock, CrewAILockTimeout
from ._pieces import dumps_dict, entry_after_insert
from ._placeholders import dumps
from ._remote import RemoteFile
from ._tail import (
    CommitFailed,
    SetEntry,
    SetKey,
    TailError,
    TailLayout,
    diff_changes,
    encode_tail,
    layout_after_load,
    layout_after_rewrite,
    layout_after_tail,
    should_compact,
    write_tail,
)
from ._unpickle import OnEnd, safe_loads, trusted_loads

__all__ = ["NOTHING", "AuditFields", "PickleFile"]

#: What the handler says about the write about to happen (``operation``, ``agent``, ``iteration``, ``count``).
AuditFields = Callable[[], dict[str, Any]]

_StatKey = tuple[int, int, int, int, int]
#: "No value given" for :meth:`PickleFile.forget_piece`'s ``inserted``.
NOTHING: Any = object()


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Snapshot:
    """What the file held when it was last read or written, keyed by the file's identity.

    ``fd`` stays open so the inode cannot be freed and reused by another file
    while the key refers to it.
    """

    key: _StatKey
    data: Any
    fd: int
    #: Pickled ``key, value`` pieces of a dict ``data`` (see ``_pieces``; a ``Piece``, or ``KNOWN_TREE`` for an
    #: entry known to share nothing); built on first write.
    pieces: dict[Any, Any] = field(default_factory=dict)
    #: Where the file's pickle ends and its memo slots, for a change written as a tail (see ``_tail``).
    layout: TailLayout | None = None
    #: SHA-256 of the file up to its final STOP, for the audit line of the next tail; made on first need.
    audit_hash: Any = None


def _still_current(snapshot: _Snapshot) -> bool:
    """A snapshot read while a tail was uncommitted is current only while that tail is (its STOP still there).

    Committing a tail changes one byte and may leave size and times as they were (times tick coarsely).
    """
    layout = snapshot.layout
    if layout is None or not layout.pending:
        return True
    try:
        return os.pread(snapshot.fd, 1, layout.end - 1) == b"."
    except OSError:
        return False


def _hash_prefix(fd: int, size: int) -> Any:
    """SHA-256 of the first ``size`` bytes of the open file (read in blocks)."""
    digest = hashlib.sha256()
    offset = 0
    while offset < size:
        block = os.pread(fd, min(1 << 20, size - offset), offset)
        if not block:
            raise TailError("the file is shorter than its layout")
        digest.update(block)
        offset += len(block)
    return digest


def _close_snapshot(box: list[_Snapshot | None]) -> None:
    snapshot = box[0]
    box[0] = None
    if snapshot is not None:
        with contextlib.suppress(OSError):
            os.close(snapshot.fd)


class PickleFile:
    """One pickle store file: locks, snapshot cache, reads, atomic writes, versions and audit lines.

    Parameters
    ----------
    file_path
        The store, an absolute path or an fsspec URL (``remote``).
    remote
        ``file_path`` is an fsspec URL: no lock file, no cache, no versions, no audit.
    codec
        Compression and encryption of the whole file.
    trusted, allowed_classes
        How payloads are unpickled.
    lock_timeout
        Seconds to wait for our lock and CrewAI's together.
    backups, audit
        Versions to keep; whether to append audit lines.
    crewai_lock
        Also hold CrewAI's lock on the file around reads of a changed file and writes.
    read_retry_timeout
        Seconds a read retries a file that is empty or does not unpickle.
    tails
        Write a change of a few keys as a tail after the pickle (see ``_tail``) where the file allows it.
    """

    def __init__(
        self,
        file_path: str,
        *,
        remote: bool,
        codec: StoreCodec,
        trusted: bool,
        allowed_classes: tuple[type, ...],
        lock_timeout: float,
        backups: int,
        audit: bool,
        crewai_lock: bool,
        read_retry_timeout: float,
        tails: bool = True,
    ) -> None:
        self.file_path = file_path
        #: Where writes go: the file itself, or the target of a symlinked store (which stays a link).
        self.target: str = file_path if remote else os.path.realpath(file_path)
        self.lock_path: str = self.target + ".lock"
        self.codec = codec
        self.trusted = trusted
        self.allowed_classes = allowed_classes
        self.lock_timeout = lock_timeout
        self.backups = backups
        self.audit = audit
        self.read_retry_timeout = read_retry_timeout
        self.tails = tails
        self.crewai_lock: CrewAILock | None = CrewAILock(file_path) if crewai_lock and not remote else None
        #: The deadline of the lock being taken now (``lock_timeout`` covers our lock and CrewAI's together).
        self._lock_deadline: float | None = None
        #: Stat key of a file that stayed unreadable through a whole retry: read once, not retried, until it changes.
        self._settled_corrupt: _StatKey | None = None
        # A short poll keeps many contending writers moving; flock itself is cheap.
        self._file_lock = filelock.FileLock(self.lock_path, timeout=lock_timeout, mode=0o600, poll_interval=0.005)
        # A one-item box so the finalizer can close the descriptor without a reference to ``self``.
        self._snapshot_box: list[_Snapshot | None] = [None]
        self._finalizer = weakref.finalize(self, _close_snapshot, self._snapshot_box)
        self.remote: RemoteFile | None = None
        if remote:
            if backups or audit:
                raise ValueError(
                    f"{file_path}: backups= and audit= need a local file (they rely on hard links, "
                    "O_APPEND and a lock file); use them on a local copy."
                )
            self.remote = RemoteFile(file_path)

    # -- identity ---------------------------------------------------------------------------------

    def exists(self) -> bool:
        if self.remote is not None:
            return self.remote.exists()
        return os.path.exists(self.file_path)

    def identity(self) -> Hashable:
        """The file's identity now (device, inode, size, times); ``None``: missing; a new object each call: remote."""
        if self.remote is not None:
            return object()  # no identity to compare: every call may have seen a change
        try:
            return _stat_key(os.stat(self.file_path))
        except OSError:
            return None

    # -- locks ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``<file>.lock`` (or the remote store's lock) for the block."""
        if self.remote is not None:
            with self.remote.locked():
                yield
            return
        directory = os.path.dirname(self.file_path)
        if not os.path.isdir(directory):
            raise StoreWriteError(
                f"{self.file_path}: the directory {directory} does not exist; create it first.",
                path=self.file_path,
            )
        outer_deadline = self._lock_deadline
        deadline = time.monotonic() + self.lock_timeout if outer_deadline is None else outer_deadline
        self._lock_deadline = deadline
        try:
            self._file_lock.acquire(timeout=max(deadline - time.monotonic(), 0.0))
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
            sweep_stale_temps(self.target)
            yield
        finally:
            self._file_lock.release()
            self._lock_deadline = outer_deadline

    @contextlib.contextmanager
    def crewai_held(self) -> Iterator[None]:
        """Hold CrewAI's lock for this file (after ours, within the same ``lock_timeout``), if interop is on."""
        lock = self.crewai_lock
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

    # -- the snapshot ---------------------------------------------------------------------------

    def forget_piece(self, key: Any, inserted: Any = NOTHING) -> None:
        """``data[key]`` of the snapshot changed: its pickled piece must be rebuilt (or extended by ``inserted``)."""
        snapshot = self._snapshot_box[0]
        if snapshot is not None:
            old = snapshot.pieces.pop(key, None)
            if inserted is not NOTHING:
                # Still sharing nothing? Then the re-pickling need not walk the agent's other records again.
                entry = entry_after_insert(old, inserted)
                if entry is not None:
                    snapshot.pieces[key] = entry

    def drop_snapshot(self) -> None:
        _close_snapshot(self._snapshot_box)

    def _replace_snapshot(self, snapshot: _Snapshot) -> None:
        self.drop_snapshot()
        self._snapshot_box[0] = snapshot

    # -- reading ----------------------------------------------------------------------------------

    def read(self) -> Any:
        """Return the stored object, shared with the cache: callers must not mutate it."""
        if self.remote is not None:
            # No file identity to key a cache on: read the whole file every time.
            self.drop_snapshot()
            stored = self.remote.read()
            if not stored:
                return {}
            return self.loads(self.codec.decode(stored), path=self.file_path)
        try:
            st = os.stat(self.file_path)
        except FileNotFoundError:
            self.drop_snapshot()
            return {}
        except OSError as exc:
            raise StoreError(f"{self.file_path}: cannot read ({exc.strerror or exc}).", path=self.file_path) from exc
        snapshot = self._snapshot_box[0]
        if snapshot is not None and snapshot.key == _stat_key(st) and _still_current(snapshot):
            return snapshot.data  # unchanged: a stat, no lock
        give_up = time.monotonic() + self.read_retry_timeout
        pause = 0.002
        # Where the pickle ended and its memo, for tails (see ``_tail``).
        ended: list[Any] = []
        on_end = None if not self.tails_possible() else lambda end, memo: ended.extend((end, memo.copy()))
        while True:
            with self.crewai_held():
                opened = self._read_bytes()
            if opened is None:
                self.drop_snapshot()
                return {}
            fd, key, payload = opened
            ended.clear()
            try:
                data = self.loads(self.codec.decode(payload), path=self.file_path, on_end=on_end) if payload else {}
            except CorruptStoreError:
                os.close(fd)
                # A writer without a lock may be between truncating and writing: retry for a bounded time.
                if key == self._settled_corrupt or time.monotonic() + pause > give_up:
                    self._settled_corrupt = key
                    self.drop_snapshot()
                    raise
            except BaseException:
                os.close(fd)
                raise
            else:
                if payload or time.monotonic() + pause > give_up:
                    # A file still empty after the retries (and read under CrewAI's lock) is {}, as in CrewAI;
                    # it is cached like any other, so the next load of it is a stat.
                    self._settled_corrupt = None
                    layout = layout_after_load(data, payload, *ended[-2:]) if ended else None
                    self._replace_snapshot(_Snapshot(key, data, fd, layout=layout))
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

    def loads(self, data: bytes, *, path: str, on_end: OnEnd | None = None) -> Any:
        """Unpickle a decoded payload, safely unless ``trusted``; ``on_end``: see ``safe_loads``."""
        if self.trusted:
            return trusted_loads(data, path=path, on_end=on_end)
        return safe_loads(data, path=path, allowed_classes=self.allowed_classes, on_end=on_end)

    # -- writing ----------------------------------------------------------------------------------

    def write(self, data: Any, *, cache: bool, audit_fields: AuditFields) -> None:
        """Pickle ``data`` and replace the file; the caller holds :meth:`locked` and :meth:`crewai_held`.

        ``cache``: keep ``data`` as the snapshot (the caller will not mutate it behind the cache's back).
        """
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
        if self.remote is not None:
            self.remote.write(self.codec.encode(payload))
            self.drop_snapshot()
            return
        fd, st = self.replace_file(self.codec.encode(payload), audit_fields=audit_fields)
        if cache:
            tails = type(data) is dict and self.tails_possible()
            layout = layout_after_rewrite(data, pieces, len(payload)) if tails else None
            self._replace_snapshot(_Snapshot(_stat_key(st), data, fd, pieces, layout=layout))
        else:
            os.close(fd)
            self.drop_snapshot()

    # -- tails: a change written after the pickle, in place (see ``_tail``) ----------------------------------

    def tails_possible(self) -> bool:
        """Whether this file's changes may be tails: local, plain (not compressed or encrypted), no versions.

        Versions are hard links of the store file, which a tail written in place would change too; they keep
        full rewrites (copying the file to break the link costs what the rewrite costs).
        """
        return self.tails and self.remote is None and self.codec.is_plain and not self.backups

    def tail_layout(self) -> TailLayout | None:
        """The layout of the snapshot, when it is the file as it is now (call under the locks, after :meth:`read`)."""
        snapshot = self._snapshot_box[0]
        if snapshot is None or snapshot.layout is None or not self.tails_possible():
            return None
        try:
            if _stat_key(os.stat(self.target)) != snapshot.key or not _still_current(snapshot):
                return None
        except OSError:
            return None
        return snapshot.layout

    def write_change(self, key: Any, entry: Any, *, audit_fields: AuditFields) -> bool:
        """The snapshot's ``data[key]`` (or ``data[key][entry]``, unless ``entry`` is ``NOTHING``) changed, and only
        that: write it as a tail if the file allows it (both locks held). ``False``: the caller rewrites the file.
        """
        layout = self.tail_layout()
        snapshot = self._snapshot_box[0]
        if layout is None or snapshot is None:
            return False
        data = snapshot.data
        known = entry is not NOTHING and key in layout.slots
        change = SetEntry(key, entry, data[key][entry]) if known else SetKey(key, data[key])
        return self._write_tail([change], audit_fields=audit_fields)

    def save_as_tail(self, data: Any, *, audit_fields: AuditFields) -> bool:
        """``save(data)`` as a tail of what changed since the snapshot, when it is current; ``False``: not done.

        The snapshot then holds copies of the changed values (the caller keeps ``data``).
        """
        layout = self.tail_layout()
        snapshot = self._snapshot_box[0]
        if layout is None or snapshot is None or type(snapshot.data) is not dict:
            return False
        current = snapshot.data
        changes = diff_changes(current, data)
        if changes is None:
            return False
        copied: list[SetKey | SetEntry] = [
            SetEntry(change.key, change.entry, copy_plain(change.value))
            if isinstance(change, SetEntry) and change.key in layout.slots
            else SetKey(change.key, copy_plain(data[change.key]))
            for change in changes
        ]
        if not self._write_tail(copied, audit_fields=audit_fields):
            return False
        for change in copied:
            if isinstance(change, SetEntry):
                current[change.key][change.entry] = change.value
            else:
                current[change.key] = change.value
            self.forget_piece(change.key)
        return True

    def _write_tail(self, changes: list[SetKey | SetEntry], *, audit_fields: AuditFields) -> bool:
        """Write ``changes`` after the snapshot's file as a tail (both locks held); ``False``: rewrite it instead.

        The snapshot (which holds the changes already, or gets them from the caller) is then keyed to the
        grown file. ``False`` when the compaction rule says the whole file is due, or the file is not the one
        the snapshot describes.
        """
        snapshot = self._snapshot_box[0]
        assert snapshot is not None and snapshot.layout is not None
        layout = snapshot.layout
        try:
            tail, slots, next_slot = encode_tail(changes, layout)
        except Exception as exc:  # pickling can raise nearly anything from user objects
            raise StoreWriteError(
                f"{self.file_path}: the data cannot be pickled ({type(exc).__name__}: {exc}); the file is unchanged.",
                path=self.file_path,
            ) from exc
        if should_compact(layout, len(tail)):
            return False
        check_writable(self.target)
        pending = PendingAudit.open(self.target) if self.audit else None
        try:
            fd = os.open(self.target, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            if pending is not None:
                pending.close()
            return False  # the full rewrite says what is wrong
        try:
            if _stat_key(os.fstat(fd)) != snapshot.key:
                raise TailError("the file changed")
            prefix = snapshot.audit_hash if pending is not None else None
            if pending is not None and prefix is None:
                prefix = _hash_prefix(fd, layout.end - 1)
            write_tail(fd, layout.end, tail)
            st = os.fstat(fd)
        except TailError:
            os.close(fd)
            if pending is not None:
                pending.close()
            return False
        except (OSError, CommitFailed) as exc:
            os.close(fd)
            if pending is not None:
                pending.close()
            self.drop_snapshot()
            error = exc.error if isinstance(exc, CommitFailed) else exc
            state = (
                "the store may hold the new data or the previous data (load() says which)"
                if isinstance(exc, CommitFailed)
                else "the previous file is unchanged"
            )
            raise StoreWriteError(
                f"{self.file_path}: saving failed ({error.strerror or error}); {state}. "
                "Free disk space or fix permissions and try again.",
                path=self.file_path,
            ) from exc
        os.close(fd)
        snapshot.key = _stat_key(st)
        snapshot.layout = layout_after_tail(layout, tail, slots, next_slot)
        snapshot.audit_hash = None
        if pending is not None and prefix is not None:
            # The file is now its old bytes up to the old STOP, the MARK that replaced it, and the tail.
            prefix.update(b"(" + tail[:-1])
            digest = prefix.copy()
            digest.update(b".")
            snapshot.audit_hash = prefix
            try:
                pending.commit(**audit_fields(), version=None, size=st.st_size, sha256=digest.hexdigest())
            except OSError as exc:
                raise self._unaudited(exc) from exc
        return True

    def replace_file(
        self, payload: bytes, *, audit_fields: AuditFields, keep_version: bool = False, version: int | None = None
    ) -> tuple[int, os.stat_result]:
        """Write the encoded ``payload`` over the store: version, atomic replace, audit; the caller holds the lock.

        The current file is linked into the versions *before* it is replaced,
        so a crash leaves at worst an extra version, never a lost store. The
        audit log is opened first (a broken log stops the write) and its line
        appended after the replace (a crash between leaves a log whose last
        line does not match the store, which ``verify_audit`` reports).
        Returns the new file's open descriptor (the caller closes or caches it) and its stat.
        """
        target = self.target
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
            self.drop_snapshot()
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
                pending.commit(**audit_fields(), version=version, payload=payload)
            except OSError as exc:
                os.close(fd)
                raise self._unaudited(exc) from exc
        return fd, st

    def _unaudited(self, exc: OSError) -> StoreWriteError:
        """The error for a write that landed but whose audit line failed (the snapshot is dropped: re-read next)."""
        self.drop_snapshot()
        return StoreWriteError(
            f"{self.file_path}: the store was saved, but its audit line could not be written "
            f"({exc.strerror or exc}); verify_audit() will report this write as unaudited.",
            path=self.file_path,
        )

    # -- versions -------------------------------------------------------------------------------

    def versions(self) -> list[StoreVersion]:
        return list_versions(self.target)

    def restore(self, version: int | str | StoreVersion, *, audit_fields: AuditFields) -> None:
        """Write a kept version back byte for byte, after checking that it loads; the current file becomes a version."""
        with self.locked():
            found = find_version(self.target, version)
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
                self.loads(self.codec.decode(payload), path=found.path)
            self.drop_snapshot()
            with self.crewai_held():
                fd, _ = self.replace_file(payload, audit_fields=audit_fields, keep_version=True, version=found.id)
            os.close(fd)

    def close(self) -> None:
        """Release the descriptor held for the cache."""
        self.drop_snapshot()
