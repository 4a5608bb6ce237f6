"""Pure logic about what CrewAI's two training files mean.

``training_data.pkl`` holds one feedback record per agent and iteration:
``{"initial_output", "human_feedback", "improved_output"}``, where
``improved_output`` is often missing (interrupted runs; CrewAI 0.86 almost
always) and empty feedback is stored as ``""``. ``trained_agents_data.pkl``
holds, per role, ``{"suggestions", "quality", "final_summary"}``.

What those outcomes *mean* is written here once (:func:`explain_status`,
:func:`field_notes`, :func:`explain_empty_file`, :func:`misplaced_files`), and
every view (``crewtrain-nb info``/``show``, the report, the browser) says it in
these words.

Nothing here touches files, pandas or widgets: :mod:`crewtrain_nb.frames`, the
browser and the report build on these functions.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "EMPTY_FILE_NOTE",
    "FEEDBACK_KEYS",
    "FEEDBACK_STATUSES",
    "LEGACY_KEYS",
    "STATUS_LABELS",
    "TRAINED_KEYS",
    "ZERO_BYTE_NOTE",
    "CrewAIVersion",
    "FeedbackStatus",
    "FieldNote",
    "diff_words",
    "explain_empty_file",
    "explain_status",
    "explain_statuses",
    "feedback_status",
    "field_notes",
    "holds_feedback",
    "is_feedback_record",
    "is_trained_entry",
    "misplaced_files",
    "record_version",
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
#: How the views name each status.
STATUS_LABELS: dict[FeedbackStatus, str] = {
    "complete": "complete",
    "no_improved_output": "no improved output",
    "no_feedback": "empty feedback",
}

CrewAIVersion = Literal["0.86", "1.x"]
#: Keys CrewAI 0.86 adds to every ``training_data.pkl`` record: the agent's id and its role.
LEGACY_KEYS: tuple[str, str] = ("agent", "agent_role")

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


def holds_feedback(data: Mapping[Any, Any]) -> bool:
    """Whether a store's records are CrewAI feedback (``training_data.pkl``), not metrics.

    Only each agent's first record is looked at: a lazy store fetches just that one.

    Examples
    --------
    >>> holds_feedback({"a": {0: {"initial_output": "x", "human_feedback": "y"}}})
    True
    >>> holds_feedback({"a": {0: {"loss": 0.5}}}), holds_feedback({})
    (False, False)
    """
    for records in data.values():
        if isinstance(records, Mapping):
            for key in records:
                if is_feedback_record(records[key]):
                    return True
                break
    return False


def record_version(record: Any) -> CrewAIVersion:
    """Which CrewAI wrote a ``training_data.pkl`` record: ``"0.86"`` when it carries ``agent``/``agent_role``.

    CrewAI 0.86 stores the agent's id and role in every record; 1.x stores only
    :data:`FEEDBACK_KEYS`. The version changes what a missing
    ``improved_output`` means (see :func:`explain_status`).

    Examples
    --------
    >>> record_version({"initial_output": "x", "human_feedback": "y", "agent": "42af", "agent_role": "Writer"})
    '0.86'
    >>> record_version({"initial_output": "x", "human_feedback": "y"})
    '1.x'
    """
    if isinstance(record, Mapping) and any(key in record for key in LEGACY_KEYS):
        return "0.86"
    return "1.x"


_NOT_IMPROVED: dict[CrewAIVersion, str] = {
    "1.x": (
        "the agent has not answered again after the feedback: the run was interrupted (Ctrl-C or a killed "
        "process) before CrewAI recorded the improved output, or it is still running; CrewAI's evaluator "
        "rejects such a record"
    ),
    "0.86": (
        "CrewAI 0.86 does not record the improved output: when the feedback asks for changes, a second "
        "feedback round replaces initial_output and human_feedback in place, so initial_output holds the "
        "revised answer (crewAI #1761)"
    ),
}
_REJECTED = "CrewAI's evaluator rejects this record"


def explain_status(status: FeedbackStatus, *, version: CrewAIVersion = "1.x") -> str:
    """What a :func:`feedback_status` means, for records of that CrewAI version.

    Examples
    --------
    >>> explain_status("no_feedback")
    "the feedback is empty: CrewAI's evaluator rejects this record"
    >>> explain_status("no_improved_output", version="0.86").startswith("CrewAI 0.86 does not record")
    True
    """
    if status == "complete":
        return "the feedback and the agent's improved output are both recorded"
    if status == "no_improved_output":
        return _NOT_IMPROVED["0.86" if version == "0.86" else "1.x"]
    if status == "no_feedback":
        return f"the feedback is empty: {_REJECTED}"
    raise ValueError(f"status must be one of {', '.join(map(repr, FEEDBACK_STATUSES))}; got {status!r}")


def explain_statuses(records: Iterable[Any]) -> list[str]:
    """One ``"label: meaning"`` line per status (and CrewAI version) found in ``records``, complete ones left out.

    In :data:`FEEDBACK_STATUSES` order, 1.x before 0.86: the legend ``info``
    and the report print under their status counts.

    Examples
    --------
    >>> explain_statuses([{"initial_output": "x", "human_feedback": ""}, {"initial_output": "x"}])
    ["empty feedback: the feedback is empty: CrewAI's evaluator rejects this record"]
    """
    found = {(feedback_status(record), record_version(record)) for record in records}
    lines = [
        f"{STATUS_LABELS[status]}: {explain_status(status, version=version)}"
        for status in FEEDBACK_STATUSES[1:]
        for version in ("1.x", "0.86")
        if (status, version) in found
    ]
    return list(dict.fromkeys(lines))  # empty feedback means the same in both versions


@dataclass(frozen=True)
class FieldNote:
    """A field of a record that is ``"missing"`` (absent or ``None``) or ``"empty"`` (blank), and what that means."""

    state: Literal["missing", "empty"]
    meaning: str

    def __str__(self) -> str:
        return f"{self.state}: {self.meaning}"


def field_notes(record: Any) -> dict[str, FieldNote]:
    """What is missing or empty in a ``training_data.pkl`` record and what that means, by field.

    Returns
    -------
    dict of str to FieldNote
        ``{"human_feedback" | "improved_output": note}`` for those fields that
        are missing, ``None`` or ``""`` (what CrewAI's evaluator rejects: it
        tests ``not value``, so whitespace passes); ``{}`` for a complete
        record. What a missing ``improved_output`` means depends on
        :func:`record_version`.

    Examples
    --------
    >>> str(field_notes({"initial_output": "draft", "human_feedback": ""})["human_feedback"])
    "empty: CrewAI's evaluator rejects this record"
    >>> field_notes({"initial_output": "a", "human_feedback": "b", "improved_output": "c"})
    {}
    """
    if not isinstance(record, Mapping):
        return {}
    notes: dict[str, FieldNote] = {}
    for key, meaning in (
        ("human_feedback", _REJECTED),
        ("improved_output", _NOT_IMPROVED[record_version(record)]),
    ):
        value = record.get(key)
        if value is None or text_of(value) == "":
            notes[key] = FieldNote("missing" if value is None else "empty", meaning)
    return notes


#: ``crewtrain-nb info`` and the views say this of a store file holding ``{}``.
EMPTY_FILE_NOTE = "{}: CrewAI writes {} to both files when train() fails, and when it starts before the first feedback"
#: ... and this of a file of zero bytes.
ZERO_BYTE_NOTE = "0 bytes: CrewAI truncates the file while it writes; if no training is running, the file is damaged"


def explain_empty_file(size: int | None = None) -> str:
    """Why a store file reads as empty: a zero-byte file (``size == 0``) or one holding ``{}``.

    Examples
    --------
    >>> explain_empty_file(0)
    '0 bytes: CrewAI truncates the file while it writes; if no training is running, the file is damaged'
    >>> explain_empty_file(5)
    '{}: CrewAI writes {} to both files when train() fails, and when it starts before the first feedback'
    """
    return ZERO_BYTE_NOTE if size == 0 else EMPTY_FILE_NOTE


def misplaced_files(
    kind: str,
    trained_kind: str | None,
    *,
    source: str | None = None,
    trained: str | None = None,
    option: str = "trained=",
) -> str | None:
    """What is wrong when a trained-agents file is given as the training data, or the reverse; else ``None``.

    Parameters
    ----------
    kind, trained_kind
        :func:`~crewtrain_nb.store_kind` of the main source and of the
        trained-agents source (``None`` when none was given).
    source, trained
        How to name the two sources (their paths); ``None`` names them by role.
    option
        How the caller passes the trained-agents file (``"trained="``, ``"--trained"``).

    Examples
    --------
    >>> misplaced_files("iterations", "trained_agents") is None
    True
    >>> misplaced_files("trained_agents", "iterations", source="t.pkl", trained="d.pkl").split("; ")[1]
    'give d.pkl as the source and t.pkl as trained='
    """
    main = source or "the source"
    other = trained or f"the {option.strip('-=')} source"
    if kind == "trained_agents":
        if trained_kind == "iterations":
            return (
                f"the two files are swapped: {main} holds trained agents (role -> suggestions, quality, "
                f"final_summary) and {other} holds the training records; give {other} as the source and {main} "
                f"as {option}"
            )
        return (
            f"{main} holds trained agents (role -> suggestions, quality, final_summary), not training records; "
            f"give the training_data.pkl of the run as the source and this file as {option}"
        )
    if trained_kind == "iterations":
        return (
            f"{other}, given as {option}, holds agent -> iteration records (a training_data.pkl or a metric "
            "log), not trained agents; give the trained_agents_data.pkl of the run there"
        )
    return None


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
