"""What a trained file changes at run time: the exact text CrewAI 1.x appends, and which file it reads.

From CrewAI 1.x's ``Agent._use_trained_data`` (``crewai/agent/core.py``)::

    trained_file = crew.trained_agents_file or os.getenv("CREWAI_TRAINED_AGENTS_FILE", "trained_agents_data.pkl")
    if data := CrewTrainingHandler(trained_file).load():
        if trained_data_output := data.get(self.role):
            task_prompt += "\\n\\nYou MUST follow these instructions: \\n - " + "\\n - ".join(
                trained_data_output["suggestions"])

Only ``suggestions`` is used (``quality`` and ``final_summary`` are not); the entry is looked up by the
agent's role, so two agents with one role get the same text. CrewAI's handler appends ``.pkl`` to a name
without it and resolves a relative name against the working directory. ``Crew(trained_agents_file=...)``
exists since 1.14.7 and the environment variable since 1.14.4; before that a crew always read
``trained_agents_data.pkl`` in its working directory, so a file trained with ``crewai train -f NAME`` was
ignored at run time (crewAI #2724, #4905).
"""

from __future__ import annotations

import importlib.metadata
import itertools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..store import Source
from .sources import read_trained

__all__ = [
    "DEFAULT_TRAINED_FILE",
    "INSTRUCTIONS_PREFIX",
    "TRAINED_FILE_ENV",
    "TrainedFileChoice",
    "explain_trained_file",
    "instructions_text",
    "prompt_preview",
    "trained_file_for",
]

#: What CrewAI 1.x puts before the first suggestion.
INSTRUCTIONS_PREFIX = "\n\nYou MUST follow these instructions: \n - "
#: The environment variable CrewAI 1.14.4+ reads the trained file's name from.
TRAINED_FILE_ENV = "CREWAI_TRAINED_AGENTS_FILE"
#: The file a crew reads when nothing else names one.
DEFAULT_TRAINED_FILE = "trained_agents_data.pkl"


def instructions_text(suggestions: Any, *, role: str = "?", where: str = "") -> str:
    """The text CrewAI appends for one role's ``suggestions``, exactly.

    Raises
    ------
    ValueError
        ``suggestions`` is not a list of str: CrewAI 1.x itself fails on it when an agent of this role runs
        (``KeyError`` without the key, ``TypeError`` from ``join``).

    Examples
    --------
    >>> instructions_text(["Cite sources.", "Be brief."])
    '\\n\\nYou MUST follow these instructions: \\n - Cite sources.\\n - Be brief.'
    """
    if isinstance(suggestions, str) or not isinstance(suggestions, (list, tuple)):
        raise ValueError(
            f"{where}role {role!r}: 'suggestions' is {type(suggestions).__name__}, not a list of str; CrewAI "
            "fails when an agent with this role runs. Fix the entry (crewtrain_nb.crewai.edit_suggestions)."
        )
    bad = [item for item in suggestions if not isinstance(item, str)]
    if bad:
        raise ValueError(
            f"{where}role {role!r}: suggestion {bad[0]!r} is a {type(bad[0]).__name__}, not a str; CrewAI's "
            "join fails when an agent with this role runs. Fix the entry (crewtrain_nb.crewai.edit_suggestions)."
        )
    return INSTRUCTIONS_PREFIX + "\n - ".join(suggestions)


def prompt_preview(trained: Source, role: str | None = None, *, trusted: bool = False) -> dict[str, str]:
    """The text CrewAI 1.x appends to the task prompt of an agent with each role of ``trained``.

    Parameters
    ----------
    trained
        ``trained_agents_data.pkl``: a path, a handler, or its dict.
    role
        Only this role; all by default.
    trusted
        Passed to the handler opened for a path.

    Returns
    -------
    dict of str to str
        ``{role: text}`` in the file's order. A role whose entry is empty gets ``""`` (CrewAI appends
        nothing for it), as does every role of an empty file.

    Raises
    ------
    ValueError
        ``role`` is not in the file (CrewAI appends nothing for an agent with that role: the message
        lists the roles there are), or an entry's suggestions would make CrewAI fail.

    Examples
    --------
    >>> prompt_preview({"Writer": {"suggestions": ["Be brief."], "quality": 8.0, "final_summary": "..."}})
    {'Writer': '\\n\\nYou MUST follow these instructions: \\n - Be brief.'}
    """
    data, path = read_trained(trained, trusted=trusted)
    where = f"{path}: " if path else ""
    if role is not None:
        if role not in data:
            listed = ", ".join(map(repr, data)) or "none (the file is {})"
            raise ValueError(
                f"{where}no role {role!r}: CrewAI appends nothing to the prompt of an agent with this role. "
                f"The roles there are: {listed} (a role must match the agent's role exactly)."
            )
        data = {role: data[role]}
    return {name: _entry_text(name, entry, where) for name, entry in data.items()}


