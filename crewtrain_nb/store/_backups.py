"""Previous versions of a store file, kept in ``<store>.versions/``.

Each save with ``backups=N`` first hard-links the current file into the folder
as ``<id>-<store name>`` (ids count up and are never reused), then the handler
replaces the store atomically, then the oldest versions beyond ``N`` are
removed. The order matters for crashes: the current file is linked *before*
it is replaced, so a crash at any point leaves the store itself either old or
new and, at worst, one extra version in the folder; never a lost current file.

A hard link costs no copy: the store is replaced by rename, so the old inode
lives on as the backup. Where links are not supported the file is copied with
the store's one atomic writer (``_atomic.write_atomic``: fsynced, then renamed
into place, owner-only).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

from ._atomic import PRIVATE_MODE, TEMP_SUFFIX, fsync_directory, write_atomic

__all__ = [
    "StoreVersion",
    "discard_version",
    "find_version",
    "finish_rotation",
    "list_versions",
    "link_current",
    "versions_dir",
]

_ID_WIDTH = 6
#: What a copy that died mid-way left, before the copies went through ``write_atomic``.
_OLD_COPY_SUFFIX = ".partial"


@dataclass(frozen=True)
class StoreVersion:
    """One previous version of a store.

    Attributes
    ----------
    id
        The version's number; higher is newer. Stable: it does not change
        when later versions are added or old ones pruned.
    time
        When that version was written (the file's modification time), UTC.
    size
        Its size on disk in bytes.
    path
        The backup file.
    """

    id: int
    time: datetime.datetime
    size: int
    path: str


def versions_dir(store_path: str) -> str:
    """The folder holding the versions of ``store_path``."""
    return store_path + ".versions"


def _parse_id(name: str, store_name: str) -> int | None:
    number, sep, rest = name.partition("-")
    if not sep or rest != store_name or not number.isdigit():
        return None
    return int(number)


def list_versions(store_path: str) -> list[StoreVersion]:
    """The versions of ``store_path``, newest first (an empty list when there are none)."""
    folder = versions_dir(store_path)
    store_name = os.path.basename(store_path)
    found: list[StoreVersion] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        number = _parse_id(entry.name, store_name)
        if number is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # pruned meanwhile by another process
        time = datetime.datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=datetime.timezone.utc)
        found.append(StoreVersion(number, time, st.st_size, entry.path))
    found.sort(key=lambda version: version.id, reverse=True)
    return found


def find_version(store_path: str, version: int | str | StoreVersion) -> StoreVersion | None:
    """The version with the id of ``version`` (an int, its text, or a :class:`StoreVersion`), or ``None``."""
    if isinstance(version, StoreVersion):
        wanted: object = version.id
    elif isinstance(version, str) and version.strip().isdigit():
        wanted = int(version)
    else:
        wanted = version
    for candidate in list_versions(store_path):
        if candidate.id == wanted and not isinstance(wanted, bool):
            return candidate
    return None


def _copy_into(source: str, target: str) -> None:
    """Copy ``source`` to ``target`` (owner-only), durably, appearing whole or not at all."""
    with open(source, "rb") as reader:
        content = reader.read()
    fd, _ = write_atomic(target, content, mode=PRIVATE_MODE)
    os.close(fd)
    # The copy keeps the version's time, as a hard link would.
    st = os.stat(source)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))


def _is_leftover(name: str) -> bool:
    """A temporary file left by a dead copy: ``write_atomic``'s ``.<name>.<random>.tmp``, or an old ``.partial``."""
    return (name.startswith(".") and name.endswith(TEMP_SUFFIX)) or name.endswith(_OLD_COPY_SUFFIX)


def link_current(store_path: str) -> str | None:
    """Make the current store file the newest version; call under the store's lock, before replacing it.

    Returns
    -------
    str or None
        The new version's path, or ``None`` when there is no current file.

    Raises
    ------
    OSError
        The folder or the version could not be made; nothing was changed
        that matters (the store is untouched; at most an empty folder exists).
    """
    if not os.path.isfile(store_path):
        return None
    folder = versions_dir(store_path)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    existing = list_versions(store_path)
    number = existing[0].id + 1 if existing else 1
    target = os.path.join(folder, f"{number:0{_ID_WIDTH}d}-{os.path.basename(store_path)}")
    for leftover in os.scandir(folder):
        if _is_leftover(leftover.name):
            with contextlib.suppress(OSError):
                os.unlink(leftover.path)  # a copy that died mid-way (we hold the lock)
    try:
        os.link(store_path, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError:
        # No hard links here (some network and FUSE file systems): copy instead.
        _copy_into(store_path, target)
    fsync_directory(folder)
    return target


def discard_version(path: str) -> None:
    """Undo :func:`link_current` after the store could not be replaced (best effort)."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def finish_rotation(store_path: str, new_version: str, *, keep: int | None) -> None:
    """After the store was replaced: make ``new_version`` owner-only and keep only the newest ``keep``.

    Failures here are ignored: the save itself succeeded, and a version that
    could not be pruned now is pruned by the next rotation.
    """
    # Only now is the old inode no longer the store's, so the chmod cannot
    # change the mode of the live file.
    with contextlib.suppress(OSError):
        os.chmod(new_version, 0o600)
    if keep is None:
        return
    for old in list_versions(store_path)[keep:]:
        with contextlib.suppress(OSError):
            os.unlink(old.path)
