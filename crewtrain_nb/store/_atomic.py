"""Atomic, durable file replacement.

A store file is never written in place: the new content goes to a temporary
file in the same directory, which is flushed, fsynced and renamed over the old
one with ``os.replace`` (atomic on POSIX), then the directory is fsynced so the
rename itself survives a power cut. Readers see the old file or the new one,
never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import warnings
from collections.abc import Iterator
from typing import BinaryIO

__all__ = [
    "PRIVATE_MODE",
    "SHARED_MODE",
    "atomic_file",
    "fsync_directory",
    "sweep_stale_temps",
    "temp_prefix",
    "write_atomic",
    "write_file",
]

TEMP_SUFFIX = ".tmp"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def temp_prefix(path: str) -> str:
    """Return the name prefix of the temporary files written for ``path``."""
    return f".{os.path.basename(path)}."


def fsync_directory(directory: str) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: Permission bits of a new store, lock, version or audit log: its owner's only.
PRIVATE_MODE = 0o600
#: Permission bits asked for a new export or report, as ``open()`` asks: the umask then applies.
SHARED_MODE = 0o666


def _open_temp(path: str, mode: int) -> tuple[int, str]:
    """A new temporary file beside ``path``: its descriptor and name."""
    while True:
        temp_path = os.path.join(os.path.dirname(path), f"{temp_prefix(path)}{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            # The umask applies to ``mode``, as for any new file; O_EXCL never reuses a name.
            return os.open(temp_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode), temp_path
        except FileExistsError:
            continue
        except OSError as exc:
            raise _about(exc, path) from exc


def _about(exc: OSError, path: str) -> OSError:
    """``exc`` naming the file being replaced, not the temporary one (the user never named that)."""
    return type(exc)(exc.errno, exc.strerror, path) if exc.errno is not None else exc


class _Replacement:
    """A temporary file beside ``path`` that becomes ``path`` on :meth:`commit`, or vanishes on :meth:`abort`."""

    def __init__(self, path: str, mode: int) -> None:
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        self.path = path
        self.directory = os.path.dirname(path)
        try:
            old_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            old_mode = None
        self.fd, self.temp_path = _open_temp(path, mode)
        try:
            if old_mode is not None:
                os.fchmod(self.fd, old_mode)  # an existing file keeps its permission bits
        except BaseException:
            self.abort()
            raise

    def commit(self) -> None:
        try:
            os.fsync(self.fd)
            os.replace(self.temp_path, self.path)
        except OSError as exc:
            raise _about(exc, self.path) from exc
        try:
            fsync_directory(self.directory)
        except OSError as exc:
            # The new file is already in place and complete; only the durability
            # of the rename across a power cut is in doubt.
            warnings.warn(
                f"{self.path}: saved, but the directory could not be synced ({exc}); the change "
                "may not survive a power failure.",
                RuntimeWarning,
                stacklevel=4,
            )

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp_path)


def write_atomic(path: str, payload: bytes, *, mode: int = PRIVATE_MODE) -> tuple[int, os.stat_result]:
    """Replace ``path`` with ``payload`` atomically and durably.

    An existing file keeps its permission bits; a new one gets ``mode`` less
    the umask (:data:`PRIVATE_MODE`, owner only, for stores).

    Parameters
    ----------
    path
        Absolute path of the file to replace.
    payload
        The complete new content.
    mode
        Permission bits of a new file (the umask applies, as with ``open``).

    Returns
    -------
    tuple of (int, os.stat_result)
        An open descriptor of the new file and its ``fstat``. The
        caller owns the descriptor; holding it open keeps the inode from being
        reused, which makes ``(st_dev, st_ino)`` a safe cache key.

    Raises
    ------
    OSError
        Anything the file system reports before the rename. The old file is
        then unchanged and the temporary file is removed.
    """
    replacement = _Replacement(path, mode)
    try:
        view = memoryview(payload)
        while view:
            written = os.write(replacement.fd, view)
            view = view[written:]
        replacement.commit()
    except BaseException:
        replacement.abort()
        raise
    return replacement.fd, os.fstat(replacement.fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, mode: int = PRIVATE_MODE) -> Iterator[BinaryIO]:
    """A binary file to stream into that replaces ``path`` (as :func:`write_atomic`) when the block ends.

    If the block raises, ``path`` is unchanged and the temporary file removed.
    Exports and reports pass :data:`SHARED_MODE`: a new file then gets the
    permissions any file the user creates gets.
    """
    replacement = _Replacement(os.path.abspath(os.fspath(path)), mode)
    try:
        with open(replacement.fd, "wb", closefd=False) as file:
            yield file
        replacement.commit()
    except BaseException:
        replacement.abort()
        raise
    os.close(replacement.fd)


def sweep_stale_temps(path: str) -> int:
    """Remove temporary files left by writers of ``path`` that died mid-save.

    Call only while holding the store's lock: every writer holds it for the
    whole save, so any temporary file found then belongs to a dead process.

    Returns
    -------
    int
        How many files were removed.
    """
    prefix = temp_prefix(path)
    removed = 0
    try:
        entries = list(os.scandir(os.path.dirname(path)))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX):
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def write_file(path: str | os.PathLike[str], payload: bytes) -> None:
    """Replace ``path`` with ``payload`` atomically and durably (as :func:`write_atomic`), closing the file.

    For the files kept beside a store (run entries, sidecars, restored copies).

    Raises
    ------
    StoreWriteError
        The file system refused; the message names the file. The old file is unchanged.
    """
    from ..errors import StoreWriteError

    target = os.path.abspath(os.fspath(path))
    try:
        fd, _ = write_atomic(target, payload)
    except OSError as exc:
        raise StoreWriteError(
            f"{target}: cannot write it ({exc.strerror or exc}); check the folder is writable and the disk has room.",
            path=target,
        ) from exc
    os.close(fd)
