"""Pure logic about what CrewAI's two training files mean.

``training_data.pkl`` holds one feedback record per agent and iteration:
``{"initial_output", "human_feedback", "improved_output"}``, where
``improved_output`` is often missing (interrupted runs; CrewAI 0.86 almost
always) and empty feedback is stored as ``""``. ``trained_agents_data.pkl``
holds, per role, ``{"suggestions", "quality", "final_summary"}``.

Nothing here touches files, pandas or widgets: :mod:`crewtrain_nb.frames`, the
browser and the report build on these functions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Literal

__all__ = [
    "FEEDBACK_KEYS",
    "FEEDBACK_STATUSES",
    "TRAINED_KEYS",
    "FeedbackStatus",
    "diff_words",
    "feedback_status",
    "is_feedback_record",
    "is_trained_entry",
    "similarity",
    "text_of",
]

#: Keys of one ``training_data.pkl`` record, in the order CrewAI writes them.
FEEDBACK_KEYS: tuple[str, str, str] = ("initial_output", "human_feedback", "improved_output")
#: Keys of one ``trained_agents_data.pkl`` entry.
TRAINED_KEYS: tuple[str, str, str] = ("suggestions", "quality", "final_summary")

FeedbackStatus = Literal["complete", "no_improved_output", "no_feedback"]
#: Every value :func:`feedback_status` returns.
FEEDBACK_STATUSES: tuple[FeedbackStatus, ...] = ("complete", "no_improved_output", "no_feedback")

# Runs of whitespace and runs of anything else: joining the tokens gives the text back.
_TOKENS = re.compile(r"\s+|\S+")


def is_feedback_record(record: Any) -> bool:
    """Whether ``record`` looks like a ``training_data.pkl`` record.

    Examples
    --------
    >>> is_feedback_record({"initial_output": "draft", "human_feedback": "shorter"})
    True
    >>> is_feedback_record({"loss": 0.5})
    False
    """
    return isinstance(record, Mapping) and any(key in record for key in FEEDBACK_KEYS)


def is_trained_entry(entry: Any) -> bool:
    """Whether ``entry`` looks like a ``trained_agents_data.pkl`` entry (keyed by role).

    Examples
    --------
    >>> is_trained_entry({"suggestions": ["Cite sources"], "quality": 7.5, "final_summary": "..."})
    True
    >>> is_trained_entry({0: {"initial_output": "draft"}})
    False
    """
    return (
        isinstance(entry, Mapping)
        and bool(entry)
        and all(type(key) is str for key in entry)
        and any(key in entry for key in TRAINED_KEYS)
    )


def text_of(value: Any) -> str | None:
    """The text of a record field: ``None`` stays ``None``, other non-strings become ``str(value)``.

    CrewAI stores strings; a task with structured output can store an object instead.

    Examples
    --------
    >>> text_of("done"), text_of(None), text_of(42)
    ('done', None, '42')
    """
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _given(value: Any) -> bool:
    text = text_of(value)
    return text is not None and text.strip() != ""


def feedback_status(record: Any) -> FeedbackStatus:
    """Classify a ``training_data.pkl`` record.

    Returns
    -------
    str
        ``"no_feedback"`` when ``human_feedback`` is missing, ``None`` or blank
        (CrewAI stores empty feedback as ``""``); else ``"no_improved_output"``
        when ``improved_output`` is missing, ``None`` or blank; else ``"complete"``.

    Examples
    --------
    >>> feedback_status({"initial_output": "a", "human_feedback": "b", "improved_output": "c"})
    'complete'
    >>> feedback_status({"initial_output": "a", "human_feedback": "b"})
    'no_improved_output'
    >>> feedback_status({"initial_output": "a", "human_feedback": ""})
    'no_feedback'
    """
    if not isinstance(record, Mapping) or not _given(record.get("human_feedback")):
        return "no_feedback"
    if not _given(record.get("improved_output")):
        return "no_improved_output"
    return "complete"


def similarity(before: str | None, after: str | None) -> float:
    """Word-level similarity of two texts, from 0 (nothing shared) to 1 (same words).

    :class:`difflib.SequenceMatcher` ratio over whitespace-separated words, with
    its "junk" heuristic off so long texts are not distorted. ``nan`` when either
    text is missing; ``1.0`` when both have no words.

    Examples
    --------
    >>> similarity("the cat sat", "the cat sat")
    1.0
    >>> similarity("the cat sat", "the dog sat")  # 2 of 3 words match: 2*2/6
    0.6666666666666666
    >>> similarity("a b", None)
    nan
    """
    if before is None or after is None:
        return float("nan")
    if before == after:
        return 1.0
    old, new = before.split(), after.split()
    if not old and not new:
        return 1.0
    return difflib.SequenceMatcher(a=old, b=new, autojunk=False).ratio()


def diff_words(before: str, after: str) -> list[tuple[str, str]]:
    """Word-level diff as ``(op, text)`` pairs, op ``"equal"``, ``"delete"`` or ``"insert"``.

    Whitespace is kept: joining the ``equal`` and ``delete`` texts gives
    ``before``, joining the ``equal`` and ``insert`` texts gives ``after``. A
    replaced run is a ``delete`` followed by an ``insert``; neighbours with the
    same op are merged.

    Examples
    --------
    >>> diff_words("the cat sat", "the dog sat")
    [('equal', 'the '), ('delete', 'cat'), ('insert', 'dog'), ('equal', ' sat')]
    >>> diff_words("", "new text")
    [('insert', 'new text')]
    """
    old, new = _TOKENS.findall(before), _TOKENS.findall(after)
    ops: list[tuple[str, str]] = []

    def emit(op: str, tokens: list[str]) -> None:
        text = "".join(tokens)
        if not text:
            return
        if ops and ops[-1][0] == op:
            ops[-1] = (op, ops[-1][1] + text)
        else:
            ops.append((op, text))

    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            emit("equal", old[i1:i2])
            continue
        if tag in ("delete", "replace"):
            emit("delete", old[i1:i2])
        if tag in ("insert", "replace"):
            emit("insert", new[j1:j2])
    return ops
