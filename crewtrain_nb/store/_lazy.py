"""Lazy access to a store: one agent, one record, or a stream of records at a time.

Both backends offer the same read API (part of the store contract,
:class:`~crewtrain_nb.store._contract.TrainingStore`): ``agents()``,
``iterations(agent_id)``, ``get(agent_id, iteration)``, ``entry(agent_id)``,
``records(agent_id=None)``, ``len()`` and ``stats()``. :class:`LazyAccess`
answers them from ``peek()``, the cached snapshot of the pickle handler (a
pickle has to be read whole once); the SQLite handler answers each call with
a query and never reads the whole store. This module also holds the checks and
messages both backends' reads share.

What counts as *records*: an agent entry that is a plain ``dict`` whose keys
are all ``int`` (64-bit) holds iterations, and each of its items is a record.
Other entries (``trained_agents_data.pkl``'s ``{"suggestions", "quality",
"final_summary"}`` dicts, or any other value ``save`` was given) are reached
with ``entry()`` and count as agents, not records.
"""

from __future__ import annotations

import datetime
import numbers
import os
from collections.abc import Iterable, Iterator, Sized
from typing import Any, TypeGuard

from ..errors import StoreFormatError
from ._checks import INT64_MAX, INT64_MIN, check_agent_id
from ._contract import StoreStats, TrainingStore
from ._copy import copy_plain

__all__ = ["LazyAccess", "StoreStats", "is_iteration_entry"]

#: How many names an error message lists before it says how many there are in all.
_LISTED = 10


def is_iteration_entry(entry: Any) -> TypeGuard[dict[int, Any]]:
    """Whether an agent entry is a dict of iterations: a plain ``dict`` with 64-bit ``int`` keys (or empty)."""
    return type(entry) is dict and all(type(key) is int and INT64_MIN <= key <= INT64_MAX for key in entry)


def describe(keys: Iterable[Any], total: int | None = None) -> str:
    """``'a', 'b', 'c'`` or ``'a', 'b', ... (1,234 in all)`` for error messages; ``none`` when empty."""
    listed: list[str] = []
    for key in keys:
        if len(listed) == _LISTED:
            break
        listed.append(repr(key))
    if not listed:
        return "none"
    text = ", ".join(listed)
    if total is not None and total > len(listed):
        text += f", ... ({total:,} in all)"
    return text


