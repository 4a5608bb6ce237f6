"""Turn whatever a user passes as a *source* into the stored data, read-only."""

from __future__ import annotations

import os
import weakref
from collections.abc import ItemsView, Iterable, Iterator, Mapping, ValuesView
from types import MappingProxyType
from typing import Any, TypeAlias

from ..errors import StoreFormatError, StoreNotFoundError
from ._agents import resolve_agents, stored_roles
from ._checks import check_file_name
from ._contract import TrainingStore
from ._remote import is_url, local_path_of, url_exists
from .handler import CrewTrainingHandler

__all__ = ["LazyEntry", "LazyStore", "Source", "as_handler", "missing_store", "open_source", "open_view"]

#: What every function that reads a store accepts (frames, plots, exports, the report, the browser, crewai's
#: logic): a handler of any backend, the path of a store file (``str`` or ``os.PathLike``, or an fsspec URL),
#: or the dict a store holds. :func:`open_source` is the one place that tells them apart.
Source: TypeAlias = TrainingStore | str | os.PathLike[str] | Mapping[Any, Any]


def open_source(
    source: Any, *, trusted: bool = False, agents: str | Iterable[str] | None = None
) -> tuple[Any, str | None]:
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
    agents
        The agents the caller will read. A store that ``supports_lazy_reads``
        (SQLite) then reads only their entries (``{agent: entry}``, nothing else
        is loaded); other sources come back whole, for the caller to select from.

    Raises
    ------
    StoreNotFoundError
        A path, or a handler's file, that does not exist (with what to check).
    ValueError
        ``agents`` names an agent a SQLite store does not have (listing those it has).
    TypeError
        Anything else.
    """
    if isinstance(source, TrainingStore) and not source.exists():
        # load() gives {} here, as CrewAI's handler does; a view says what is wrong instead of "empty".
        raise missing_store(source.file_path)
    if isinstance(source, TrainingStore) and source.supports_lazy_reads and agents is not None:
        return _read_agents(source, agents), source.file_path
    if isinstance(source, TrainingStore):
        return source.peek(), source.file_path
    if isinstance(source, (str, os.PathLike)):
        path = _path_or_url(source)
        if not _exists(path):
            raise missing_store(path)
        handler = CrewTrainingHandler(path, trusted=trusted, add_suffix=False)
        try:
            return open_source(handler, agents=agents)[0], path
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
    a handler returns the very same object while its file is unchanged. A path
    need not exist yet: :func:`open_source` says so until it does.
    """
    if isinstance(source, (str, os.PathLike)):
        return CrewTrainingHandler(_path_or_url(source), trusted=trusted, add_suffix=False)
    return source


def missing_store(path: str) -> StoreNotFoundError:
    """The error for a store file that does not exist."""
    return StoreNotFoundError(
        f"no such file: {path}; check the path (CrewAI writes training_data.pkl and trained_agents_data.pkl "
        "in the directory where `crewai train` ran).",
        path=path,
    )


def _path_or_url(source: str | os.PathLike[str]) -> str:
    name = check_file_name(source, example="training_data.pkl")
    if is_url(name):
        return local_path_of(name) or name
    return os.path.abspath(name)


def _exists(path: str) -> bool:
    return url_exists(path) if is_url(path) else os.path.exists(path)


def _read_agents(handler: TrainingStore, agents: str | Iterable[str]) -> dict[Any, Any]:
    """The named agents' entries only, each name resolved (id, role, id prefix) as everywhere.

    In store order, as a whole store reads, whatever order ``agents`` names them in.
    """
    known = handler.agents()
    chosen = resolve_agents(known, agents, roles=lambda: stored_roles(handler, known), path=handler.file_path)
    wanted = set((chosen or {}).values())
    return {agent: handler.entry(agent) for agent in known if agent in wanted}


