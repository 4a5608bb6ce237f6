"""Atomic, durable file replacement.

A store file is never written in place: the new content goes to a temporary
file in the same directory, which is flushed, fsynced and renamed over the old
one with ``os.replace`` (atomic on POSIX), then the directory is fsynced so the
rename itself survives a power cut. Readers see the old file or the new one,
never a mix.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import warnings

__all__ = ["fsync_directory", "sweep_stale_temps", "temp_prefix", "write_atomic", "write_file"]

TEMP_SUFFIX = ".tmp"


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


def write_atomic(path: str, payload: bytes) -> tuple[int, os.stat_result]:
    """Replace ``path`` with ``payload`` atomically and durably.

    A new file is created readable by its owner only (``0600``); an existing
    file keeps its permission bits.

    Parameters
    ----------
    path
        Absolute path of the file to replace.
    payload
        The complete new content.

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
    directory = os.path.dirname(path)
    try:
        old_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        old_mode = None
    fd, temp_path = tempfile.mkstemp(prefix=temp_prefix(path), suffix=TEMP_SUFFIX, dir=directory)
    try:
        if old_mode is not None:
            os.fchmod(fd, old_mode)
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        os.replace(temp_path, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise
    try:
        fsync_directory(directory)
    except OSError as exc:
        # The new file is already in place and complete; only the durability
        # of the rename across a power cut is in doubt.
        warnings.warn(
            f"{path}: saved, but the directory could not be synced ({exc}); the change "
            "may not survive a power failure.",
            RuntimeWarning,
            stacklevel=3,
        )
    return fd, os.fstat(fd)


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
