"""Kept training runs: ``<directory>/training_runs/<n>/`` holds a run's entry and the files it left.

Each run folder has ``run.json`` (written atomically on every change) and copies
of the store files as they were when the run ended, failed, or was about to be
wiped (CrewAI overwrites both files with ``{}`` when ``train()`` starts and again
when it fails). Run numbers count up and are never reused: a folder is claimed
with ``mkdir``, which only one process can win.

An entry starts as ``running`` with the training process's id and host; a
reader shows a ``running`` entry whose process is gone (on this host) as
``interrupted``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import StoreError, StoreFormatError, StoreWriteError
from ._atomic import write_atomic

__all__ = ["RUNS_FOLDER", "RunArchive", "utc_now"]

#: The folder, inside the training directory, that holds the kept runs.
RUNS_FOLDER = "training_runs"
ENTRY_NAME = "run.json"
ENTRY_FORMAT = "crewtrain_nb.run"


def utc_now() -> str:
    """The current UTC time as ISO 8601 text (what run entries and journal lines carry)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


class RunArchive:
    """The kept runs of one training directory.

    Parameters
    ----------
    directory
        The folder where ``crew.train()`` writes its files.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self.directory, RUNS_FOLDER)

    def run_path(self, run: int) -> str:
        """The folder of run ``run``."""
        return os.path.join(self.path, str(int(run)))

    def start(self, entry: Mapping[str, Any]) -> int:
        """Claim the next run number and write its entry; return the number."""
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            number = max(self.numbers(), default=0) + 1
            while True:
                try:
                    os.mkdir(self.run_path(number), 0o700)
                    break
                except FileExistsError:  # another process claimed it first
                    number += 1
        except OSError as exc:
            raise StoreWriteError(
                f"{self.path}: cannot create a run folder ({exc.strerror or exc}); check the training directory "
                "is writable.",
                path=self.path,
            ) from exc
        self._write_entry(number, {"format": ENTRY_FORMAT, "version": 1, "run": number, **entry})
        return number

    def update(self, run: int, **fields: Any) -> dict[str, Any]:
        """Change fields of run ``run``'s entry (atomically); return the new entry."""
        entry = self.entry(run)
        entry.update(fields)
        self._write_entry(run, entry)
        return entry

    def keep(self, run: int, paths: Iterable[str | os.PathLike[str]]) -> list[str]:
        """Copy each existing file of ``paths`` into run ``run``'s folder, byte for byte; return the names kept.

        A file kept earlier under the same name is replaced (the newest state of a run wins).
        """
        kept: list[str] = []
        for source in paths:
            source = os.fspath(source)
            try:
                with open(source, "rb") as file:
                    payload = file.read()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"{source}: cannot read it to keep it ({exc.strerror or exc}).", path=source) from exc
            name = os.path.basename(source)
            target = os.path.join(self.run_path(run), name)
            try:
                fd, _ = write_atomic(target, payload)
            except OSError as exc:
                raise StoreWriteError(f"{target}: cannot keep a copy ({exc.strerror or exc}).", path=target) from exc
            os.close(fd)
            kept.append(name)
        entry = self.entry(run)
        files = list(dict.fromkeys([*entry.get("files", []), *kept]))
        if files != entry.get("files"):
            self.update(run, files=files)
        return kept

    def numbers(self) -> list[int]:
        """Run numbers that exist, ascending."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(int(name) for name in names if name.isdigit())

    def entry(self, run: int) -> dict[str, Any]:
        """Run ``run``'s entry as stored (``outcome`` as written, not as a reader shows it).

        Raises
        ------
        StoreError
            No such run; the message lists the runs that exist.
        StoreFormatError
            The entry is not a crewtrain_nb run entry.
        """
        path = os.path.join(self.run_path(run), ENTRY_NAME)
        try:
            with open(path, encoding="utf-8") as file:
                entry = json.load(file)
        except FileNotFoundError:
            existing = ", ".join(map(str, self.numbers())) or "none"
            raise StoreError(
                f"{self.path}: no run {run!r}; the runs kept are: {existing} (see runs() or `crewtrain-nb runs`).",
                path=self.path,
            ) from None
        except ValueError as exc:
            raise StoreFormatError(f"{path}: not a run entry ({exc}).", path=path) from exc
        if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
            raise StoreFormatError(f"{path}: not a crewtrain_nb run entry (format {ENTRY_FORMAT!r}).", path=path)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every run's entry, oldest first, as a reader should see it.

        A ``running`` entry whose process is gone (same host) reads as
        ``interrupted``, with ``error`` saying so.
        """
        entries = []
        host = socket.gethostname()
        for number in self.numbers():
            with contextlib.suppress(StoreError):  # a folder whose entry is not written yet
                entry = self.entry(number)
                pid = entry.get("pid")
                if entry.get("outcome") == "running" and entry.get("host") == host and isinstance(pid, int):
                    if not _process_alive(pid):
                        entry = {
                            **entry,
                            "outcome": "interrupted",
                            "error": entry.get("error") or f"the training process ({pid}) ended without a word",
                        }
                entries.append(entry)
        return entries

    def file(self, run: int, name: str) -> str | None:
        """The kept copy of ``name`` in run ``run``, or ``None`` when the run kept none."""
        path = os.path.join(self.run_path(run), os.path.basename(name))
        return path if os.path.isfile(path) else None

    def prune(self, keep: int, *, protect: Iterable[int] = ()) -> list[int]:
        """Remove the oldest runs beyond the newest ``keep`` (never those in ``protect``); return their numbers."""
        protected = set(protect)
        numbers = self.numbers()
        doomed = [number for number in numbers[: max(len(numbers) - keep, 0)] if number not in protected]
        for number in doomed:
            shutil.rmtree(self.run_path(number), ignore_errors=True)
        return doomed

    def _write_entry(self, run: int, entry: Mapping[str, Any]) -> None:
        path = os.path.join(self.run_path(run), ENTRY_NAME)
        payload = (json.dumps(dict(entry), ensure_ascii=False, indent=1, default=str) + "\n").encode("utf-8")
        try:
            fd, _ = write_atomic(path, payload)
        except OSError as exc:
            raise StoreWriteError(f"{path}: cannot write the run entry ({exc.strerror or exc}).", path=path) from exc
        os.close(fd)
