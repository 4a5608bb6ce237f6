"""Turn whatever a user passes as a *source* into the stored data, read-only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import StoreError
from ._remote import is_url, local_path_of, url_exists
from .handler import CrewTrainingHandler, PickleHandler

__all__ = ["Source", "as_handler", "open_source"]

#: What every frames/plots/browser function accepts as its data source.
Source = PickleHandler | str | os.PathLike | Mapping


def open_source(source: Any, *, trusted: bool = False) -> tuple[Any, str | None]:
    """Return ``(data, path)`` for a handler, a store path, or an in-memory mapping.

    The data is shared, not copied: callers must not mutate it. A path is
    opened through :class:`CrewTrainingHandler`, so safe loading applies.

    Parameters
    ----------
    source
        A :class:`PickleHandler`, a ``str``/``os.PathLike`` path of an existing
        store file (used exactly as given; also a ``file://`` or fsspec URL such as
        ``memory://runs/training_data.pkl``), or a mapping such as the dict
        ``load()`` returns.
    trusted
        Passed to the handler opened for a path.

    Raises
    ------
    StoreError
        A path that does not exist (with what to check).
    TypeError
        Anything else.
    """
    if isinstance(source, PickleHandler):
        return source.peek(), source.file_path
    if isinstance(source, (str, os.PathLike)):
        path = _path_or_url(source)
        if not _exists(path):
            raise StoreError(
                f"{path}: no such store file; check the path (CrewAI writes training_data.pkl "
                "and trained_agents_data.pkl in the directory where `crewai train` ran).",
                path=path,
            )
        handler = CrewTrainingHandler(path, trusted=trusted, add_suffix=False)
        try:
            return handler.peek(), path
        finally:
            handler.close()
    if isinstance(source, Mapping):
        return source, None
    raise TypeError(
        "source must be a CrewTrainingHandler, a path to a store file, or the dict a store holds; "
        f"got {type(source).__name__}"
    )


def as_handler(source: Any, *, trusted: bool = False) -> Any:
    """A long-lived reader for ``source``: the handler itself, a handler for a path, or the mapping as is.

    Keep the result and pass it to :func:`open_source` again to re-read cheaply:
    a handler returns the very same object while its file is unchanged.
    """
    if isinstance(source, (str, os.PathLike)):
        path = _path_or_url(source)
        if not _exists(path):
            open_source(path)  # raises the "no such store file" error
        return CrewTrainingHandler(path, trusted=trusted, add_suffix=False)
    return source


def _path_or_url(source: str | os.PathLike[str]) -> str:
    name = os.fspath(source)
    if is_url(name):
        return local_path_of(name) or name
    return os.path.abspath(name)


def _exists(path: str) -> bool:
    return url_exists(path) if is_url(path) else os.path.exists(path)
