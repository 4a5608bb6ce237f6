"""Pure selection logic behind the notebook browser: which agents, which iterations, which label.

No widgets here: the browser wires these functions to controls, and tests call
them directly.
"""

from __future__ import annotations

import bisect
import numbers
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

import pandas as pd

from .crewai.files import holds_feedback, is_feedback_record
from .crewai.roles import assign_roles
from .crewai.sidecar import find_sidecar
from .errors import StoreError
from .frames import feedback_frame, metrics_frame
from .store import record_roles as agent_roles
from .store import resolve_agent

__all__ = [
    "FEEDBACK_CURVES",
    "agent_label",
    "agent_labels",
    "agent_options",
    "agent_role",
    "check_agent_names",
    "curve_frame",
    "iteration_options",
    "record_matches",
    "resolve_agent",  # the one resolution (id, role, id prefix), from the store package
    "role_matches",
    "short_id",
    "step_iteration",
]

#: Characters of a uuid the browser, the report and the plots show: enough for :func:`resolve_agent`.
SHORT_ID_LENGTH = 8
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def agent_role(
    agent: str,
    records: Any,
    *,
    names: Mapping[str, str] | None = None,
    trained: Mapping[str, Any] | None = None,
) -> str | None:
    """The role of ``agent`` when something tells it, else ``None``.

    In order: ``names[agent]``; the ``agent_role`` key CrewAI 0.86 stores in
    each record; ``agent`` itself when it is a role of the trained-agents file
    (stores keyed by role). CrewAI's ``training_data.pkl`` is keyed by uuids of a
    copy of the crew, so without one of these the role is unknown.
    """
    if names and agent in names:
        return str(names[agent])
    recorded = agent_roles({agent: records})  # the first record only (a lazy store fetches just that one)
    if agent in recorded:
        return recorded[agent]
    if trained and agent in trained:
        return agent
    return None


def short_id(agent: str) -> str:
    """A uuid's first eight characters (CrewAI's agent ids are uuids); any other id as it is.

    Examples
    --------
    >>> short_id("0f8fad5b-d9cb-469f-a165-70867728950e"), short_id("planner")
    ('0f8fad5b', 'planner')
    """
    return agent[:SHORT_ID_LENGTH] if _UUID.fullmatch(agent) else agent


def agent_label(agent: str, role: str | None) -> str:
    """Dropdown label: the role plus a short id, or the id alone.

    Examples
    --------
    >>> agent_label("0f8fad5b-d9cb-469f-a165-70867728950e", "Writer")
    'Writer · 0f8fad5b'
    >>> agent_label("planner", None)
    'planner'
    >>> agent_label("Writer", "Writer")
    'Writer'
    """
    if role is None or role == agent:
        return agent
    return f"{role} · {short_id(agent)}"


def check_agent_names(names: Mapping[Any, Any] | None, agents: Iterable[Any], *, stacklevel: int = 3) -> None:
    """Warn (``UserWarning``) when ``names`` is given but none of its keys is an agent id, naming the ids there are.

    CrewAI's ``training_data.pkl`` is keyed by the ids of a *copy* of the crew that ``train()`` makes: the
    ids of the agents a user built never match, and labels given for them would silently change nothing.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check_agent_names({"mine": "Writer"}, ["0f8fad5b"])
    >>> print(caught[0].message)  # doctest: +NORMALIZE_WHITESPACE
    agent_names matches no agent id (it names 'mine'); the agents are '0f8fad5b'. CrewAI's ids belong to the
    copy of the crew train() makes: pass trained= (roles are then matched) or see match_roles().
    """
    if not names:
        return
    known = [str(agent) for agent in agents]
    if any(str(key) in set(known) for key in names):
        return
    given = [str(key) for key in names]
    shown = ", ".join(map(repr, given[:5])) + (f" and {len(given) - 5} more" if len(given) > 5 else "")
    listed = ", ".join(map(repr, known[:10])) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
    warnings.warn(
        f"agent_names matches no agent id (it names {shown}); the agents are {listed or 'none'}. "
        "CrewAI's ids belong to the copy of the crew train() makes: pass trained= (roles are then matched) "
        "or see match_roles().",
        UserWarning,
        stacklevel=stacklevel,
    )


def role_matches(
    data: Mapping[Any, Any], *, trained: Mapping[str, Any] | None = None, path: str | None = None
) -> dict[str, tuple[str, str]]:
    """``{agent: (role, how)}`` for each agent :func:`crewtrain_nb.crewai.assign_roles` gives a role.

    Only for CrewAI feedback records (an ML log has no roles to match): the sidecar beside ``path``
    (``"recorded"``), CrewAI 0.86's ``agent_role`` (``"record"``), else inferred from ``trained``
    (``"inferred"``). Empty when there is nothing to go by, or the data is not a ``training_data.pkl``.
    """
    if not isinstance(data, Mapping) or not data or not holds_feedback(data):
        return {}
    try:
        found = find_sidecar(None, path)
        if found is None and not trained:  # only CrewAI 0.86 records could tell: agent_role() reads those lazily
            return {}
        plain = {agent: dict(records.items()) for agent, records in data.items()}  # a lazy view, read as dicts
        sidecar: Any = found if found is not None else False
        if found is None and trained and any(agent in trained for agent in data):
            sidecar = {agent: agent for agent in data if agent in trained}  # a store keyed by role already
        matches = assign_roles(plain, trained or None, sidecar=sidecar)
    except (StoreError, ValueError):  # a damaged sidecar or a store of another shape: no roles, not an error here
        return {}
    return {str(match.agent): (match.role, str(match.how)) for match in matches if match.role is not None}


