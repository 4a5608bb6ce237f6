"""An append-only, hash-chained audit log of a store's writes: ``<store>.audit.jsonl``.

Each write appends one JSON line (``O_APPEND``, fsynced, under the store's
lock) with who changed what, how many bytes the store file now has and its
SHA-256. Every line carries ``hash``, the SHA-256 of its own canonical JSON
without that field, and ``prev``, the ``hash`` of the line before (the first
line chains to :data:`GENESIS`). :func:`verify_audit` recomputes both, so an
edited, removed, reordered or inserted line is found, and compares the last
line with the store file as it is now (up to an uncommitted tail a writer
left when it died, which is not part of the store; see ``_tail``).

A tail's line records the same fields as a full rewrite's: the file's size and
SHA-256 after the tail, which the writer computes from the hash of the file
before it (kept from its last write, or read once) plus the tail's bytes.

The chain is tamper-*evident*, not tamper-proof: it holds no secret, so
someone who rewrites the whole log consistently (and the store) is not caught.
Removing only the last lines is caught when the store has changed since.
"""

from __future__ import annotations

import contextlib
import datetime
import getpass
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError, StoreWriteError
from ._atomic import fsync_directory
from ._tail import is_uncommitted_tail

__all__ = ["AUDIT_SUFFIX", "GENESIS", "AuditReport", "PendingAudit", "audit_path", "verify_audit"]

AUDIT_SUFFIX = ".audit.jsonl"
#: What the first line's ``prev`` is.
GENESIS = "0" * 64
_FIELDS = (
    "seq",
    "time",
    "user",
    "host",
    "pid",
    "operation",
    "agent",
    "iteration",
    "count",
    "version",
    "bytes",
    "sha256",
    "prev",
    "hash",
)


def audit_path(store_path: str) -> str:
    """The audit log of ``store_path``."""
    return store_path + AUDIT_SUFFIX


def _canonical(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({key: value for key, value in entry.items() if key != "hash"})).hexdigest()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # no login name and no passwd entry (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def _last_line(fd: int) -> bytes | None:
    """The last line of the open file (without its newline), or ``None`` for an empty file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    block = 4096
    while True:
        start = max(0, size - block)
        tail = os.pread(fd, size - start, start)
        if not tail.endswith(b"\n"):
            return tail[tail.rfind(b"\n") + 1 :] + b"\x00"  # a torn line: never valid JSON
        body = tail[:-1]
        cut = body.rfind(b"\n")
        if cut >= 0 or start == 0:
            return body[cut + 1 :]
        block *= 8


@dataclass
class PendingAudit:
    """An audit log opened before a write, so a broken log stops the write before the store changes."""

    store_path: str
    fd: int
    seq: int
    prev: str
    created: bool

    @classmethod
    def open(cls, store_path: str) -> PendingAudit:
        """Open (or create, ``0600``) the log and read where the chain ends; call under the store's lock.

        Raises
        ------
        StoreWriteError
            The log cannot be opened or its last line is unreadable.
        """
        path = audit_path(store_path)
        created = not os.path.exists(path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise StoreWriteError(
                f"{store_path}: cannot open the audit log {path} ({exc.strerror or exc}); nothing was written.",
                path=store_path,
            ) from exc
        try:
            last = _last_line(fd)
            if last is None:
                return cls(store_path, fd, 1, GENESIS, created)
            entry = json.loads(last)
            return cls(store_path, fd, int(entry["seq"]) + 1, str(entry["hash"]), created)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            os.close(fd)
            raise StoreWriteError(
                f"{store_path}: the last line of the audit log {path} is unreadable ({type(exc).__name__}); "
                "nothing was written. Check it with crewtrain_nb.verify_audit() and move the log aside.",
                path=store_path,
            ) from exc

    def commit(
        self,
        *,
        operation: str,
        agent: str | None,
        iteration: int | None,
        count: int | None,
        version: int | None,
        payload: bytes | None = None,
        size: int | None = None,
        sha256: str | None = None,
    ) -> None:
        """Append the line for a write whose resulting store file is ``payload``, and fsync it.

        A tail gives the file's ``size`` and ``sha256`` instead (hashed as it grew, not read again).
        """
        try:
            entry: dict[str, Any] = {
                "seq": self.seq,
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds"),
                "user": _user(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "operation": operation,
                "agent": agent,
                "iteration": iteration,
                "count": count,
                "version": version,
                "bytes": len(payload) if payload is not None else size,
                "sha256": hashlib.sha256(payload).hexdigest() if payload is not None else sha256,
                "prev": self.prev,
            }
            entry["hash"] = _entry_hash(entry)
            line = _canonical(entry) + b"\n"
            # One write on an O_APPEND descriptor: the line lands whole at the end.
            written = os.write(self.fd, line)
            if written != len(line):
                raise OSError(f"short write to the audit log ({written} of {len(line)} bytes)")
            os.fsync(self.fd)
            if self.created:
                fsync_directory(os.path.dirname(self.store_path))
        finally:
            self.close()

    def close(self) -> None:
        """Release the log's descriptor."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class AuditReport:
    """What :func:`verify_audit` found.

    Attributes
    ----------
    ok
        ``True`` when every line is intact, chained, and the last one matches the store.
    lines
        How many lines the log has.
    line
        The 1-based number of the first bad line (``None`` when ``ok``).
    problem
        What is wrong with it, in words (``None`` when ``ok``).
    path
        The audit log checked.
    """

    ok: bool
    lines: int
    line: int | None
    problem: str | None
    path: str

    def __bool__(self) -> bool:
        return self.ok