class MissingKeyError(KeyError):
    """A ``KeyError`` whose message prints as written (``KeyError`` itself shows the repr of its argument)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def unknown_agent_message(name: Any, known: Iterable[Any], *, path: str | None = None, total: int | None = None) -> str:
    """The one message for a name that is no agent of the store (views, browser, CLI, handlers), listing its ids."""
    if total is None and isinstance(known, Sized):
        total = len(known)
    has = describe(known, total)
    where = path or "the store"
    return f"no agent {name!r} in {where}; " + ("it has no agents" if has == "none" else f"its agents are {has}")


def unknown_agent(path: str, agent: Any, agents: Iterable[Any], total: int) -> KeyError:
    return MissingKeyError(unknown_agent_message(agent, agents, path=path, total=total))


def unknown_iteration(path: str, agent: Any, iteration: Any, iterations: Iterable[Any], total: int) -> KeyError:
    return MissingKeyError(
        f"{path}: agent {agent!r} has no iteration {iteration!r}; it has {describe(iterations, total)}"
    )


def not_iterations(path: str, agent: Any, entry: Any) -> StoreFormatError:
    what = "a dict whose keys are not all ints" if isinstance(entry, dict) else f"a {type(entry).__name__}"
    return StoreFormatError(
        f"{path}: agent {agent!r} holds {what}, not a dict of iterations (a trained-agents entry?); "
        "read it with entry(agent_id).",
        path=path,
    )


def check_agent_key(agent_id: object) -> str:
    """The same check (and message) as writes use: a non-empty ``str``."""
    return check_agent_id(agent_id)


def check_iteration_key(iteration: object) -> int:
    """An iteration to look up: an ``int`` (not ``bool``); absent ones raise ``KeyError`` later."""
    if isinstance(iteration, bool) or not isinstance(iteration, numbers.Integral):
        raise TypeError(f"iteration must be an int, got {type(iteration).__name__}: {iteration!r}")
    return int(iteration)


def utc_time(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


class LazyAccess(TrainingStore):
    """The contract's lazy read API answered from :meth:`peek`: the whole store, read once.

    For a backend that has to read its file whole (the pickle handler): the
    snapshot is cached while the file is unchanged, so after the first call
    every lookup is a dict lookup. Returned values are copies: mutating them
    never changes the store or the cache. Uses only the contract's public API.
    """

    supports_lazy_reads = False

    def _store_dict(self) -> dict[Any, Any]:
        data = self.peek()
        if not isinstance(data, dict):
            raise StoreFormatError(
                f"{self.file_path}: holds a {type(data).__name__}, not a dict of agents; use load() to read it.",
                path=self.file_path,
            )
        return data

    def _entry_of(self, agent_id: object) -> Any:
        agent = check_agent_key(agent_id)
        data = self._store_dict()
        if agent not in data:
            raise unknown_agent(self.file_path, agent, data, len(data))
        return data[agent]

    def _iterations_of(self, agent_id: object) -> dict[int, Any]:
        entry = self._entry_of(agent_id)
        if not is_iteration_entry(entry):
            raise not_iterations(self.file_path, agent_id, entry)
        return entry

    def agents(self) -> list[Any]:
        """The store's agent ids (top-level keys), in stored order."""
        return list(self._store_dict())

    def iterations(self, agent_id: str) -> list[int]:
        """The iterations of ``agent_id``, in stored order.

        Raises
        ------
        KeyError
            No such agent (the message lists the agents there are).
        StoreFormatError
            The agent's entry is not a dict of iterations.
        """
        return list(self._iterations_of(agent_id))

    def get(self, agent_id: str, iteration: int) -> Any:
        """One record: ``load()[agent_id][iteration]``, without copying the rest.

        Raises
        ------
        KeyError
            No such agent or iteration (the message lists those there are).
        """
        number = check_iteration_key(iteration)
        entry = self._iterations_of(agent_id)
        if number not in entry:
            raise unknown_iteration(self.file_path, agent_id, number, entry, len(entry))
        return copy_plain(entry[number])

    def entry(self, agent_id: str) -> Any:
        """The whole entry of ``agent_id``: its iterations dict, or the value stored for it (e.g. a trained agent)."""
        return copy_plain(self._entry_of(agent_id))

    def records(self, agent_id: str | None = None) -> Iterator[tuple[Any, int, Any]]:
        """``(agent_id, iteration, record)`` for one agent, or for every agent that has iterations.

        Records come in stored order. Entries that are not iterations (trained
        agents) are skipped when ``agent_id`` is ``None``.
        """
        if agent_id is not None:
            chosen = [(agent_id, self._iterations_of(agent_id))]
        else:
            chosen = [(agent, entry) for agent, entry in self._store_dict().items() if is_iteration_entry(entry)]
        return self._iterate(chosen)

    @staticmethod
    def _iterate(chosen: list[tuple[Any, dict[int, Any]]]) -> Iterator[tuple[Any, int, Any]]:
        # The items are listed up front: a later append in place must not break the iteration.
        for agent, entry in chosen:
            for iteration, record in list(entry.items()):
                yield agent, iteration, copy_plain(record)

    def __len__(self) -> int:
        """Number of ``(agent, iteration)`` records."""
        return sum(len(entry) for entry in self._store_dict().values() if is_iteration_entry(entry))

    def stats(self) -> StoreStats:
        """Records, agents, bytes on disk and last change of the store.

        Examples
        --------
        >>> import tempfile, os
        >>> from crewtrain_nb import CrewTrainingHandler
        >>> handler = CrewTrainingHandler(os.path.join(tempfile.mkdtemp(), "run"))
        >>> handler.append(0, "agent-a", {"loss": 0.5})
        >>> stats = handler.stats()
        >>> stats.records, stats.agents, stats.bytes > 0, stats.changed.tzname()
        (1, 1, True, 'UTC')
        """
        data = self.peek()
        records = len(self) if isinstance(data, dict) else 0
        agents = len(data) if isinstance(data, dict) else 0
        try:
            st = os.stat(self.file_path)
        except FileNotFoundError:
            return StoreStats(records, agents, 0, None)
        return StoreStats(records, agents, st.st_size, utc_time(st.st_mtime))
