"""Argument and file checks and suffix rules shared by both store backends (pickle and SQLite).

Every module of the store imports its checks from here, so both backends refuse alike and name files alike.
"""

from __future__ import annotations

import numbers
import os
import stat

from ..errors import StoreWriteError
from ._codec import COMPRESSED_SUFFIXES
from ._remote import is_url, local_path_of

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ITERATION",
    "PICKLE_SUFFIXES",
    "SQLITE_SUFFIXES",
    "check_agent_id",
    "check_backups",
    "check_file_name",
    "check_iteration",
    "check_lock_timeout",
    "check_max_decompressed_size",
    "check_read_retry_timeout",
    "check_writable",
    "is_sqlite_name",
    "resolve_store_path",
]

#: Pickle store names ending with one of these are used as given; any other name gets ``.pkl`` appended.
PICKLE_SUFFIXES: tuple[str, ...] = (".pkl", *COMPRESSED_SUFFIXES)
#: Names that open the SQLite backend (compared ignoring case).
SQLITE_SUFFIXES: tuple[str, ...] = (".db", ".sqlite", ".sqlite3")


def is_sqlite_name(file_name: object) -> bool:
    """Whether ``file_name`` (a ``str`` or path) names a SQLite store: it ends with one of :data:`SQLITE_SUFFIXES`."""
    if not isinstance(file_name, (str, os.PathLike)):
        return False
    name = os.fspath(file_name)
    return isinstance(name, str) and name.lower().endswith(SQLITE_SUFFIXES)


def resolve_store_path(
    name: str, *, suffixes: tuple[str, ...], default_suffix: str, add_suffix: bool, ignore_case: bool = False
) -> tuple[str, bool]:
    """``(path, is_remote)`` of a checked store name: the one path rule of both backends.

    A ``file://`` URL becomes its local path; ``default_suffix`` is appended
    when ``add_suffix`` and the name ends with none of ``suffixes`` (compared
    ignoring case when ``ignore_case``); a local name resolves against the
    current directory, an fsspec URL is kept as given.
    """
    name = local_path_of(name) or name
    remote = is_url(name)
    if add_suffix and not (name.lower() if ignore_case else name).endswith(suffixes):
        name += default_suffix
    return (name if remote else os.path.abspath(os.path.join(os.getcwd(), name))), remote


def check_file_name(file_name: object, *, example: str) -> str:
    name = os.fspath(file_name) if isinstance(file_name, (str, os.PathLike)) else None
    if not isinstance(name, str):
        raise TypeError(f"file_name must be a str or os.PathLike of str, got {type(file_name).__name__}")
    if not name:
        raise ValueError(f"file_name is empty; give the store's file name, e.g. {example!r}")
    return name


def check_lock_timeout(lock_timeout: object) -> None:
    if not isinstance(lock_timeout, numbers.Real) or lock_timeout < 0:
        raise ValueError(f"lock_timeout must be a number of seconds >= 0, got {lock_timeout!r}")


def check_read_retry_timeout(read_retry_timeout: object) -> float:
    if isinstance(read_retry_timeout, numbers.Real):
        seconds = float(read_retry_timeout)
        if 0 <= seconds < float("inf"):
            return seconds
    raise ValueError(f"read_retry_timeout must be a number of seconds >= 0, got {read_retry_timeout!r}")


def check_max_decompressed_size(max_decompressed_size: object) -> int:
    if isinstance(max_decompressed_size, bool) or not isinstance(max_decompressed_size, numbers.Integral):
        raise TypeError(f"max_decompressed_size must be an int of bytes, got {max_decompressed_size!r}")
    return int(max_decompressed_size)


def check_backups(backups: object) -> int:
    if isinstance(backups, bool) or not isinstance(backups, numbers.Integral) or backups < 0:
        raise ValueError(f"backups must be an int >= 0 (how many previous versions to keep), got {backups!r}")
    return int(backups)


def check_agent_id(agent_id: object) -> str:
    if not isinstance(agent_id, str):
        raise TypeError(
            f"agent_id must be a str (e.g. str(agent.id)), got {type(agent_id).__name__}: {agent_id!r}. "
            "CrewAI's own handler would store it as given (CrewAI itself always passes str(agent.id)), but "
            "such a key makes the file unreadable to safe loading and the frames; pass str(agent_id)."
        )
    if not agent_id:
        raise ValueError("agent_id must be a non-empty str, got ''")
    return agent_id


#: What an int64 holds: frames, exports and SQLite keep iterations as int64.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
#: The largest iteration a store takes.
MAX_ITERATION = INT64_MAX


def check_iteration(train_iteration: object) -> int:
    if type(train_iteration) is int and 0 <= train_iteration <= MAX_ITERATION:
        return train_iteration  # the common case, checked first: append is a hot path
    if isinstance(train_iteration, bool) or not isinstance(train_iteration, numbers.Integral):
        raise TypeError(
            f"train_iteration must be an int, got {type(train_iteration).__name__}: {train_iteration!r}. "
            "CrewAI's own handler would store it as given (CrewAI itself always passes an int), but iterations "
            "are sorted, plotted and diffed as ints; pass int(train_iteration)."
        )
    # Compare as a Python int: numpy < 2 compares a uint64 with a Python int as float64, where 2**63 == 2**63 - 1.
    value = int(train_iteration)
    if value < 0:
        raise ValueError(f"train_iteration must be >= 0, got {value}")
    if value > MAX_ITERATION:
        raise ValueError(
            f"train_iteration must be at most 2**63 - 1 (an int64, as frames, exports and SQLite store it), "
            f"got {value}; CrewAI counts iterations from 0 one by one."
        )
    return value


def check_writable(path: str) -> None:
    """Refuse to replace a store file this process may not write itself (e.g. a ``0444`` file).

    An atomic save renames a new file over the old one, which needs only the
    directory's permission: without this check a read-only store would be
    replaced silently. The test is :func:`os.access`, the one a plain
    ``open(path, "wb")`` passes or fails (root passes it, as with ``open``).
    A missing file, or one that is not a regular file, is left to the write.

    Raises
    ------
    StoreWriteError
        Naming the file and its mode.
    """
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and not os.access(path, os.W_OK):
        raise StoreWriteError(
            f"{path}: this process may not write the file (mode {stat.S_IMODE(st.st_mode):04o}, "
            f"{stat.filemode(st.st_mode)}); the store is unchanged. Make it writable (chmod u+w) "
            "to write to it, or write to a copy.",
            path=path,
        )
