"""Stores behind a URL, through fsspec: ``memory://``, ``s3://``, ``gcs://``, ... (``file://`` stays local).

``file://`` URLs are mapped to local paths, so they keep every local guarantee.
Any other URL goes through the fsspec filesystem registered for its scheme
(``pip install 'crewtrain-nb[remote]'`` plus the filesystem's own package,
e.g. ``s3fs``). There the whole file is written to a temporary name and moved
over the store with ``fs.mv``, but whether that move is atomic, and whether two
*processes* can be kept from interleaving their read-modify-writes, depends
on the filesystem: crewtrain_nb only serialises writers inside one process, and
says so with a :class:`~crewtrain_nb.RemoteStoreWarning`.
"""

from __future__ import annotations

import contextlib
import re
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

from ..errors import RemoteStoreWarning, StoreError, StoreWriteError

__all__ = ["RemoteFile", "RemoteStoreWarning", "is_url", "local_path_of", "url_exists"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# One lock per URL for the whole process: handlers of the same URL in
# different threads do not interleave their read-modify-writes.
_PROCESS_LOCKS: dict[str, threading.RLock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def is_url(name: str) -> bool:
    """``True`` for ``scheme://...`` names (including ``file://``)."""
    return _SCHEME.match(name) is not None


def local_path_of(name: str) -> str | None:
    """The local path of a ``file://`` URL, ``None`` for any other name.

    Raises
    ------
    ValueError
        A ``file://`` URL naming another host.
    """
    match = _SCHEME.match(name)
    if match is None or match.group(1).lower() != "file":
        return None
    parts = urllib.parse.urlsplit(name)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{name}: a file:// URL must name a local path (file:///path), not the host {parts.netloc!r}")
    return urllib.parse.unquote(parts.path)


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(
            "Stores behind a URL need fsspec: pip install 'crewtrain-nb[remote]' "
            "(plus the filesystem's package, e.g. s3fs for s3://)."
        ) from exc
    return fsspec


def url_exists(url: str) -> bool:
    """Whether the file behind ``url`` exists (``file://`` URLs included)."""
    local = local_path_of(url)
    if local is not None:
        import os

        return os.path.exists(local)
    return RemoteFile(url).exists()


class RemoteFile:
    """Whole-file reads and writes of one store on an fsspec filesystem."""

    def __init__(self, url: str) -> None:
        fsspec = _fsspec()
        try:
            self.fs, self.path = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            raise StoreError(
                f"{url}: no usable fsspec filesystem for this URL ({exc}); install the package for its scheme.",
                path=url,
            ) from exc
        self.url = url
        with _PROCESS_LOCKS_GUARD:
            self._lock = _PROCESS_LOCKS.setdefault(url, threading.RLock())

    warning_text = (
        "is on an fsspec filesystem: atomic replacement and cross-process locking are not guaranteed "
        "there (writers are serialised within this process only). Do not write to it from several "
        "processes at once; keep backups elsewhere."
    )

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this process's lock for the URL."""
        with self._lock:
            yield

    def exists(self) -> bool:
        """Whether the store file exists."""
        try:
            return bool(self.fs.exists(self.path))
        except Exception as exc:  # filesystems raise their own error types (botocore, aiohttp, ...)
            raise StoreError(
                f"{self.url}: cannot reach the store ({type(exc).__name__}: {exc}).", path=self.url
            ) from exc

    def read(self) -> bytes | None:
        """The whole file, or ``None`` when it does not exist."""
        try:
            with self.fs.open(self.path, "rb") as file:
                return bytes(file.read())
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise StoreError(
                f"{self.url}: cannot read ({type(exc).__name__}: {exc}); check the URL and your access.",
                path=self.url,
            ) from exc

    def write(self, payload: bytes) -> None:
        """Write the whole file: to a temporary name, then ``fs.mv`` over the store.

        Raises
        ------
        StoreWriteError
            The filesystem failed; the temporary file is removed (best effort).
        """
        parent, _, name = self.path.rpartition("/")
        temp = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
        try:
            with self.fs.open(temp, "wb") as file:
                file.write(payload)
            self.fs.mv(temp, self.path)
        except Exception as exc:
            with contextlib.suppress(Exception):
                if self.fs.exists(temp):
                    self.fs.rm(temp)
            raise StoreWriteError(
                f"{self.url}: saving failed ({type(exc).__name__}: {exc}); the store may hold the old "
                "or the new content, depending on the filesystem.",
                path=self.url,
            ) from exc