def _entry_text(role: str, entry: Any, where: str) -> str:
    if not entry:  # CrewAI: `if trained_data_output := data.get(self.role)`
        return ""
    if not isinstance(entry, Mapping) or "suggestions" not in entry:
        raise ValueError(
            f"{where}role {role!r} has no 'suggestions': CrewAI 1.x raises KeyError when an agent with this "
            "role runs. Add them (crewtrain_nb.crewai.edit_suggestions) or remove the entry."
        )
    return instructions_text(entry["suggestions"], role=role, where=where)


@dataclass(frozen=True)
class TrainedFileChoice:
    """The trained file a crew reads, and why.

    Attributes
    ----------
    path
        Absolute path, as CrewAI 1.x builds it (``.pkl`` appended when missing, relative to ``cwd``).
    reason
        ``"crew"`` (``Crew(trained_agents_file=...)``), ``"environment"`` (``$CREWAI_TRAINED_AGENTS_FILE``)
        or ``"default"`` (``trained_agents_data.pkl`` in the working directory).
    exists
        Whether the file is there (CrewAI reads a missing file as ``{}``: no instructions at all).
    """

    path: str
    reason: Literal["crew", "environment", "default"]
    exists: bool


def trained_file_for(
    *,
    crew_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> TrainedFileChoice:
    """The trained file CrewAI 1.14.7+ reads for a crew, by its rule.

    Parameters
    ----------
    crew_file
        The crew's ``trained_agents_file`` (``None`` when not set).
    environ
        The environment (default ``os.environ``).
    cwd
        The working directory the crew runs in (default the current one).

    Examples
    --------
    >>> trained_file_for(environ={"CREWAI_TRAINED_AGENTS_FILE": "runs/best"}, cwd="/work").path
    '/work/runs/best.pkl'
    >>> trained_file_for(crew_file="/data/t.pkl", environ={}).reason
    'crew'
    """
    environ = os.environ if environ is None else environ
    directory = os.fspath(cwd) if cwd is not None else os.getcwd()
    reason: Literal["crew", "environment", "default"]
    if crew_file:
        name, reason = os.fspath(crew_file), "crew"
    elif TRAINED_FILE_ENV in environ:
        name, reason = environ[TRAINED_FILE_ENV], "environment"
    else:
        name, reason = DEFAULT_TRAINED_FILE, "default"
    if not name.endswith(".pkl"):  # CrewAI's PickleHandler
        name += ".pkl"
    path = os.path.abspath(os.path.join(directory, name))
    return TrainedFileChoice(path, reason, os.path.isfile(path))


_RULE = {"crew": 1, "environment": 2, "default": 3}


def _installed_crewai() -> str | None:
    try:
        return importlib.metadata.version("crewai")  # reads the metadata only: crewai is not imported
    except importlib.metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...]:
    """``"1.14.4rc1"`` -> ``(1, 14, 4)``: the leading numbers of a version."""
    numbers: list[int] = []
    for part in version.split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers)


def explain_trained_file(
    *,
    crew_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> str:
    """The rule by which a crew picks its trained file, with what it finds here; lines of text.

    Parameters are those of :func:`trained_file_for`.
    """
    environ = os.environ if environ is None else environ
    choice = trained_file_for(crew_file=crew_file, environ=environ, cwd=cwd)
    directory = os.fspath(cwd) if cwd is not None else os.getcwd()
    default = os.path.join(os.path.abspath(directory), DEFAULT_TRAINED_FILE)
    env_value = environ.get(TRAINED_FILE_ENV)
    version = _installed_crewai()
    lines = [
        "Which trained file a crew reads (CrewAI 1.x, Agent._use_trained_data):",
        "  1. Crew(trained_agents_file=...)  (CrewAI 1.14.7+)"
        + (f": {os.fspath(crew_file)}" if crew_file else ": not given here"),
        f"  2. ${TRAINED_FILE_ENV}  (CrewAI 1.14.4+): " + ("not set" if env_value is None else repr(env_value)),
        f"  3. {DEFAULT_TRAINED_FILE} in the working directory: {default} "
        + ("(exists)" if os.path.isfile(default) else "(missing)"),
        "  '.pkl' is appended to a name without it; a relative name is relative to the working directory.",
        "  Before CrewAI 1.14.4 only rule 3 applies: a file trained with `crewai train -f NAME` is ignored at run "
        "time (crewAI #2724, #4905); copy or rename it to trained_agents_data.pkl.",
        "",
        f"Here a crew would read: {choice.path}  (rule {_RULE[choice.reason]}, "
        + ("exists)" if choice.exists else "missing: CrewAI reads it as {} and appends no instructions)"),
        "crewai installed here: " + (version or "no"),
    ]
    if version is not None and _release(version) < (1, 14, 4):
        lines.append(f"  crewai {version} is older than 1.14.4: its crews read only {default}")
    elif version is not None and _release(version) < (1, 14, 7):
        lines.append(f"  crewai {version} is older than 1.14.7: Crew(trained_agents_file=...) does not exist there")
    return "\n".join(lines)
