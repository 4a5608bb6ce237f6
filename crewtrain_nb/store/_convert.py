"""Copy a store from one backend to the other (``.pkl`` <-> ``.db``), losslessly."""

from __future__ import annotations

import os
from typing import Any

from ..errors import StoreError
from .handler import CrewTrainingHandler

__all__ = ["convert"]


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    trusted: bool = False,
) -> str:
    """Write the store ``src`` to ``dst``; the backend of each is chosen by its suffix.

    ``.db``, ``.sqlite`` and ``.sqlite3`` are SQLite stores, any other name a
    pickle store. Every agent, iteration and value comes across as it is
    (int iteration keys, agent order, numpy arrays, records without
    ``improved_output``); ``src`` is only read. The write is one atomic save:
    a failure leaves ``dst`` as it was.

    Parameters
    ----------
    src
        An existing store file.
    dst
        The file to write.
    overwrite
        Replace ``dst`` if it exists; by default an existing ``dst`` is refused.
    trusted
        Unpickle ``src`` with the full unpickler (only for files you trust).

    Returns
    -------
    str
        The absolute path of ``dst``.

    Raises
    ------
    StoreError
        ``src`` does not exist, ``dst`` exists (without ``overwrite``), or
        both name the same file; or any error reading ``src`` or writing ``dst``.

    Examples
    --------
    >>> import tempfile, os
    >>> from crewtrain_nb import CrewTrainingHandler, convert
    >>> folder = tempfile.mkdtemp()
    >>> CrewTrainingHandler(os.path.join(folder, "training_data.pkl")).append(0, "agent-a", {"loss": 0.5})
    >>> db = convert(os.path.join(folder, "training_data.pkl"), os.path.join(folder, "training_data.db"))
    >>> CrewTrainingHandler(db).get("agent-a", 0)
    {'loss': 0.5}
    """
    source_path = os.path.abspath(os.fspath(src))
    target_path = os.path.abspath(os.fspath(dst))
    if not os.path.isfile(source_path):
        what = "is not a file" if os.path.exists(source_path) else "no such store file"
        raise StoreError(f"{source_path}: {what}; give the path of an existing store to convert.", path=source_path)
    if os.path.exists(target_path):
        if os.path.samefile(source_path, target_path):
            raise StoreError(f"{target_path}: source and destination are the same file.", path=target_path)
        if not overwrite:
            raise StoreError(
                f"{target_path}: already exists; choose another name or pass overwrite=True to replace it.",
                path=target_path,
            )
    source = CrewTrainingHandler(source_path, trusted=trusted, add_suffix=False)
    target = CrewTrainingHandler(target_path, add_suffix=False)
    try:
        data: Any = source.peek()
        target.save(data)
    finally:
        source.close()
        target.close()
    return target_path