def _paths(path: str | os.PathLike[str]) -> tuple[str, str]:
    name = os.path.abspath(os.fspath(path))
    if name.endswith(AUDIT_SUFFIX):
        return name[: -len(AUDIT_SUFFIX)], name
    return name, audit_path(name)


def verify_audit(path: str | os.PathLike[str]) -> AuditReport:
    """Check a store's audit log: every line intact and chained, and the last one matching the store.

    Parameters
    ----------
    path
        The store file (its ``<store>.audit.jsonl`` is checked) or the audit log itself.

    Returns
    -------
    AuditReport
        ``ok``, the number of ``lines``, and the first ``line``/``problem``. It is
        truthy when the log is intact.

    Raises
    ------
    StoreError
        The log cannot be read at all (missing, unreadable).

    Examples
    --------
    >>> import tempfile, os
    >>> from crewtrain_nb import CrewTrainingHandler, verify_audit
    >>> handler = CrewTrainingHandler(os.path.join(tempfile.mkdtemp(), "run"), audit=True)
    >>> handler.append(0, "agent-a", {"loss": 0.5})
    >>> handler.append(1, "agent-a", {"loss": 0.4})
    >>> report = verify_audit(handler.file_path)
    >>> report.ok, report.lines
    (True, 2)
    """
    store, log = _paths(path)
    try:
        with open(log, "rb") as file:
            raw_lines = file.read().split(b"\n")
    except FileNotFoundError:
        raise StoreError(f"{log}: no audit log; open the store with audit=True to keep one.", path=store) from None
    except OSError as exc:
        raise StoreError(f"{log}: cannot read the audit log ({exc.strerror or exc}).", path=store) from exc
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    else:
        # No final newline: the last line was cut short.
        return AuditReport(False, len(raw_lines), len(raw_lines) or None, "the last line is cut short", log)
    count = len(raw_lines)

    def bad(number: int, problem: str) -> AuditReport:
        return AuditReport(False, count, number, problem, log)

    if count == 0:
        return bad(1, "the audit log is empty, though it is only created by a write")
    prev = GENESIS
    entry: dict[str, Any] = {}
    for number, raw in enumerate(raw_lines, start=1):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            return bad(number, "not a JSON object (edited or damaged)")
        missing = [name for name in _FIELDS if name not in entry]
        if missing:
            return bad(number, f"missing fields {', '.join(missing)} (edited)")
        if entry["hash"] != _entry_hash(entry):
            return bad(number, "its content does not match its hash (edited)")
        if entry["prev"] != prev:
            where = "the start of the log" if number == 1 else f"line {number - 1}"
            return bad(number, f"does not chain to {where} (a line was removed, inserted or reordered)")
        if entry["seq"] != number:
            return bad(number, f"has seq {entry['seq']}, expected {number} (a line was removed or inserted)")
        prev = entry["hash"]
    try:
        with open(store, "rb") as file:
            content = file.read()
    except FileNotFoundError:
        return bad(count, f"the store {store} is missing; the last line says it has {entry['bytes']} bytes")
    except OSError as exc:
        raise StoreError(f"{store}: cannot read the store ({exc.strerror or exc}).", path=store) from exc
    size = entry["bytes"]
    if isinstance(size, int) and 0 < size < len(content) and is_uncommitted_tail(content, size):
        content = content[:size]  # a tail written but not committed (a writer died): the store is what precedes it
    if len(content) != size or hashlib.sha256(content).hexdigest() != entry["sha256"]:
        return bad(
            count,
            "the store file does not match the last line (changed without the audit log, "
            "or the last lines of the log were removed)",
        )
    return AuditReport(True, count, None, None, log)
