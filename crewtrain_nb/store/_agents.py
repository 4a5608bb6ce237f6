"""Which agent a name means: the one resolution every view, the browser and the CLI use.

A user names an agent by its full id, by its role (CrewAI 0.86 records carry
``agent_role``; the browser also knows roles from ``agent_names`` and the
trained-agents file), or by the first characters of its id (the browser and the
report show eight). The order is fixed: an exact id wins, then an exact role,
then a unique id prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..errors import StoreFormatError
from ._lazy import describe, unknown_agent_message

__all__ = [
    "agent_names_argument",
    "record_roles",
    "resolve_agent",
    "resolve_agents",
    "stored_roles",
    "unknown_agent_message",
]

#: ``{agent id: role}``, or a function that returns it (called only when a name is not an id).
Roles = Mapping[Any, str] | Callable[[], Mapping[Any, str]] | None


def agent_names_argument(agents: Any, *, argument: str = "agents") -> list[str] | None:
    """``agents`` as a list of names (``None``: all), or a ``TypeError`` naming ``argument``."""
    if agents is None:
        return None
    if isinstance(agents, str):
        return [agents]
    if isinstance(agents, (bytes, Mapping)) or not isinstance(agents, Iterable):
        raise TypeError(
            f"{argument} must be an agent id or role (str) or a list of them, got {type(agents).__name__}: {agents!r}"
        )
    names = list(agents)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                f"{argument} must hold agent ids or roles (str), got {type(name).__name__}: {name!r} in {names!r}"
            )
    return names


def record_roles(data: Mapping[Any, Any]) -> dict[Any, str]:
    """``{agent_id: role}`` from the ``agent_role`` key CrewAI 0.86 keeps in each record.

    CrewAI 1.x records carry no role: their agents are left out. Only each
    agent's first record is read (a lazy store fetches just that one).
    ``crewtrain_nb.crewai.agent_roles`` is this function.

    Examples
    --------
    >>> record_roles({"42af": {0: {"initial_output": "x", "agent_role": "Writer"}}, "966e": {0: {"loss": 1.0}}})
    {'42af': 'Writer'}
    """
    roles: dict[Any, str] = {}
    for agent, records in data.items():
        if not isinstance(records, Mapping):
            continue
        for key in records:
            record = records[key]
            if isinstance(record, Mapping) and isinstance(record.get("agent_role"), str):
                roles[agent] = record["agent_role"]
            break
    return roles


def stored_roles(handler: Any, agents: Iterable[Any]) -> dict[Any, str]:
    """``{agent: agent_role}`` read through a handler's lazy access: one record per agent, nothing else."""
    roles: dict[Any, str] = {}
    for agent in agents:
        try:
            steps = handler.iterations(agent)
        except StoreFormatError:  # a trained agent: keyed by its role already
            continue
        record = handler.get(agent, steps[0]) if steps else None
        if isinstance(record, Mapping) and isinstance(record.get("agent_role"), str):
            roles[agent] = record["agent_role"]
    return roles


def resolve_agent(known: Sequence[Any], name: str, *, roles: Roles = None, path: str | None = None) -> Any:
    """The agent ``name`` means: an exact id, else an exact role, else the one id that starts with it.

    Parameters
    ----------
    known
        The store's agent ids, in store order.
    name
        What the user typed.
    roles
        ``{agent id: role}`` (or a function returning it, called only when
        ``name`` is not an id).
    path
        The store file, for messages.

    Raises
    ------
    ValueError
        No agent matches (the message lists the ids there are), a role names
        several agents, or a prefix starts several ids (both list them).

    Examples
    --------
    >>> resolve_agent(["42af9fc3-8577", "966e1277-8c17"], "42af9fc3")
    '42af9fc3-8577'
    >>> resolve_agent(["42af9fc3-8577", "966e1277-8c17"], "Writer", roles={"966e1277-8c17": "Writer"})
    '966e1277-8c17'
    """
    if name in known:
        return name
    mapping = roles() if callable(roles) else roles
    if mapping:
        named = [agent for agent in known if mapping.get(agent) == name]
        if len(named) == 1:
            return named[0]
        if named:
            raise ValueError(
                f"agent {name!r} is ambiguous: the role {name!r} names {len(named)} agents in {path or 'the store'}: "
                f"{describe(named, len(named))}; give one of their ids"
            )
    matches = [agent for agent in known if str(agent).startswith(name)] if name else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(
            f"agent {name!r} is ambiguous: {len(matches)} agent ids in {path or 'the store'} start with it: "
            f"{describe(matches, len(matches))}; give more characters"
        )
    raise ValueError(unknown_agent_message(name, known, path=path, total=len(known)))


def resolve_agents(
    known: Sequence[Any], agents: Any, *, roles: Roles = None, path: str | None = None, argument: str = "agents"
) -> dict[str, Any] | None:
    """Each name of ``agents`` (a str or a list of them) resolved as :func:`resolve_agent` does; ``None``: all.

    Returns ``{name: agent id}`` in the order given (``list(dict.fromkeys(result.values()))``
    are the agents chosen).

    Raises
    ------
    TypeError
        ``agents`` is not a str nor a list of str (the message names ``argument``).
    ValueError
        A name matches no agent or several, prefixed with ``argument``.
    """
    names = agent_names_argument(agents, argument=argument)
    if names is None:
        return None
    cached: list[Mapping[Any, str]] = []

    def lookup() -> Mapping[Any, str]:  # roles are read once, and only when a name is not an id
        if not cached:
            cached.append((roles() if callable(roles) else roles) or {})
        return cached[0]

    chosen: dict[str, Any] = {}
    for name in names:
        try:
            chosen[name] = resolve_agent(known, name, roles=lookup if roles is not None else None, path=path)
        except ValueError as exc:
            raise ValueError(f"{argument}: {exc}") from None
    return chosen