def agent_labels(
    data: Mapping[Any, Any],
    *,
    names: Mapping[str, str] | None = None,
    trained: Mapping[str, Any] | None = None,
    path: str | None = None,
) -> dict[str, str]:
    """Each agent's label, as the browser, the report, the plots and the CLI show it.

    ``names[agent]`` first (what the user says), then :func:`role_matches` (``"Role · 0f8fad5b"``, with
    ``" (inferred)"`` after a role inferred from the text), then the agent itself when it is a role of the
    trained file; else the id.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_crewai_run
    >>> run = make_crewai_run("paraphrased")
    >>> sorted(agent_labels(run["training"], trained=run["trained"]).values())[0].split(" · ")[0]
    'Fact Checker'
    """
    matches = role_matches(data, trained=trained, path=path)
    labels: dict[str, str] = {}
    for agent, records in data.items():
        key = str(agent)
        if names and key in names:
            labels[key] = agent_label(key, str(names[key]))
        elif key in matches:
            role, how = matches[key]
            labels[key] = agent_label(key, role) + (" (inferred)" if how == "inferred" and role != key else "")
        else:
            labels[key] = agent_label(key, agent_role(key, records, trained=trained))
    return labels


def agent_options(
    data: Mapping[str, Any],
    *,
    names: Mapping[str, str] | None = None,
    trained: Mapping[str, Any] | None = None,
    path: str | None = None,
) -> list[tuple[str, str]]:
    """``(label, agent_id)`` for every agent that has iterations, in store order; labels by :func:`agent_labels`."""
    labels = agent_labels(data, names=names, trained=trained, path=path)
    return [(labels[str(agent)], agent) for agent, records in data.items() if isinstance(records, Mapping)]


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for key, item in value.items() for text in (*_texts(key), *_texts(item))]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _texts(item)]
    return []


def record_matches(record: Any, text: str) -> bool:
    """Whether any string in ``record`` (keys included) contains ``text``, ignoring case.

    Examples
    --------
    >>> record_matches({"human_feedback": "Add Sources"}, "sources")
    True
    >>> record_matches({"loss": 0.5}, "sources")
    False
    """
    needle = text.casefold()
    return any(needle in piece.casefold() for piece in _texts(record))


def _is_iteration_key(key: object) -> TypeGuard[int]:
    """An integral key that is not a bool (a numpy integer counts: it sorts, compares and hashes as its int)."""
    return isinstance(key, numbers.Integral) and not isinstance(key, bool)


def iteration_options(records: Mapping[Any, Any], *, text: str = "") -> list[int]:
    """The agent's iteration keys in numeric order, narrowed to records containing ``text``."""
    keys = sorted(key for key in records if _is_iteration_key(key))
    if not text.strip():
        return keys
    return [key for key in keys if record_matches(records[key], text.strip())]


def step_iteration(options: Sequence[int], current: int | None, step: int) -> int | None:
    """The option ``step`` places after ``current`` (clamped), for previous/next buttons.

    ``options`` is sorted, as :func:`iteration_options` returns it.

    Examples
    --------
    >>> step_iteration([0, 1, 5, 9], 1, 1)
    5
    >>> step_iteration([0, 1, 5, 9], 9, 1)
    9
    >>> step_iteration([0, 1, 5, 9], 5, -1)
    1
    """
    if not options:
        return None
    position = bisect.bisect_left(options, current) if current is not None else len(options)
    if position == len(options) or options[position] != current:
        return options[0]
    return options[min(max(position + step, 0), len(options) - 1)]


#: What the browser plots for CrewAI feedback records, which hold text, not numbers.
FEEDBACK_CURVES: tuple[str, ...] = ("initial_chars", "improved_chars", "similarity")


def curve_frame(data: Mapping[str, Any], agent: str) -> pd.DataFrame:
    """Tidy per-iteration numbers to plot for one agent (``agent, iteration, metric, value``).

    The agent's numeric metrics when its records have any; for CrewAI feedback
    records, the length of the initial and improved output and their similarity,
    one row per iteration each: a value CrewAI did not record (no improved output
    in an interrupted record) is NaN, so a plot draws a gap there, not a line across.
    """
    records = {agent: data[agent]}
    frame = metrics_frame(records)
    if not frame.empty or not any(is_feedback_record(record) for record in data[agent].values()):
        return frame
    feedback = feedback_frame(records)
    long = feedback.melt(id_vars=["agent", "iteration"], value_vars=list(FEEDBACK_CURVES), var_name="metric")
    long["value"] = pd.to_numeric(long["value"], errors="coerce").astype("float64")
    return long
