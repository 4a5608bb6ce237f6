"""A self-contained HTML report of a training store.

The flow is one-way: :func:`summarize_report` reads the store into a pure
:class:`ReportSummary` (DataFrames only), :func:`render_report_html` turns it
into one HTML string (figures embedded as inline SVG, styles inline, no
external assets), and :class:`Report` wraps both for notebooks
(``_repr_html_``) and files (:meth:`Report.write_html`).
"""

from __future__ import annotations

import html
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from .crewai.checks import Finding, check_training
from .crewai.compare import RoleComparison, compare_entries
from .crewai.files import (
    FEEDBACK_STATUSES,
    STATUS_LABELS,
    explain_empty_file,
    explain_statuses,
    is_feedback_record,
    misplaced_files,
)
from .crewai.sidecar import find_sidecar
from .crewai.sources import read_trained
from .errors import StoreFormatError
from .frames import feedback_frame, metrics_frame, open_store, store_kind, trained_agents_frame
from .navigation import agent_labels, check_agent_names, curve_frame
from .plots import plot_feedback, plot_metrics, plot_quality
from .render import comparison_html, findings_html, message_html, record_html, trained_html
from .store import SHARED_MODE, Source, atomic_file, open_source

__all__ = ["Report", "ReportSummary", "build_report", "render_report_html", "summarize_report", "write_report"]

#: Records shown per agent in the feedback section; the rest are counted, not shown.
MAX_RECORDS_PER_AGENT = 200


