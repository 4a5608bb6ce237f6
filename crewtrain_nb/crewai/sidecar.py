"""The sidecar ``<training file>.agents.json``: which role each agent id of a training run had.

CrewAI's ``training_data.pkl`` is keyed by the uuids of a *copy* of the crew and never names a role.
Code that watches ``crew.train()`` (it sees each agent while it runs) records them beside the file::

    {"format": "crewtrain_nb.agents", "version": 1,
     "agents": {agent_id: {"role": str, "goal": str | None, "tasks": [task description, ...]}},
     "crewai": "1.15.30" | None, "written": "2026-12-01T21:30:00+00:00"}

Readers ignore keys they do not know (a later minor change may add some) and refuse another
``format`` or a ``version`` they do not know, naming the file.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError, StoreFormatError
from ..store import write_file

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_SUFFIX",
    "SIDECAR_VERSION",
    "AgentInfo",
    "Sidecar",
    "find_sidecar",
    "read_sidecar",
    "recorded_roles",
    "sidecar_path",
    "write_sidecar",
]

#: The ``format`` value of every sidecar.
SIDECAR_FORMAT = "crewtrain_nb.agents"
#: The newest ``version`` this code reads and the one it writes.
SIDECAR_VERSION = 1
#: Appended to the training file's name.
SIDECAR_SUFFIX = ".agents.json"


@dataclass(frozen=True)
class AgentInfo:
    """What the sidecar records about one agent id."""

    role: str
    goal: str | None = None
    tasks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sidecar:
    """A read sidecar: its file, the agents by id, the CrewAI version and when it was written."""

    path: str
    agents: Mapping[str, AgentInfo] = field(default_factory=dict)
    crewai: str | None = None
    written: str | None = None

    def roles(self) -> dict[str, str]:
        """``{agent_id: role}``."""
        return {agent: info.role for agent, info in self.agents.items()}


def sidecar_path(path: str | os.PathLike[str]) -> str:
    """The sidecar of a training file: ``<path>.agents.json`` (a sidecar's own path is returned as is).

    Examples
    --------
    >>> sidecar_path("/runs/training_data.pkl")
    '/runs/training_data.pkl.agents.json'
    >>> sidecar_path("/runs/training_data.pkl.agents.json")
    '/runs/training_data.pkl.agents.json'
    """
    name = os.path.abspath(os.fspath(path))
    return name if name.endswith(SIDECAR_SUFFIX) else name + SIDECAR_SUFFIX


def _text_or_none(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{what} must be a str or None, got {type(value).__name__}")


def _agent_info(agent: str, value: Any, where: str) -> AgentInfo:
    """One agent's entry, checked; ``where`` prefixes errors (the file or the argument)."""
    if isinstance(value, AgentInfo):
        return value
    if isinstance(value, str):
        value = {"role": value}
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}agent {agent!r}: expected {{'role', 'goal', 'tasks'}}, got {type(value).__name__}")
    role = value.get("role")
    if not isinstance(role, str) or not role:
        raise ValueError(f"{where}agent {agent!r}: 'role' must be a non-empty str, got {role!r}")
    tasks = value.get("tasks") or ()
    if isinstance(tasks, str) or not all(isinstance(task, str) for task in tasks):
        raise TypeError(f"{where}agent {agent!r}: 'tasks' must be a list of task descriptions (str)")
    return AgentInfo(role, _text_or_none(value.get("goal"), f"{where}agent {agent!r}: 'goal'"), tuple(tasks))


