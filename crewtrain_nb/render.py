"""Pure HTML renderers for one record, one trained agent, a message.

Shared by the notebook browser and the HTML report. Every piece of record text
goes through :func:`html.escape`: a record is data, never markup.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from .crewai.checks import Finding
from .crewai.compare import RoleComparison
from .crewai.files import FEEDBACK_KEYS, diff_words, field_notes, is_feedback_record
from .store import OpaqueObject

__all__ = [
    "comparison_html",
    "diff_html",
    "findings_html",
    "flatten_record",
    "is_array",
    "message_html",
    "prompt_html",
    "record_html",
    "summarize_array",
    "trained_html",
]

#: Inline styles, so the HTML looks the same in Jupyter, Voila and a report opened from disk. Colours come
#: from the notebook's theme (JupyterLab's ``--jp-*`` variables: light, dark, any other) and fall back to
#: a light or dark palette by the reader's ``prefers-color-scheme`` where there is no such theme. Each box
#: sets its own text colour *and* background from the same source, so its text is readable whatever the
#: page around it is (VS Code, nbviewer, a report on disk); diff and note colours are translucent tints
#: over that background. Figures sit on a white card (``.ctn-figure``): they are drawn in light colours.
_STYLE = """<style>
.ctn-box{--ctn-fg:var(--jp-content-font-color1,#1f1f1f);--ctn-bg:var(--jp-layout-color1,#fff);
--ctn-panel:var(--jp-layout-color2,#efefef);--ctn-line:var(--jp-border-color2,#d9d9d9);
color:var(--ctn-fg);background:var(--ctn-bg);border-radius:4px;padding:.1em .5em .3em .5em;
font-family:system-ui,-apple-system,Segoe UI,sans-serif;font-size:13px;line-height:1.45;max-width:60em}
@media (prefers-color-scheme:dark){.ctn-box{--ctn-fg:var(--jp-content-font-color1,#e8e8e8);
--ctn-bg:var(--jp-layout-color1,#1e1e1e);--ctn-panel:var(--jp-layout-color2,#333);
--ctn-line:var(--jp-border-color2,#4a4a4a)}}
.ctn-box h4{margin:.3em 0 .2em 0;font-size:13px;color:inherit}
.ctn-box .ctn-text{white-space:pre-wrap;background:var(--ctn-panel);color:var(--ctn-fg);border-radius:4px;
padding:.4em .6em}
.ctn-box ins{background:rgba(46,160,67,.3);color:inherit;text-decoration:none}
.ctn-box del{background:rgba(248,81,73,.3);color:inherit;text-decoration-color:rgba(248,81,73,.9)}
.ctn-box table{border-collapse:collapse;color:inherit}
.ctn-box .ctn-table tr:nth-child(n){background:none}
.ctn-box td,.ctn-box th{border-bottom:1px solid var(--ctn-line);padding:2px 10px 2px 0;text-align:left;
vertical-align:top;color:inherit}
.ctn-box .ctn-note{color:var(--ctn-fg);background:rgba(255,152,0,.16);border-left:3px solid #f59b00;
border-radius:4px;padding:.3em .6em}
.ctn-box .ctn-muted{color:inherit;font-style:italic}
.ctn-figure{background:#fff;border-radius:4px;padding:6px;box-sizing:border-box}
</style>"""


def _text(value: Any) -> str:
    # A placeholder of a user's class shows its class and fields (str), not its repr.
    return html.escape(value if isinstance(value, str) else str(value) if type(value) is OpaqueObject else repr(value))


def diff_html(before: str, after: str) -> str:
    """Word-level diff of ``before`` → ``after`` as HTML: ``<del>`` removed, ``<ins>`` added.

    Examples
    --------
    >>> diff_html("the cat sat", "the dog sat")
    'the <del>cat</del><ins>dog</ins> sat'
    """
    parts = []
    for op, text in diff_words(before, after):
        escaped = html.escape(text)
        if op == "delete":
            parts.append(f"<del>{escaped}</del>")
        elif op == "insert":
            parts.append(f"<ins>{escaped}</ins>")
        else:
            parts.append(escaped)
    return "".join(parts)


def summarize_array(value: Any) -> str:
    """Describe a list, tuple or numpy array by shape and, when numeric, min / mean / max.

    Examples
    --------
    >>> summarize_array([1.0, 2.0, 6.0])
    'shape (3,) · min 1 · mean 3 · max 6'
    >>> summarize_array(["a", "b"])
    'shape (2,) · not numeric'
    """
    import numpy as np

    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nesting
        return f"length {len(value)} · ragged"
    shape = f"shape {tuple(array.shape)}"
    if array.size == 0:
        return f"{shape} · empty"
    if array.dtype.kind not in "iuf" or array.dtype.kind == "b":
        return f"{shape} · not numeric"
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    if finite.size == 0:
        return f"{shape} · no finite values"
    return f"{shape} · min {finite.min():.4g} · mean {finite.mean():.4g} · max {finite.max():.4g}"


def is_array(value: Any) -> bool:
    """Whether a leaf is shown as an array summary: a list, a tuple or a numpy array."""
    return isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray"


def flatten_record(record: Any, *, sep: str = ".") -> list[tuple[str, Any]]:
    """Flatten nested dicts into ``(key, leaf)`` pairs, nested keys joined with ``sep``.

    Examples
    --------
    >>> flatten_record({"loss": 0.5, "metrics": {"f1": 0.9}})
    [('loss', 0.5), ('metrics.f1', 0.9)]
    """
    if type(record) is OpaqueObject:
        record = record.fields
    if not isinstance(record, Mapping):
        return [("value", record)]
    pairs: list[tuple[str, Any]] = []

    def walk(prefix: str, node: Mapping[Any, Any]) -> None:
        for key, value in node.items():
            name = f"{prefix}{sep}{key}" if prefix else str(key)
            if type(value) is OpaqueObject:  # a user's class: its fields, one row each
                value = value.fields
            if isinstance(value, Mapping) and value:
                walk(name, value)
            else:
                pairs.append((name, value))

    walk("", record)
    return pairs


def _leaf_html(value: Any) -> str:
    if is_array(value):
        return f"<span class='ctn-muted'>{html.escape(summarize_array(value))}</span>"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return html.escape(f"{value:.6g}")
        except (TypeError, ValueError):  # a Real that formats no "g" (e.g. Fraction before Python 3.12)
            return html.escape(str(value))
    return _text(value)


def _feedback_html(record: Mapping[str, Any]) -> str:
    initial = record.get("initial_output")
    feedback = record.get("human_feedback")
    improved = record.get("improved_output")
    notes = field_notes(record)  # what a missing or empty field means, in the words every view uses
    parts = ["<h4>Human feedback</h4>"]
    if "human_feedback" in notes:
        note = notes["human_feedback"]
        parts.append(f"<div class='ctn-note ctn-no-feedback'>Feedback {note.state}: {html.escape(note.meaning)}.</div>")
    else:
        parts.append(f"<div class='ctn-text ctn-feedback'>{_text(feedback)}</div>")
    if "improved_output" in notes:
        parts.append("<h4>Initial output</h4>")
        parts.append(f"<div class='ctn-text'>{_text(initial if initial is not None else '')}</div>")
        meaning = html.escape(notes["improved_output"].meaning)
        parts.append(f"<div class='ctn-note ctn-missing'>No improved output: {meaning}.</div>")
    else:
        parts.append("<h4>Initial output → improved output</h4>")
        parts.append(f"<div class='ctn-text ctn-diff'>{diff_html(str(initial or ''), str(improved))}</div>")
    extra = [(key, value) for key, value in record.items() if key not in FEEDBACK_KEYS]
    if extra:
        parts.append(_table_html(flatten_record(dict(extra))))
    return "".join(parts)


def _table_html(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(key)}</th><td>{_leaf_html(value)}</td></tr>" for key, value in pairs)
    return f"<table class='ctn-table'>{rows}</table>"


def record_html(record: Any, *, title: str | None = None) -> str:
    """Render one record as escaped HTML.

    CrewAI records show the feedback and a word diff of the outputs (with a
    note when ``improved_output`` is missing); other records show a table of
    their flattened keys with arrays summarised.

    Parameters
    ----------
    record
        The record, as stored.
    title
        A heading, e.g. ``"Writer · iteration 3"``.
    """
    heading = f"<h4>{html.escape(title)}</h4>" if title else ""
    if is_feedback_record(record):
        body = _feedback_html(record)
    else:
        body = _table_html(flatten_record(record))
    return f"{_STYLE}<div class='ctn-box'>{heading}{body}</div>"


def trained_html(role: str, entry: Any) -> str:
    """Render a ``trained_agents_data.pkl`` entry: quality, suggestions, final summary."""
    if not isinstance(entry, Mapping):
        return message_html(f"No trained-agent entry for role {role!r}.")
    quality = entry.get("quality")
    suggestions = entry.get("suggestions") or []
    items = "".join(f"<li>{_text(s)}</li>" for s in suggestions)
    quality_text = f"{float(quality):.1f} / 10" if isinstance(quality, numbers.Real) else "—"  # also a Fraction
    return (
        f"{_STYLE}<div class='ctn-box ctn-trained'><h4>Trained agent: {html.escape(role)}</h4>"
        f"<div>Quality: <b>{html.escape(quality_text)}</b></div>"
        f"<h4>Suggestions</h4><ul>{items or '<li class=ctn-muted>none</li>'}</ul>"
        f"<h4>Final summary</h4><div class='ctn-text'>{_text(entry.get('final_summary', ''))}</div></div>"
    )


def message_html(text: str) -> str:
    """A friendly, escaped message box (empty store, unknown agent, ...)."""
    return f"{_STYLE}<div class='ctn-box'><div class='ctn-note'>{html.escape(text)}</div></div>"


def findings_html(findings: Sequence[Finding], *, labels: Mapping[str, str] | None = None) -> str:
    """What :func:`~crewtrain_nb.crewai.check_training` found: one row per finding (code, agent, what to do).

    ``labels`` shows an agent id as its label (e.g. ``"Writer · 0f8fad5b"``).
    """
    if not findings:
        return message_html("No findings: CrewAI's evaluator will accept these records.")
    names = labels or {}
    rows = "".join(
        f"<tr><td><code>{html.escape(finding.code)}</code></td>"
        f"<td>{html.escape(names.get(finding.agent, finding.agent) if finding.agent is not None else '—')}</td>"
        f"<td>{'—' if finding.iteration is None else finding.iteration}</td>"
        f"<td>{html.escape(finding.message)}</td><td>{html.escape(finding.what_to_do)}</td></tr>"
        for finding in findings
    )
    count = f"{len(findings)} finding" + ("" if len(findings) == 1 else "s")
    return (
        f"{_STYLE}<div class='ctn-box ctn-findings-list'><h4>Findings: {count}</h4><table class='ctn-table'>"
        "<tr><th>code</th><th>agent</th><th>iteration</th><th>what is wrong</th><th>what to do</th></tr>"
        f"{rows}</table></div>"
    )


def _quality_text(value: float, *, sign: bool = False) -> str:
    return "—" if math.isnan(value) else (f"{value:+.1f}" if sign else f"{value:.1f}")


def comparison_html(rows: Sequence[RoleComparison], *, before: str = "before", after: str = "after") -> str:
    """Two trained files role by role (:func:`~crewtrain_nb.crewai.compare_entries`): quality, suggestions changed.

    ``before`` and ``after`` name the two files in the heading.
    """
    if not rows:
        return message_html("Both trained files are empty.")
    presence = {"both": "both", "only_a": f"{before} only", "only_b": f"{after} only"}
    lines = "".join(
        f"<tr><td>{html.escape(row.role)}</td><td>{html.escape(presence[row.presence])}</td>"
        f"<td>{_quality_text(row.quality_before)}</td><td>{_quality_text(row.quality_after)}</td>"
        f"<td>{_quality_text(row.quality_delta, sign=True)}</td>"
        f"<td>{len(row.added)}</td><td>{len(row.removed)}</td><td>{len(row.kept)}</td></tr>"
        for row in rows
    )
    changes = "".join(
        f"<h4>{html.escape(row.role)}</h4><ul class='ctn-changes'>"
        + "".join(f"<li><del>{html.escape(text)}</del></li>" for text in row.removed)
        + "".join(f"<li><ins>{html.escape(text)}</ins></li>" for text in row.added)
        + "</ul>"
        for row in rows
        if row.added or row.removed
    )
    return (
        f"{_STYLE}<div class='ctn-box ctn-comparison'><h4>{html.escape(before)} → {html.escape(after)}</h4>"
        "<table class='ctn-table'><tr><th>role</th><th>in</th><th>quality before</th><th>after</th><th>change</th>"
        f"<th>added</th><th>removed</th><th>kept</th></tr>{lines}</table>{changes}</div>"
    )


def prompt_html(role: str, text: str) -> str:
    """The text CrewAI appends to the task prompt of an agent with ``role``, shown exactly (whitespace kept)."""
    shown = text if text else "(nothing: CrewAI appends no instructions)"
    return (
        f"{_STYLE}<div class='ctn-box ctn-prompt-box'><h4>What CrewAI appends to a {html.escape(role)}'s task prompt"
        f"</h4><div class='ctn-text'>{html.escape(shown)}</div></div>"
    )