@dataclass(frozen=True)
class ReportSummary:
    """Everything the report shows, computed from the store; no HTML yet.

    Attributes
    ----------
    title
        The report's heading.
    source
        Path of the store, or ``None`` for an in-memory dict.
    kind
        :func:`~crewtrain_nb.store_kind` of the store.
    agents
        One row per agent: label, role, records, first/last iteration, and
        either feedback statuses (CrewAI) or the last value of each metric.
    metrics
        :func:`~crewtrain_nb.metrics_frame` of the store (may be empty).
    feedback
        :func:`~crewtrain_nb.feedback_frame` when the records are CrewAI feedback, else ``None``.
    trained
        :func:`~crewtrain_nb.trained_agents_frame` of the trained-agents source, or ``None``.
    records
        ``{agent: {iteration: record}}`` of the records shown in the feedback section.
    labels
        ``{agent: dropdown-style label}``.
    notes
        What the store's outcomes mean: why it is empty, or one ``"status:
        meaning"`` line per feedback status it holds (see
        :func:`crewtrain_nb.crewai.explain_statuses`).
    trained_note
        Why the trained-agents file is empty, when it is.
    findings
        :func:`~crewtrain_nb.crewai.check_training` of CrewAI feedback records (and the trained file).
    comparison
        :func:`~crewtrain_nb.crewai.compare_entries` of ``compare_with`` (before) and ``trained``
        (after): one :class:`~crewtrain_nb.crewai.RoleComparison` per role; ``None`` without ``compare_with``.
    compare_source
        Path of the ``compare_with`` file (``None`` for a dict or without one).
    """

    title: str
    source: str | None
    kind: str
    agents: pd.DataFrame
    metrics: pd.DataFrame
    feedback: pd.DataFrame | None
    trained: pd.DataFrame | None
    trained_source: str | None = None
    records: dict[str, dict[int, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    trained_entries: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    trained_note: str | None = None
    findings: tuple[Finding, ...] = ()
    comparison: tuple[RoleComparison, ...] | None = None
    compare_source: str | None = None


def _agent_rows(
    data: Mapping[str, Any], metrics: pd.DataFrame, feedback: pd.DataFrame | None, labels: dict[str, str]
) -> pd.DataFrame:
    rows = []
    for agent, records in data.items():
        if not isinstance(records, Mapping):
            continue
        iterations = [key for key in records if isinstance(key, int)]
        row: dict[str, Any] = {
            "agent": labels.get(agent, agent),
            "records": len(records),
            "first iteration": min(iterations) if iterations else None,
            "last iteration": max(iterations) if iterations else None,
        }
        if feedback is not None:
            mine = feedback[feedback["agent"] == agent]
            for status in FEEDBACK_STATUSES:
                row[STATUS_LABELS[status]] = int((mine["status"] == status).sum())
            row["mean similarity"] = (
                round(float(mine["similarity"].mean()), 3) if mine["similarity"].notna().any() else None
            )
        elif not metrics.empty:
            mine = metrics[metrics["agent"] == agent]
            for metric, values in mine.groupby("metric", sort=True):
                row[f"last {metric}"] = round(float(values.sort_values("iteration")["value"].iloc[-1]), 4)
        rows.append(row)
    return pd.DataFrame(rows)


def summarize_report(
    source: Source,
    *,
    trained: Source | None = None,
    agent_names: Mapping[str, str] | None = None,
    compare_with: Source | None = None,
    title: str | None = None,
    trusted: bool = False,
) -> ReportSummary:
    """Read a store (and optionally its trained-agents file) into a :class:`ReportSummary`.

    Parameters
    ----------
    source
        A handler, a store path, or the store's dict.
    trained
        Optional ``trained_agents_data.pkl`` source: agents are labelled with their roles as the browser
        labels them (``"Role · 0f8fad5b"``, ``" (inferred)"`` after a role
        :func:`~crewtrain_nb.crewai.match_roles` inferred), and the findings check it too.
    agent_names
        Optional ``{agent_id: role}``; before any role found. A mapping none of whose keys is an agent
        id warns (``UserWarning``), naming the ids.
    compare_with
        Another trained file (an earlier run, or a version kept before curating): a "Compared" section
        shows :func:`~crewtrain_nb.crewai.compare_trained` of it (before) and ``trained`` (after).
        Needs ``trained``.
    title
        Heading; defaults to the store's file name.
    trusted
        Paths are opened with the full unpickler, which imports the classes
        the files name: only for files you trust (pickles can run code).

    Raises
    ------
    ValueError
        ``source`` is a trained-agents file, or ``trained`` holds agent ->
        iteration records (the two files swapped); the message says which is which;
        ``compare_with`` without ``trained``.
    """
    if compare_with is not None and trained is None:
        raise ValueError("compare_with= compares a trained file with trained=; pass trained= too")
    store = open_store(source, trusted=trusted)  # checks the shape, naming the file when it is wrong
    data, path, kind = store.data, store.path, store.kind
    trained_data: Mapping[str, Any] = {}
    trained_path = None
    trained_kind = None
    if trained is not None:
        loaded, trained_path = open_source(trained, trusted=trusted)
        trained_data = loaded if isinstance(loaded, Mapping) else {}
        trained_kind = store_kind(loaded) if isinstance(loaded, Mapping) else None
    problem = misplaced_files(kind, trained_kind, source=path, trained=trained_path)
    if problem:
        raise ValueError(problem)
    names = dict(agent_names or {})
    check_agent_names(names, data, stacklevel=4)
    labels = agent_labels(data, names=names, trained=trained_data, path=path)
    metrics = metrics_frame(data) if kind == "iterations" else pd.DataFrame()
    records = {agent: dict(records) for agent, records in data.items() if isinstance(records, Mapping)}
    has_feedback = kind == "iterations" and any(
        is_feedback_record(record) for agent_records in records.values() for record in agent_records.values()
    )
    feedback = feedback_frame(data) if has_feedback else None
    notes: tuple[str, ...] = ()
    if not data:
        notes = (f"The store is empty ({explain_empty_file(_stored_bytes(source, path))}).",)
    elif has_feedback:
        notes = tuple(explain_statuses(record for shown in records.values() for record in shown.values()))
    trained_note = None
    if trained is not None and not trained_data:
        why = explain_empty_file(_stored_bytes(trained, trained_path))
        trained_note = f"The trained-agents file is empty ({why})."
    findings: tuple[Finding, ...] = ()
    if has_feedback:
        try:
            recorded = find_sidecar(None, path)
            findings = tuple(
                check_training(data, trained_data if trained is not None else None, sidecar=recorded or False)
            )
        except StoreFormatError:  # records of several shapes: the feedback section shows them as they are
            findings = ()
    comparison: tuple[RoleComparison, ...] | None = None
    compare_source = None
    if compare_with is not None:
        before, compare_source = read_trained(compare_with, trusted=trusted, name="compare_with")
        comparison = tuple(compare_entries(before, trained_data))
    if has_feedback and metrics.empty:
        # CrewAI records hold text: their curves are output lengths and similarity per iteration.
        metrics = pd.concat([curve_frame(data, agent) for agent in records], ignore_index=True)
    return ReportSummary(
        title=title or (f"Training report: {os.path.basename(path)}" if path else "Training report"),
        source=path,
        kind=kind,
        agents=_agent_rows(data, metrics, feedback, labels),
        metrics=metrics,
        feedback=feedback,
        trained=trained_agents_frame(trained_data) if trained is not None else None,
        trained_source=trained_path,
        records=records if has_feedback else {},
        labels=labels,
        trained_entries=dict(trained_data),
        notes=notes,
        trained_note=trained_note,
        findings=findings,
        comparison=comparison,
        compare_source=compare_source,
    )


def _stored_bytes(source: Source, path: str | None) -> int | None:
    """Bytes on disk of the store behind ``source`` (``None`` for in-memory data or a remote store)."""
    stats = getattr(source, "stats", None)
    if callable(stats):
        facts = stats()
        return int(facts.bytes) if facts.changed is not None else None  # None: the file does not exist
    try:
        return os.stat(path).st_size if path else None
    except OSError:
        return None


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "crewtrain", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


#: The report's own styles, all under ``.ctn-report``: shown in a notebook, the report restyles nothing around it.
#: Text and background come from the notebook's theme (``--jp-*``), else from the reader's light or dark
#: preference (``Canvas``/``CanvasText`` with ``color-scheme``); figures sit on a white card.
_PAGE_STYLE = """<style>
.ctn-report{color-scheme:light dark;color:var(--jp-content-font-color1,CanvasText);
background:var(--jp-layout-color0,Canvas);font-family:system-ui,-apple-system,Segoe UI,sans-serif;
margin:0 auto;max-width:70em;padding:1em 1em 2em 1em}
.ctn-report h1{font-size:1.6em}
.ctn-report h2{border-bottom:1px solid var(--jp-border-color2,rgba(128,128,128,.4));padding-bottom:.2em;margin-top:2em}
.ctn-report table.ctn-summary{border-collapse:collapse;font-size:13px;color:inherit}
.ctn-report table.ctn-summary th,.ctn-report table.ctn-summary td{border-bottom:1px solid
var(--jp-border-color2,rgba(128,128,128,.4));padding:3px 10px;text-align:left;color:inherit}
.ctn-report .ctn-figure{background:#fff;border-radius:4px;padding:6px}
.ctn-report .ctn-figure svg{max-width:100%;height:auto}
.ctn-report details{margin:.4em 0}.ctn-report summary{cursor:pointer;font-weight:600}
.ctn-report .ctn-meta{font-size:13px}
</style>"""

#: Only in the standalone document: the page around the report takes the reader's light or dark preference.
_DOCUMENT_STYLE = "<style>:root{color-scheme:light dark}body{margin:0;background:Canvas}</style>"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, classes="ctn-summary", border=0, na_rep="—", escape=True)


def render_report_html(summary: ReportSummary) -> str:
    """Render a :class:`ReportSummary` as one self-contained HTML document."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(summary.title)}</title>{_DOCUMENT_STYLE}</head><body>",
        f"<div class='ctn-report'>{_PAGE_STYLE}<h1>{html.escape(summary.title)}</h1>",
        "<p class='ctn-meta'>",
        f"Store: <code>{html.escape(_shown_path(summary.source) or 'in-memory data')}</code> · "
        f"kind: {html.escape(summary.kind)}",
    ]
    if summary.trained_source:
        parts.append(f" · trained agents: <code>{html.escape(_shown_path(summary.trained_source) or '')}</code>")
    parts.append("</p>")

    parts.append("<section id='summary'><h2>Summary</h2>")
    if summary.agents.empty:
        parts.append(message_html("The store holds no agent → iteration records."))
    else:
        n_records = int(summary.agents["records"].sum())
        parts.append(f"<p>{len(summary.agents)} agents, {n_records} records.</p>{_table(summary.agents)}")
    if summary.notes:
        items = "".join(f"<li>{html.escape(note)}</li>" for note in summary.notes)
        parts.append(f"<ul class='ctn-notes'>{items}</ul>")
    parts.append("</section>")

    if summary.feedback is not None:
        parts.append("<section id='findings'><h2>Findings</h2>")
        parts.append(findings_html(summary.findings, labels=summary.labels))
        parts.append("</section>")

    parts.append("<section id='curves'><h2>Training curves</h2>")
    if summary.metrics.empty:
        parts.append(message_html("No numeric metrics in this store."))
    else:
        figure = plot_metrics(summary.metrics, agent_names=summary.labels)
        parts.append(f"<div class='ctn-figure'>{_svg(figure)}</div>")
    parts.append("</section>")

    if summary.feedback is not None:
        parts.append("<section id='feedback'><h2>Feedback</h2>")
        feedback_figure = plot_feedback(summary.records, agent_names=summary.labels)
        parts.append(f"<div class='ctn-figure'>{_svg(feedback_figure)}</div>")
        for agent, records in summary.records.items():
            label = summary.labels.get(agent, agent)
            shown = sorted(records)[:MAX_RECORDS_PER_AGENT]
            count = f"{len(records)} iteration" + ("" if len(records) == 1 else "s")
            parts.append(f"<details open><summary>{html.escape(label)} — {count}</summary>")
            for iteration in shown:
                parts.append(record_html(records[iteration], title=f"iteration {iteration}"))
            if len(records) > len(shown):
                parts.append(message_html(f"{len(records) - len(shown)} more iterations not shown."))
            parts.append("</details>")
        parts.append("</section>")

    if summary.trained is not None:
        parts.append("<section id='trained'><h2>Trained agents</h2>")
        if summary.trained_note:
            parts.append(message_html(summary.trained_note))
        if not summary.trained.empty:
            # .figure.figure: the root Figure (an Axes' .figure may be a SubFigure; a Figure's .figure is itself)
            quality = plot_quality(summary.trained_entries).figure.figure
            parts.append(f"<div class='ctn-figure'>{_svg(quality)}</div>")
        for role, entry in summary.trained_entries.items():
            parts.append(trained_html(str(role), entry))
        parts.append("</section>")

    if summary.comparison is not None:
        before = _shown_path(summary.compare_source) or "compare_with"
        after = _shown_path(summary.trained_source) or "trained"
        parts.append("<section id='compare'><h2>Compared with another trained file</h2>")
        parts.append(comparison_html(summary.comparison, before=before, after=after))
        parts.append("</section>")

    parts.append("<p class='ctn-meta'>Made with crewtrain_nb.</p></div></body></html>")
    return "".join(parts)


class Report:
    """An HTML report: shows itself in a notebook, writes itself to a file.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> report = build_report(make_metrics_data(iterations=5), title="Demo")
    >>> "<h1>Demo</h1>" in report.html()
    True
    """

    def __init__(self, summary: ReportSummary) -> None:
        self.summary = summary
        self._html: str | None = None

    def html(self) -> str:
        """The whole document."""
        if self._html is None:
            self._html = render_report_html(self.summary)
        return self._html

    def write_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the document (UTF-8) and return its path.

        The file is replaced atomically (a failed write leaves the old one); a
        new file gets the user's usual permissions (the umask applies), an
        existing one keeps its own.
        """
        target = Path(path)
        payload = self.html().encode("utf-8")
        with atomic_file(target, mode=SHARED_MODE) as file:
            file.write(payload)
        return target

    def _repr_html_(self) -> str:
        # The body only: a notebook gets the report and its scoped styles, never page-level rules.
        document = self.html()
        return document[document.index("<body>") + len("<body>") : document.rindex("</body>")]


def build_report(
    source: Source,
    *,
    trained: Source | None = None,
    agent_names: Mapping[str, str] | None = None,
    compare_with: Source | None = None,
    title: str | None = None,
    trusted: bool = False,
) -> Report:
    """Summarize ``source`` (as :func:`summarize_report`) and return a :class:`Report`."""
    return Report(
        summarize_report(
            source, trained=trained, agent_names=agent_names, compare_with=compare_with, title=title, trusted=trusted
        )
    )


def write_report(
    source: Source,
    path: str | os.PathLike[str],
    *,
    trained: Source | None = None,
    agent_names: Mapping[str, str] | None = None,
    compare_with: Source | None = None,
    title: str | None = None,
    trusted: bool = False,
) -> Path:
    """Write the HTML report of ``source`` (as :func:`summarize_report`) to ``path``; return the path.

    The file is replaced atomically; a new one gets the user's usual permissions.
    """
    report = build_report(
        source, trained=trained, agent_names=agent_names, compare_with=compare_with, title=title, trusted=trusted
    )
    return report.write_html(path)


def _shown_path(path: str | None) -> str | None:
    """A store path as the report shows it: relative to the working directory when it lies inside it.

    A report is often shared; a path below the folder it was made in says where the file is without
    showing the home directory around it.
    """
    if not path or "://" in path:
        return path
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith(os.pardir) else relative