def write_sidecar(path: str | os.PathLike[str], agents: Mapping[str, Any], *, crewai_version: str | None = None) -> str:
    """Write the sidecar of the training file ``path``, atomically (old file or new, never half).

    Parameters
    ----------
    path
        The training file (``training_data.pkl``) or the sidecar's own path (``*.agents.json``).
    agents
        ``{agent_id: {"role": str, "goal": str | None, "tasks": [str, ...]}}`` (``goal`` and ``tasks``
        may be left out; a bare role string is accepted too), in the order the agents ran.
    crewai_version
        The CrewAI version that ran the training, when known.

    Returns
    -------
    str
        The sidecar's path.

    Raises
    ------
    TypeError, ValueError
        ``agents`` is not shaped as above (the message names the agent).
    StoreWriteError
        The file system refused the write; an earlier sidecar is unchanged.

    Examples
    --------
    >>> import os, tempfile
    >>> target = write_sidecar(os.path.join(tempfile.mkdtemp(), "training_data.pkl"), {"0f8fad5b": "Writer"})
    >>> read_sidecar(target).roles()
    {'0f8fad5b': 'Writer'}
    """
    if not isinstance(agents, Mapping):
        raise TypeError(f"agents must be a dict {{agent_id: {{'role', 'goal', 'tasks'}}}}, got {type(agents).__name__}")
    infos = {str(agent): _agent_info(str(agent), value, "agents: ") for agent, value in agents.items()}
    target = sidecar_path(path)
    document = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "agents": {
            agent: {"role": info.role, "goal": info.goal, "tasks": list(info.tasks)} for agent, info in infos.items()
        },
        "crewai": _text_or_none(crewai_version, "crewai_version"),
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    payload = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    write_file(target, payload)
    return target


def read_sidecar(path: str | os.PathLike[str]) -> Sidecar:
    """Read the sidecar of the training file ``path`` (or the sidecar itself).

    Raises
    ------
    StoreError
        No sidecar there, or it cannot be read.
    StoreFormatError
        It is not JSON, has another ``format``, a ``version`` this crewtrain_nb does not know, or
        malformed agents; the message names the file and what to do.
    """
    target = sidecar_path(path)
    try:
        with open(target, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise StoreError(
            f"{target}: no sidecar; it is written beside training_data.pkl by code that records the roles "
            "while crew.train() runs (crewtrain_nb.crewai.write_sidecar).",
            path=target,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{target}: cannot read the sidecar ({exc}).", path=target) from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise StoreFormatError(
            f"{target}: not a JSON sidecar ({exc}); move it aside or rewrite it.", path=target
        ) from exc
    if not isinstance(document, dict) or document.get("format") != SIDECAR_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise StoreFormatError(
            f"{target}: not a crewtrain_nb agents sidecar (format {found!r}, expected {SIDECAR_FORMAT!r}).",
            path=target,
        )
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SIDECAR_VERSION:
        raise StoreFormatError(
            f"{target}: sidecar version {version!r} is not one this crewtrain_nb reads (1..{SIDECAR_VERSION}); "
            "upgrade crewtrain_nb.",
            path=target,
        )
    agents = document.get("agents")
    if not isinstance(agents, dict):
        raise StoreFormatError(f"{target}: 'agents' must be an object {{agent_id: {{'role', ...}}}}.", path=target)
    try:
        infos = {str(agent): _agent_info(str(agent), value, f"{target}: ") for agent, value in agents.items()}
        crewai = _text_or_none(document.get("crewai"), f"{target}: 'crewai'")
        written = _text_or_none(document.get("written"), f"{target}: 'written'")
    except (TypeError, ValueError) as exc:
        raise StoreFormatError(str(exc), path=target) from exc
    return Sidecar(target, infos, crewai, written)


def find_sidecar(sidecar: Any, training_path: str | None) -> Sidecar | None:
    """The sidecar a function taking ``sidecar=`` uses.

    Parameters
    ----------
    sidecar
        ``None``: the one beside ``training_path`` when that is a local file with a sidecar (else none);
        ``False``: none; a :class:`Sidecar`; ``{agent_id: role or {"role", ...}}``; or a path to read.
    training_path
        The training file's path, ``None`` for a dict.

    Raises
    ------
    StoreError, StoreFormatError
        A sidecar that exists (or was named) cannot be read.
    """
    if sidecar is False:
        return None
    if sidecar is None:
        if training_path is None or "://" in training_path or not os.path.exists(sidecar_path(training_path)):
            return None
        return read_sidecar(training_path)
    if isinstance(sidecar, Sidecar):
        return sidecar
    if isinstance(sidecar, Mapping):
        agents = {str(agent): _agent_info(str(agent), value, "sidecar: ") for agent, value in sidecar.items()}
        return Sidecar("", agents)
    return read_sidecar(sidecar)


def recorded_roles(training: str | os.PathLike[str]) -> dict[str, str]:
    """Agent id -> role from the sidecar beside ``training`` (empty when there is none).

    Raises
    ------
    StoreFormatError
        The sidecar exists but is not one crewtrain_nb reads.
    """
    found = find_sidecar(None, os.fspath(training))
    return found.roles() if found is not None else {}
