"""Curate a trained file: replace a role's suggestions, keeping the previous file as a version first.

The write goes through the store (:class:`~crewtrain_nb.CrewTrainingHandler`): atomic, under the store's
lock, and the file before the edit is kept in ``<file>.versions/`` so ``handler.restore(version)`` undoes it.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from ..errors import StoreError, StoreFormatError
from ..store import CrewTrainingHandler, PickleHandler, SQLiteHandler, StoreVersion
from .files import is_trained_entry
from .sources import source_path

__all__ = ["REVISIONS", "Revision", "edit_suggestions", "revise_suggestions"]

Revision = Literal["remove", "up", "down", "replace", "add"]
#: What :func:`revise_suggestions` can do to a list of suggestions.
REVISIONS: tuple[Revision, ...] = ("remove", "up", "down", "replace", "add")


def _checked(suggestions: Any) -> list[str]:
    if isinstance(suggestions, str) or not isinstance(suggestions, (list, tuple)):
        raise TypeError(f"suggestions must be a list of str, got {type(suggestions).__name__}")
    cleaned: list[str] = []
    for number, item in enumerate(suggestions):
        if not isinstance(item, str):
            raise TypeError(f"suggestions[{number}] must be a str, got {type(item).__name__}")
        if not item.strip():
            raise ValueError(f"suggestions[{number}] is blank; remove it instead (CrewAI would inject an empty ' - ')")
        cleaned.append(item.strip())
    return cleaned


def revise_suggestions(
    suggestions: list[str], action: Revision, *, index: int | None = None, text: str = ""
) -> list[str]:
    """A new list: ``suggestions`` with one change (the browser's curation buttons; nothing is written).

    Parameters
    ----------
    suggestions
        The current draft, in order (not changed).
    action
        ``"remove"``, ``"up"`` or ``"down"`` (move one place; at an end, nothing moves) the suggestion at
        ``index``; ``"replace"`` it with ``text``; ``"add"`` ``text`` after ``index`` (at the end without one).
    index
        Position of the suggestion acted on (0-based); needed by every action but ``"add"``.
    text
        The new text, for ``"replace"`` and ``"add"``; stripped, and refused when blank.

    Raises
    ------
    ValueError
        An unknown action, a missing or out-of-range ``index``, or a blank ``text``.

    Examples
    --------
    >>> revise_suggestions(["a", "b", "c"], "up", index=2)
    ['a', 'c', 'b']
    >>> revise_suggestions(["a"], "add", text="  be brief ")
    ['a', 'be brief']
    """
    if action not in REVISIONS:
        raise ValueError(f"action must be one of {', '.join(map(repr, REVISIONS))}; got {action!r}")
    draft = list(suggestions)
    if index is not None and not 0 <= index < len(draft):
        raise ValueError(f"index {index} is out of range: there are {len(draft)} suggestions")
    if index is None and action != "add":
        raise ValueError(f"{action!r} needs the index of a suggestion: select one first")
    if action in ("replace", "add") and not text.strip():
        raise ValueError("the suggestion's text is blank; type the instruction CrewAI should follow")
    if action == "add":
        draft.insert(len(draft) if index is None else index + 1, text.strip())
        return draft
    assert index is not None
    if action == "remove":
        del draft[index]
    elif action == "replace":
        draft[index] = text.strip()
    else:
        other = index - 1 if action == "up" else index + 1
        if 0 <= other < len(draft):
            draft[index], draft[other] = draft[other], draft[index]
    return draft


def edit_suggestions(
    trained: str | os.PathLike[str] | PickleHandler,
    role: str,
    suggestions: list[str],
    *,
    trusted: bool = False,
) -> StoreVersion:
    """Replace the suggestions of ``role`` in a trained file; its quality and summary stay as they are.

    CrewAI 1.x then appends exactly these (see :func:`~crewtrain_nb.crewai.prompt_preview`) to the task
    prompt of an agent with this role.

    Parameters
    ----------
    trained
        The ``trained_agents_data.pkl`` to change: a path or a handler (a dict has no file to write).
    role
        A role of the file, exactly as written there.
    suggestions
        The new suggestions, in order (each stripped; blanks refused). An empty list leaves CrewAI
        appending only its header ``"You MUST follow these instructions:"``.
    trusted
        Passed to the handler opened for the file.

    Returns
    -------
    StoreVersion
        The version holding the file as it was before: ``CrewTrainingHandler(path).restore(version)``
        undoes the edit. Every version kept before is kept too.

    Raises
    ------
    TypeError
        ``trained`` is not a file, or ``suggestions`` not a list of str.
    ValueError
        ``role`` is not in the file (the message lists the roles), or a suggestion is blank.
    StoreError
        The file does not exist or cannot be read or written; it is then unchanged.
    """
    path = source_path(trained)
    if path is None:
        raise TypeError(
            f"trained must be the path of a trained_agents_data.pkl or a handler, got {type(trained).__name__} "
            "(a dict has no file to write)"
        )
    if isinstance(trained, SQLiteHandler):
        raise TypeError(f"{path}: edit_suggestions writes pickle stores (CrewAI reads only those)")
    new = _checked(suggestions)
    if not os.path.exists(path):
        raise StoreError(
            f"{path}: no such trained file; give the trained_agents_data.pkl crewai train wrote", path=path
        )
    # Keep every version already there, plus the one made now (a handler prunes beyond `backups`).
    probe = CrewTrainingHandler(path, trusted=trusted, add_suffix=False)
    keep = max(len(probe.versions()) + 1, getattr(trained, "backups", 0))
    handler = CrewTrainingHandler(path, trusted=trusted, add_suffix=False, backups=keep)
    try:
        with handler.batch():
            data = handler.load()
            if not isinstance(data, dict) or not all(is_trained_entry(entry) for entry in data.values()):
                raise StoreFormatError(
                    f"{path}: not a trained-agents file ({{role: {{'suggestions', 'quality', 'final_summary'}}}})",
                    path=path,
                )
            if role not in data:
                listed = ", ".join(map(repr, data)) or "none (the file is {})"
                raise ValueError(f"{path}: no role {role!r}; the roles there are: {listed}")
            entry = dict(data[role])
            entry["suggestions"] = new
            handler.save_trained_data(role, entry)
    finally:
        handler.close()
        probe.close()
    return handler.versions()[0]