class LazyEntry(Mapping[int, Any]):
    """One agent's iterations, read on demand: ``iteration -> record``.

    The iteration numbers are listed up front (no record is unpickled). The
    first record asked for is fetched alone (``get``); asking for the values,
    the items or a second record reads the agent's records once and keeps them.
    """

    def __init__(self, handler: TrainingStore, agent: str, iterations: list[int]) -> None:
        self._handler = handler
        self._agent = agent
        self._keys = iterations
        self._known = frozenset(iterations)
        self._single: dict[int, Any] = {}
        self._whole: dict[int, Any] | None = None

    def _read_whole(self) -> dict[int, Any]:
        if self._whole is None:
            self._whole = self._handler.entry(self._agent)
        return self._whole

    def __getitem__(self, iteration: Any) -> Any:
        if iteration not in self._known:
            raise KeyError(iteration)
        if self._whole is not None:
            return self._whole[iteration]
        if iteration in self._single:
            return self._single[iteration]
        if self._single:
            return self._read_whole()[iteration]
        record = self._single[iteration] = self._handler.get(self._agent, iteration)
        return record

    def __contains__(self, iteration: object) -> bool:
        return iteration in self._known

    def __iter__(self) -> Iterator[int]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def values(self) -> ValuesView[Any]:
        return self._read_whole().values()

    def items(self) -> ItemsView[int, Any]:
        return self._read_whole().items()


class LazyStore(Mapping[Any, Any]):
    """A read-only ``agent -> entry`` view of a SQLite store that reads an agent only when asked.

    The agent list is read when the view is made; each entry on first access
    (iterations as a :class:`LazyEntry`, other entries whole) and kept. Make a
    new view (:func:`open_view`) to see later changes.
    """

    def __init__(self, handler: TrainingStore) -> None:
        self._handler = handler
        self._agents = handler.agents()
        self._known = set(self._agents)
        self._entries: dict[Any, Any] = {}

    def __getitem__(self, agent: Any) -> Any:
        if agent not in self._known:
            raise KeyError(agent)
        if agent not in self._entries:
            if not isinstance(agent, str):  # only load() reaches a non-str key (never in CrewAI stores)
                self._entries[agent] = self._handler.peek()[agent]
            else:
                try:
                    self._entries[agent] = LazyEntry(self._handler, agent, self._handler.iterations(agent))
                except StoreFormatError:  # not iterations: a trained agent or another value, read whole
                    self._entries[agent] = self._handler.entry(agent)
        return self._entries[agent]

    def __contains__(self, agent: object) -> bool:
        return agent in self._known

    def __iter__(self) -> Iterator[Any]:
        return iter(self._agents)

    def __len__(self) -> int:
        return len(self._agents)


#: handler -> (change token, lazy view)
_VIEWS: weakref.WeakKeyDictionary[TrainingStore, tuple[Any, LazyStore]] = weakref.WeakKeyDictionary()
#: handler -> (change token, snapshot, read-only view of it)
_PICKLE_VIEWS: weakref.WeakKeyDictionary[TrainingStore, tuple[Any, Any, Any]] = weakref.WeakKeyDictionary()


def open_view(source: Any, *, trusted: bool = False) -> tuple[Any, str | None]:
    """Like :func:`open_source`, but a store that ``supports_lazy_reads`` (SQLite) comes back as a :class:`LazyStore`.

    For a long-lived reader (the browser): the same view object is returned
    while the store is unchanged (its :meth:`~TrainingStore.change_token`), so
    ``is`` tells whether to redraw, and an agent of a SQLite store is read only
    when it is looked at. A pickle handler's snapshot comes back as a read-only
    mapping, new after every write (also by that same handler). Other sources:
    as :func:`open_source`.
    """
    if isinstance(source, TrainingStore) and not source.exists():
        raise missing_store(source.file_path)
    if isinstance(source, TrainingStore) and not source.supports_lazy_reads:
        return _pickle_view(source), source.file_path
    if not isinstance(source, TrainingStore):
        return open_source(source, trusted=trusted)
    version = source.change_token()
    cached = _VIEWS.get(source)
    if cached is not None and cached[0] == version:
        return cached[1], source.file_path
    view = LazyStore(source)
    _VIEWS[source] = (version, view)
    return view, source.file_path


def _pickle_view(handler: TrainingStore) -> Any:
    """A read-only view of the handler's snapshot, new whenever the store changed.

    The handler's own ``append`` updates its cached snapshot in place (that is
    what keeps appends cheap), so the snapshot object alone cannot tell a reader
    that the store changed: the change token can, and a new view object is
    returned when it differs. The token is taken before the read, so a change
    between the two makes at worst one more new view, never a stale one.
    """
    identity = handler.change_token()
    data = handler.peek()
    cached = _PICKLE_VIEWS.get(handler)
    if cached is not None and cached[0] == identity and cached[1] is data:
        return cached[2]
    view = MappingProxyType(data) if isinstance(data, dict) else data
    _PICKLE_VIEWS[handler] = (identity, data, view)
    return view
