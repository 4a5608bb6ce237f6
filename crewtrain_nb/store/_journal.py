"""An append-only journal of JSON lines, each made durable before :meth:`FeedbackJournal.append` returns.

The journal keeps what a person typed during ``crew.train()``: one line per
feedback, written with ``O_APPEND`` (one ``write`` per line, so concurrent
writers never interleave inside a line) and fsynced before CrewAI sees the
feedback. Nothing ever rewrites it. A crash can at worst leave the last line
without its newline; :func:`read_journal` reports such a line instead of
failing on it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import CorruptStoreError, StoreWriteError
from ._atomic import fsync_directory

__all__ = ["FeedbackJournal", "JournalContents", "read_journal"]


class FeedbackJournal:
    """Append-only JSON-lines file; every :meth:`append` is on disk when it returns.

    Parameters
    ----------
    path
        The journal file; created (``0600``) on the first append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.path.abspath(os.fspath(path))

    def append(self, entry: Mapping[str, Any]) -> None:
        """Write ``entry`` as one JSON line and fsync it.

        Raises
        ------
        TypeError
            ``entry`` holds something JSON cannot represent.
        StoreWriteError
            The file system refused the write; the message names the journal.
        """
        line = json.dumps(dict(entry), ensure_ascii=False, separators=(",", ":")) + "\n"
        created = not os.path.exists(self.path)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                payload = memoryview(line.encode("utf-8"))
                # One write for the whole line: O_APPEND keeps concurrent lines whole.
                written = os.write(fd, payload)
                while written < len(payload):  # a short write (rare): finish the line
                    written += os.write(fd, payload[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_directory(os.path.dirname(self.path))
        except OSError as exc:
            raise StoreWriteError(
                f"{self.path}: cannot append to the feedback journal ({exc.strerror or exc}); "
                "check the folder is writable and the disk has room.",
                path=self.path,
            ) from exc


@dataclass(frozen=True)
class JournalContents:
    """What :func:`read_journal` found: the entries, and a torn last line if a crash left one."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    torn_line: str | None = None


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """Read every entry of a journal; a missing journal has none.

    A last line without its newline that does not parse (a crash mid-write)
    is returned as ``torn_line``; any other line that does not parse is damage.

    Raises
    ------
    CorruptStoreError
        A complete line is not a JSON object; the message names the file and line.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return JournalContents()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    entries: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise CorruptStoreError(f"{path}: line {number} is not JSON ({exc}).", path=path) from exc
        if not isinstance(value, dict):
            raise CorruptStoreError(f"{path}: line {number} is not a JSON object.", path=path)
        entries.append(value)
    torn: str | None = None
    if tail.strip():
        try:
            value = json.loads(tail)
        except ValueError:
            torn = tail.decode("utf-8", "replace")
        else:
            if isinstance(value, dict):
                entries.append(value)
            else:
                torn = tail.decode("utf-8", "replace")
    return JournalContents(entries=entries, torn_line=torn)
