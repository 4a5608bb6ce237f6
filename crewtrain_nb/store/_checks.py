"""Argument and file checks shared by both store backends (pickle and SQLite), so both refuse alike."""

from __future__ import annotations

import numbers
import os
import stat

from ..errors import StoreWriteError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_ITERATION",
    "check_agent_id",
    "check_file_name",
    "check_iteration",
    "check_lock_timeout",
    "check_writable",
]


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
