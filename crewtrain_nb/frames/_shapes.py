"""Source shapes: a source opened once and checked to be one kind of store, and its records in row order."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..crewai.files import TRAINED_KEYS
from ..errors import StoreFormatError
from ..store import MAX_ITERATION, Source, open_source, record_roles, resolve_agents
from ._leaves import is_integer_type

StoreKind = Literal["iterations", "trained_agents", "empty"]

STORE_SHAPES = (
    "{agent: {iteration(int): record}} (training_data.pkl, metric logs) or "
    "{role: {'suggestions', 'quality', 'final_summary'}} (trained_agents_data.pkl)"
)


# -- reading and checking a source ------------------------------------------------


@dataclass(frozen=True)
class OpenStore:
    """A source opened and checked once: its data (shared, never mutate it), file path and kind."""

    data: Mapping[Any, Any]
    path: str | None
    kind: StoreKind


def path_prefix(path: str | None) -> str:
    return f"{path}: " if path else ""


def _fail(path: str | None, message: str) -> StoreFormatError:
    return StoreFormatError(path_prefix(path) + message, path=path)


def _entry_kind(agent: Any, entry: Mapping[Any, Any], path: str | None) -> StoreKind:
    """``"iterations"`` or ``"trained_agents"`` for one non-empty agent entry, else a clear error."""
    kinds = set(map(type, entry))
    if kinds <= {int} or all(is_integer_type(kind) for kind in kinds):
        for step in (min(entry), max(entry)):  # frames hold iterations as int64, as SQLite does
            if not -(2**63) <= step <= MAX_ITERATION:
                raise _fail(
                    path,
                    f"agent {agent!r}, iteration {step}: the key is beyond what an int64 holds (iterations "
                    "count from 0; crewtrain_nb's append refuses such keys). Renumber or remove that record "
                    "(load, edit, save) to read the store.",
                )
        return "iterations"
    if kinds == {str} and any(key in entry for key in TRAINED_KEYS):
        return "trained_agents"
    bad = next(key for key in entry if not is_integer_type(type(key)))
    raise _fail(
        path,
        f"agent {agent!r}, iteration {bad!r}: iteration keys must be ints, got {type(bad).__name__}. "
        f"Expected {STORE_SHAPES}. (A store written as JSON reads back with crewtrain_nb.import_json.)",
    )


def _classify(data: Any, path: str | None) -> StoreKind:
    if not isinstance(data, Mapping):
        raise _fail(path, f"the source holds a {type(data).__name__}, not a store; expected {STORE_SHAPES}")
    kind: StoreKind = "empty"
    first: Any = None
    for agent, entry in data.items():
        if not isinstance(entry, Mapping):
            raise _fail(
                path,
                f"agent {agent!r} holds a {type(entry).__name__}, not a dict of iteration -> record "
                f"(or a trained-agent entry); expected {STORE_SHAPES}. "
                "Pass the whole store, not one agent's records or one record.",
            )
        if not entry:
            continue
        this = _entry_kind(agent, entry, path)
        if kind == "empty":
            kind, first = this, agent
        elif this != kind:
            raise _fail(
                path,
                f"agent {agent!r} is shaped like a {this.replace('_', ' ')} entry but agent {first!r} like "
                f"an {kind} entry; a store holds one kind: {STORE_SHAPES}",
            )
    return kind


def open_store(source: Source, *, agents: str | Iterable[str] | None = None, trusted: bool = False) -> OpenStore:
    """Open a source and check its shape once (for modules that read a store, e.g. the exports).

    With ``agents``, a SQLite store reads only those agents (through the
    handler's lazy access); other sources are read whole and selected from later.
    ``trusted`` opens a path with the full unpickler (only for files you trust).

    Raises
    ------
    ValueError
        (:class:`~crewtrain_nb.StoreFormatError`) the source is not a store;
        the message says which agent and iteration.
    """
    if isinstance(source, (list, tuple, set, frozenset)):
        raise StoreFormatError(
            f"source is a {type(source).__name__}, not a store; expected a handler, a store path, or {STORE_SHAPES}"
        )
    data, path = open_source(source, agents=agents, trusted=trusted)
    return OpenStore(data, path, _classify(data, path))


def store_kind(source: Source, *, trusted: bool = False) -> StoreKind:
    """What kind of store ``source`` is.

    Returns
    -------
    str
        ``"iterations"`` (``{agent: {iteration: record}}``: ``training_data.pkl``
        and metric logs), ``"trained_agents"`` (``{role: {"suggestions",
        "quality", "final_summary"}}``) or ``"empty"`` (no records at all).

    Raises
    ------
    ValueError
        The source is not a store; the message says which agent and iteration.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_trained_agents_data, make_training_data
    >>> store_kind(make_training_data()), store_kind(make_trained_agents_data()), store_kind({})
    ('iterations', 'trained_agents', 'empty')
    """
    return open_store(source, trusted=trusted).kind


# -- records in row order -----------------------------------------------------------


@dataclass
class Rows:
    """The records of a store in row order: agents in store order, iterations ascending."""

    names: list[str]
    counts: np.ndarray
    iterations: np.ndarray | None  # None for a trained-agents store
    items: list[Any]
    #: ``{name the caller gave: the agent it resolved to}`` (empty when all agents are read).
    given: dict[str, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.items)

    @functools.cached_property
    def agent_codes(self) -> np.ndarray:
        dtype = np.uint16 if len(self.names) < 2**16 else np.int64  # small codes sort by radix
        return np.repeat(np.arange(len(self.names), dtype=dtype), self.counts)


def _select(store: OpenStore, agents: str | Iterable[str] | None) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """``(name, key)`` of the agents to show, in store order, and ``{name given: agent}``.

    Store order is the order agents appear in the file (CrewAI's task order; a
    loaded dict's insertion order), whatever order ``agents`` names them in.
    Each name is resolved as everywhere (an exact id, a role, a unique id prefix).
    """
    named = {str(key): key for key in store.data}
    given = resolve_agents(
        list(named),
        agents,
        roles=lambda: {str(key): role for key, role in record_roles(store.data).items()},
        path=store.path,
    )
    if given is None:
        return list(named.items()), {}
    chosen = set(given.values())
    return [(name, key) for name, key in named.items() if name in chosen], given


def collect_rows(store: OpenStore, agents: str | Iterable[str] | None) -> Rows:
    chosen, given = _select(store, agents)
    names = [name for name, _ in chosen]
    if store.kind == "trained_agents":
        entries = [store.data[key] for _, key in chosen]
        return Rows(names, np.ones(len(names), dtype=np.int64), None, entries, given)
    items: list[Any] = []
    iterations: list[Any] = []
    counts = np.zeros(len(names), dtype=np.int64)
    for index, (_, key) in enumerate(chosen):
        entry = store.data[key]
        steps = list(entry)
        ordered = sorted(steps)
        if ordered == steps:
            items.extend(entry.values())
        else:
            steps = ordered
            items.extend(map(entry.__getitem__, steps))
        iterations.extend(steps)
        counts[index] = len(steps)
    return Rows(names, counts, np.fromiter(iterations, dtype=np.int64, count=len(iterations)), items, given)
