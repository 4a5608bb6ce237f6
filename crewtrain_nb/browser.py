"""``TrainingBrowser``: an ipywidgets explorer over agents and iterations.

Wiring only. What to list comes from :mod:`crewtrain_nb.navigation`, what a
record looks like from :mod:`crewtrain_nb.render`, the curves from
:mod:`crewtrain_nb.plots`, and the data from the store through
:func:`crewtrain_nb.store.open_view` (so safe loading applies). A SQLite store
is browsed lazily: the agent list first, then only the agent being looked at.
The trained pane's curation is :func:`crewtrain_nb.crewai.revise_suggestions`
(the draft), :func:`~crewtrain_nb.crewai.instructions_text` (the preview) and
:func:`~crewtrain_nb.crewai.edit_suggestions` (Save); findings come from
:func:`~crewtrain_nb.crewai.check_training`, the compare view from
:func:`~crewtrain_nb.crewai.compare_entries`.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import ipywidgets as widgets

from .crewai.checks import Finding, check_training
from .crewai.compare import compare_entries
from .crewai.curate import Revision, edit_suggestions, revise_suggestions
from .crewai.files import explain_empty_file, holds_feedback, misplaced_files
from .crewai.prompt import DEFAULT_TRAINED_FILE, instructions_text
from .crewai.sidecar import find_sidecar
from .crewai.sources import read_trained
from .errors import CorruptStoreError, StoreError, StoreNotFoundError
from .export import export_csv
from .frames import store_kind
from .navigation import (
    agent_options,
    agent_role,
    check_agent_names,
    curve_frame,
    iteration_options,
    resolve_agent,
    role_matches,
    step_iteration,
)
from .plots import MarkedFigure, plot_metrics
from .render import comparison_html, findings_html, message_html, prompt_html, record_html, trained_html
from .store import PickleHandler, Source, SQLiteHandler, StoreVersion, as_handler, open_source, open_view

__all__ = ["TrainingBrowser"]


#: The slider's only option when there is nothing to select (a SelectionSlider cannot be empty).
_NO_ITERATION = "—"


def _safe_file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "agent"


def _trained_beside(source: Any) -> str | None:
    """``trained_agents_data.pkl`` beside a local training file, when it is there (CrewAI writes both in one folder)."""
    path = getattr(source, "file_path", None)
    if not isinstance(path, str) or "://" in path or isinstance(source, SQLiteHandler):
        return None
    beside = os.path.join(os.path.dirname(path), DEFAULT_TRAINED_FILE)
    return beside if os.path.isfile(beside) and os.path.abspath(beside) != os.path.abspath(path) else None


def _draw_curves(data: Mapping[str, Any], agent: str, label: str) -> MarkedFigure | None:
    """The agent's curves with a movable iteration marker, or ``None`` when it has no numbers to plot."""
    frame = curve_frame(data, agent)
    if frame.empty:
        return None
    figure = plot_metrics(
        frame, figsize=(9, 2.6 * ((frame["metric"].nunique() + 2) // 3)), agent_names={agent: label}
    )
    return MarkedFigure(figure, dpi=72)


class TrainingBrowser(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types: VBox is Any here
    """Browse a training store by agent and iteration in a notebook.

    Parameters
    ----------
    source
        A handler, a store path, or the store's dict (``training_data.pkl`` or an
        ML-style log).
        A path that does not exist yet is shown as "no such file yet" and read
        on :meth:`refresh` (or by ``auto_refresh``) once training writes it.
    trained
        Optional ``trained_agents_data.pkl`` source (by default the ``trained_agents_data.pkl`` beside a
        training file given as a path or handler, when there is one; ``False``: none): shows quality, suggestions
        and summary for the selected agent's role, and labels agents with roles
        matched to it (:func:`~crewtrain_nb.crewai.match_roles`: ``"Role · 0f8fad5b
        (inferred)"``). Given as a path or a handler, the pane also curates the
        role's suggestions (remove, edit, reorder, add; Save writes the file
        through :func:`~crewtrain_nb.crewai.edit_suggestions`, a version kept
        first, and Undo restores it) and compares the file with one of its
        versions or with ``compare_with``.
    agent_names
        Optional ``{agent_id: role}``; CrewAI's training file does not record roles.
        A mapping none of whose keys is an agent id warns (``UserWarning``), naming the ids.
    compare_with
        Optional second trained file (path, handler or dict), offered in the
        compare view beside the trained file's versions.
    auto_refresh
        Seconds between checks for a changed store file (``None``: off). The
        store is re-read only when the file changed; the selection is kept.
    export_dir
        Where the export button writes CSV files.
    trusted
        Paths are opened with the full unpickler, which imports the classes
        the files name: only for files you trust (pickles can run code).
    draw_in_background
        Draw an agent's curves (one full matplotlib draw, ~0.1-0.5 s) in a
        worker thread the first time the agent is shown, so the record pane and
        the controls answer at once; later clicks only move the iteration
        marker. ``False`` draws before the click returns.

    Attributes
    ----------
    agent, iteration, filter : ipywidgets widgets
        The controls; set ``.value`` to drive the browser from code.
    suggestions, suggestion_text, compare : ipywidgets widgets
        Curation: the draft's suggestions (a ``Select`` whose value is the index), the text for Replace and
        Add, and the compare choice (``None``, or the path of a version or of ``compare_with``).
    remove_button, up_button, down_button, replace_button, add_button, save_button, undo_button, discard_button
        Curation buttons (``button.click()`` from code).
    draft : list of str
        The selected role's suggestions as curated so far (what Save writes).
    findings : list of Finding
        :func:`~crewtrain_nb.crewai.check_training` of the store (and the trained file).
    findings_pane, prompt_pane, curation_status, compare_pane : ipywidgets.HTML
        The findings; what CrewAI will append for the draft; what Save or Undo did; the comparison.
    record_html : str
        The record pane's current HTML.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> browser = TrainingBrowser(make_metrics_data(iterations=5))
    >>> browser.select("coder", 3)
    'coder'
    >>> browser.iteration.value
    3
    """

    def __init__(
        self,
        source: Source,
        *,
        trained: Source | Literal[False] | None = None,
        agent_names: Mapping[str, str] | None = None,
        compare_with: Source | None = None,
        auto_refresh: float | None = None,
        export_dir: str | os.PathLike[str] = ".",
        draw_in_background: bool = True,
        trusted: bool = False,
    ) -> None:
        # First: close() (also run by the widget's __del__ when __init__ fails) needs these two.
        self._stop = threading.Event()
        self._drawer: ThreadPoolExecutor | None = None
        # Long-lived handlers: re-reading an unchanged file returns the same object. A path
        # that does not exist yet is shown as such, and read once it appears.
        self._source = as_handler(source, trusted=trusted)
        # The trained file beside, when none is given: the CrewAI run's, so dropped for a store of other records.
        self._trained_by_default = trained is None
        if trained is None:
            trained = _trained_beside(self._source)
        wanted = trained is not None and trained is not False
        self._trained_source = as_handler(trained, trusted=trusted) if wanted else None
        self._names = dict(agent_names or {})
        self._compare_source = as_handler(compare_with, trusted=trusted) if compare_with is not None else None
        self._trusted = trusted
        self._export_dir = Path(export_dir)
        # Roles matched from the trained file (or recorded in the sidecar), and the run's findings; per load.
        self._roles: dict[str, tuple[str, str]] = {}
        self.findings: list[Finding] = []
        # Curation: one draft per role, kept until saved or discarded (or the trained file changes).
        self._drafts: dict[str, list[str]] = {}
        self._saved: StoreVersion | None = None
        self._data: Mapping[str, Any] = {}
        self._trained: Mapping[str, Any] = {}
        self._trained_raw: Any = None
        # One drawn figure per agent visited: an iteration change only redraws its marker.
        self._curves: dict[str, MarkedFigure | None] = {}
        # One worker: figures are drawn in order, and never two at once on a 2-core notebook server.
        self._drawer = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctn-curves") if draw_in_background else None
        )
        self._drawing: dict[str, Future[None]] = {}
        # Bumped whenever the data is replaced: a figure drawn from older data is dropped.
        self._generation = 0
        # (agent, filter text) -> iteration keys: sorting 5,000 keys took longer than the rest of a click.
        self._iteration_keys: dict[tuple[str, str], list[int]] = {}
        self._busy = False
        # auto_refresh reloads from a thread; one lock keeps it and the observers apart.
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None

        self.agent = widgets.Dropdown(description="Agent", layout=widgets.Layout(width="28em"))
        self.iteration = widgets.SelectionSlider(
            description="Iteration",
            options=[_NO_ITERATION],
            continuous_update=False,
            layout=widgets.Layout(width="30em"),
        )
        self.previous_button = widgets.Button(description="◀", tooltip="previous iteration", layout={"width": "3em"})
        self.next_button = widgets.Button(description="▶", tooltip="next iteration", layout={"width": "3em"})
        self.filter = widgets.Text(placeholder="only iterations containing…", description="Filter")
        self.refresh_button = widgets.Button(description="Refresh", tooltip="re-read the store if it changed")
        self.export_button = widgets.Button(description="Export CSV", tooltip="write this agent's frame to CSV")
        self.status = widgets.HTML()
        self.record = widgets.HTML()
        self.trained_pane = widgets.HTML()
        self.findings_pane = widgets.HTML()
        self.suggestions = widgets.Select(description="Draft", rows=6, layout=widgets.Layout(width="38em"))
        self.suggestion_text = widgets.Textarea(
            placeholder="the text for Replace or Add…", layout=widgets.Layout(width="38em", height="4em")
        )
        self.remove_button = widgets.Button(description="Remove", tooltip="remove the selected suggestion")
        self.up_button = widgets.Button(description="Up", tooltip="move the selected suggestion up")
        self.down_button = widgets.Button(description="Down", tooltip="move the selected suggestion down")
        self.replace_button = widgets.Button(description="Replace", tooltip="replace the selected one with the text")
        self.add_button = widgets.Button(description="Add", tooltip="add the text after the selected suggestion")
        self.save_button = widgets.Button(
            description="Save", button_style="primary", tooltip="write the draft to the trained file (a version kept)"
        )
        self.undo_button = widgets.Button(description="Undo save", tooltip="restore the version kept by the last Save")
        self.discard_button = widgets.Button(description="Discard", tooltip="forget the draft's changes")
        self.prompt_pane = widgets.HTML()
        self.curation_status = widgets.HTML()
        self.compare = widgets.Dropdown(description="Compare", options=[("—", None)], layout={"width": "38em"})
        self.compare_pane = widgets.HTML()
        self.curation = widgets.VBox(
            [
                self.suggestions,
                self.suggestion_text,
                widgets.HBox(
                    [self.remove_button, self.up_button, self.down_button, self.replace_button, self.add_button]
                ),
                widgets.HBox([self.save_button, self.undo_button, self.discard_button]),
                self.curation_status,
                self.prompt_pane,
                self.compare,
                self.compare_pane,
            ],
            layout=widgets.Layout(display="none"),
        )
        self.curve = widgets.Image(format="png", layout=widgets.Layout(max_width="900px"))
        self.curve.add_class("ctn-figure")  # a white card in any theme (render's styles): the curves are light

        for widget, name in (
            (self.agent, "ctn-agent"),
            (self.iteration, "ctn-iteration"),
            (self.previous_button, "ctn-previous"),
            (self.next_button, "ctn-next"),
            (self.filter, "ctn-filter"),
            (self.refresh_button, "ctn-refresh"),
            (self.export_button, "ctn-export"),
            (self.status, "ctn-status"),
            (self.record, "ctn-record"),
            (self.trained_pane, "ctn-trained"),
            (self.findings_pane, "ctn-findings"),
            (self.suggestions, "ctn-suggestions"),
            (self.suggestion_text, "ctn-suggestion-text"),
            (self.remove_button, "ctn-remove"),
            (self.up_button, "ctn-up"),
            (self.down_button, "ctn-down"),
            (self.replace_button, "ctn-replace"),
            (self.add_button, "ctn-add"),
            (self.save_button, "ctn-save"),
            (self.undo_button, "ctn-undo"),
            (self.discard_button, "ctn-discard"),
            (self.prompt_pane, "ctn-prompt"),
            (self.curation_status, "ctn-curation-status"),
            (self.compare, "ctn-compare"),
            (self.compare_pane, "ctn-compare-pane"),
            (self.curation, "ctn-curation"),
            (self.curve, "ctn-curve"),
        ):
            widget.add_class(name)

        self.agent.observe(self._on_agent, names="value")
        self.iteration.observe(self._on_iteration, names="value")
        self.filter.observe(self._on_filter, names="value")
        self.previous_button.on_click(lambda _: self._step(-1))
        self.next_button.on_click(lambda _: self._step(1))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.export_button.on_click(lambda _: self.export())
        self.suggestions.observe(self._on_suggestion, names="value")
        for button, action in (
            (self.remove_button, "remove"),
            (self.up_button, "up"),
            (self.down_button, "down"),
            (self.replace_button, "replace"),
            (self.add_button, "add"),
        ):
            button.on_click(lambda _, action=action: self._revise(action))
        self.save_button.on_click(lambda _: self.save_suggestions())
        self.undo_button.on_click(lambda _: self.undo_save())
        self.discard_button.on_click(lambda _: self._discard())
        self.compare.observe(lambda _: self._show_compare(), names="value")

        super().__init__(
            [
                widgets.HBox([self.agent, self.filter, self.refresh_button, self.export_button]),
                widgets.HBox([self.previous_button, self.iteration, self.next_button]),
                self.status,
                self.findings_pane,
                widgets.HBox([self.record, widgets.VBox([self.trained_pane, self.curation])]),
                self.curve,
            ]
        )
        self.add_class("ctn-browser")
        self._load()
        if self.agent.options:  # a store not written yet has no agents to match names with
            check_agent_names(self._names, [value for _, value in self.agent.options], stacklevel=3)
        if auto_refresh:
            self._thread = threading.Thread(target=self._watch, args=(float(auto_refresh),), daemon=True)
            self._thread.start()

    #: Draws one agent's curves (pure; a subclass may wrap it).
    _draw_curves = staticmethod(_draw_curves)

    # -- public ------------------------------------------------------------------

    @property
    def iterations(self) -> list[int]:
        """The iterations the slider offers now (after the text filter)."""
        return [value for value in self.iteration.options if value != _NO_ITERATION]

    @property
    def selected_iteration(self) -> int | None:
        """The selected iteration, or ``None`` when there is none."""
        value = self.iteration.value
        return None if value == _NO_ITERATION else value

    @property
    def record_html(self) -> str:
        """The record pane's current HTML."""
        return str(self.record.value)

    def select(self, agent: str, iteration: int | None = None) -> str:
        """Select ``agent`` and, when given, ``iteration`` (which must exist for it); return the agent's full id.

        ``agent`` is an id, else a role (from ``agent_names``, the records'
        ``agent_role`` or the trained-agents file), else a unique id prefix.

        Raises
        ------
        ValueError
            An unknown agent or iteration, listing the ones that exist; a role
            or prefix that names several agents, listing them.
        """
        agents = [value for _, value in self.agent.options]
        agent = resolve_agent(
            agents,
            agent,
            roles=lambda: {key: role for key in agents if (role := self._role(key)) is not None},
            path=getattr(self._source, "file_path", None),
        )
        self.agent.value = agent
        if iteration is not None:
            options = self.iterations
            if iteration not in options:
                raise ValueError(f"agent {agent!r} has no iteration {iteration!r}; it has {options}")
            self.iteration.value = iteration
        return agent

    def refresh(self) -> bool:
        """Re-read the store if its file changed, keeping the selection when it still exists.

        Returns
        -------
        bool
            Whether anything changed.
        """
        return self._load()

    def export(self) -> Path | None:
        """Write the selected agent's wide frame to ``<export_dir>/<agent>.csv``; show and return the path."""
        agent = self.agent.value
        if agent is None:
            self.status.value = message_html("Nothing to export: no agent is selected.")
            return None
        self._export_dir.mkdir(parents=True, exist_ok=True)
        path = self._export_dir / f"{_safe_file_name(str(agent))}.csv"
        export_csv({agent: self._data[agent]}, path)
        self.status.value = f"<span class='ctn-exported'>wrote {path.resolve()}</span>"
        return path

    def wait_for_curves(self, timeout: float | None = None) -> None:
        """Block until the curves being drawn in the background are shown (for scripts and tests).

        Raises
        ------
        concurrent.futures.TimeoutError
            They are not drawn within ``timeout`` seconds (the builtin
            ``TimeoutError`` from Python 3.11 on).
        """
        with self._lock:
            pending = list(self._drawing.values())
        for future in pending:
            future.result(timeout=timeout)  # a failed drawing is caught in the thread and shown in the status pane

    def close(self) -> None:
        """Stop auto-refresh and background drawing, and close the widgets."""
        self._stop.set()
        if self._drawer is not None:
            self._drawer.shutdown(wait=False, cancel_futures=True)
        super().close()

    # -- loading ---------------------------------------------------------------------

    def _read(self) -> tuple[Any, Any]:
        data, _ = open_view(self._source)
        if self._trained_by_default and isinstance(data, Mapping) and data and not holds_feedback(data):
            self._trained_source = None  # e.g. metrics.pkl beside a CrewAI run's trained_agents_data.pkl
        try:
            trained = open_source(self._trained_source)[0] if self._trained_source is not None else None
        except StoreNotFoundError:  # CrewAI writes trained_agents_data.pkl when training ends
            trained = None
        return data, trained

    def _load(self) -> bool:
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> bool:
        try:
            data, trained = self._read()
        except StoreNotFoundError as exc:  # opened before `crewai train` wrote anything: wait for the file
            self._data, self._trained_raw, self._trained = {}, None, {}
            self._show_nothing(
                f"{exc.path}: no such file yet; Refresh when training has started "
                "(CrewAI writes training_data.pkl in the directory where `crewai train` runs)."
            )
            self.status.value = self.record.value
            return False
        except CorruptStoreError as exc:
            # Reads already retried for read_retry_timeout: a writer without a lock (CrewAI 0.x) is taking
            # long, or the file is damaged. The last good view and the selection stay.
            self.status.value = message_html(
                f"CrewAI is writing… (or the file is damaged). Could not read the store: {exc}"
                + (" Showing the last good view." if self._data else "")
            )
            return False
        except Exception as exc:  # noqa: BLE001 - a notebook widget shows the problem instead of raising
            self.status.value = message_html(f"Could not read the store: {exc}")
            return False
        if data is self._data and trained is self._trained_raw:
            self.status.value = message_html("The store has not changed.") if self._data else self.status.value
            return False
        try:
            kind = store_kind(data) if isinstance(data, Mapping) else None
            trained_kind = store_kind(trained) if isinstance(trained, Mapping) else None
        except ValueError as exc:  # StoreFormatError: e.g. a half-written conversion; keep the last good view
            self.status.value = message_html(f"Cannot browse this store: {exc}")
            if not self.agent.options:
                self.record.value = self.status.value
            return False
        if trained is not self._trained_raw:  # drafts were of the file as it was
            unsaved = [role for role, draft in self._drafts.items() if draft != self._saved_suggestions(role)]
            self._drafts.clear()
            self.curation_status.value = (
                message_html(f"The trained file changed; unsaved changes for {', '.join(unsaved)} were dropped.")
                if unsaved
                else ""
            )
        self._data, self._trained_raw = data, trained
        self._trained = trained if isinstance(trained, Mapping) else {}
        self._generation += 1
        self._curves.clear()
        self._drawing.clear()
        self._iteration_keys.clear()
        previous_agent, previous_iteration = self.agent.value, self.selected_iteration
        problem = misplaced_files(
            kind or "",
            trained_kind,
            source=getattr(self._source, "file_path", None),
            trained=getattr(self._trained_source, "file_path", None),
        )
        if problem:  # a trained-agents file given as the store, or the two files swapped
            self._show_nothing(problem)
            return True
        if kind != "iterations":
            self._show_nothing(
                f"The store is empty ({explain_empty_file(self._stored_bytes())}): nothing to browse yet."
                if kind == "empty" or (isinstance(data, Mapping) and not data)
                else "This store has no agent → iteration records (is it trained_agents_data.pkl? pass it as trained=)."
            )
            return True
        path = getattr(self._source, "file_path", None)
        self._roles = role_matches(data, trained=self._trained, path=path)
        self.findings = self._check(data, path)
        options = agent_options(data, names=self._names, trained=self._trained, path=path)
        if self._lazy() and not self._trained:
            self.findings_pane.value = message_html(
                "Findings are not checked here: a SQLite store is read one agent at a time. "
                "Run crewtrain_nb.check_training(store) or `crewtrain-nb check`."
            )
        else:
            labels = {value: label for label, value in options}
            self.findings_pane.value = findings_html(self.findings, labels=labels) if holds_feedback(data) else ""
        self._busy = True
        try:
            self.agent.options = options
            values = [value for _, value in options]
            self.agent.value = previous_agent if previous_agent in values else (values[0] if values else None)
        finally:
            self._busy = False
        self.status.value = ""
        self._show_agent(keep_iteration=previous_iteration)
        return True

    def _stored_bytes(self) -> int | None:
        """The store file's size (0 while CrewAI rewrites it), ``None`` for in-memory data."""
        stats = getattr(self._source, "stats", None)
        facts = stats() if callable(stats) else None
        return facts.bytes if facts is not None and facts.changed is not None else None

    def _show_nothing(self, text: str) -> None:
        self._busy = True
        try:
            self.agent.options = []
            self.iteration.options = [_NO_ITERATION]
        finally:
            self._busy = False
        self.record.value = message_html(text)
        self.trained_pane.value = ""
        self.findings_pane.value = ""
        self.curation.layout.display = "none"
        self.curve.value = b""

    # -- observers ----------------------------------------------------------------------

    def _on_agent(self, change: dict[str, Any]) -> None:
        with self._lock:
            if not self._busy:
                self._show_agent(keep_iteration=None)

    def _on_filter(self, change: dict[str, Any]) -> None:
        with self._lock:
            if not self._busy:
                self._show_agent(keep_iteration=self.selected_iteration)

    def _on_iteration(self, change: dict[str, Any]) -> None:
        with self._lock:
            if not self._busy:
                self._show_record()

    def _step(self, step: int) -> None:
        with self._lock:
            target = step_iteration(self.iterations, self.selected_iteration, step)
            if target is not None:
                self.iteration.value = target

    # -- panes ----------------------------------------------------------------------------

    def _show_agent(self, *, keep_iteration: Any) -> None:
        agent = self.agent.value
        records = self._data.get(agent) if agent is not None else None
        if not isinstance(records, Mapping):
            self._show_nothing(f"Unknown agent {agent!r}.")
            return
        key = (agent, self.filter.value)
        if key not in self._iteration_keys:
            self._iteration_keys[key] = iteration_options(records, text=self.filter.value)
        options = self._iteration_keys[key]
        self._busy = True
        try:
            self.iteration.options = options or [_NO_ITERATION]
            if options:
                self.iteration.value = keep_iteration if keep_iteration in options else options[0]
        finally:
            self._busy = False
        role = self._role(agent)
        if self._trained_source is None:
            self.trained_pane.value = ""
        elif not self._trained:
            self.trained_pane.value = message_html(
                "The trained file holds no roles (yet): CrewAI writes them when training ends; a failed run leaves {}."
            )
        elif role is None:
            self.trained_pane.value = message_html(
                "Role unknown: nothing links this agent to a role of the trained file; "
                "pass agent_names={agent_id: role} to link it."
            )
        else:
            how = self._roles.get(str(agent), (None, None))[1]
            note = (
                message_html(f"Role inferred from the feedback's resemblance to {role!r}'s suggestions.")
                if how == "inferred" and str(agent) != role
                else ""
            )
            self.trained_pane.value = note + trained_html(role, self._trained.get(role))
        self._show_curation(role)
        self._show_record()

    def _show_record(self) -> None:
        agent, iteration = self.agent.value, self.selected_iteration
        if agent is None:
            return
        if iteration is None:
            self.record.value = message_html(
                f"No iteration contains {self.filter.value!r}."
                if self.filter.value
                else "This agent has no iterations."
            )
        else:
            records = self._data[agent]
            title = f"{self._agent_label(agent)} · iteration {iteration}"
            self.record.value = record_html(records[iteration], title=title)
        self._show_curve(agent, iteration)

    def _agent_label(self, agent: str) -> str:
        return next((label for label, value in self.agent.options if value == agent), str(agent))

    def _show_curve(self, agent: str, iteration: int | None) -> None:
        if agent in self._curves:
            marked = self._curves[agent]
            self.curve.value = b"" if marked is None else marked.png(iteration)
            return
        if agent in self._drawing:  # on its way: _draw_in_background shows it at the iteration selected then
            return
        # An empty image until this agent's own curves are drawn, never another agent's.
        self.curve.value = b""
        # The worker gets this agent's records read here (a lazy SQLite view reads the agent once,
        # via items()): the store is only ever read from this thread.
        draw_args = ({agent: dict(self._data[agent].items())}, agent, self._agent_label(agent))
        if self._drawer is None:
            self._curves[agent] = self._draw_curves(*draw_args)
            self._show_curve(agent, iteration)
            return
        self._drawing[agent] = self._drawer.submit(self._draw_in_background, draw_args, self._generation)

    def _draw_in_background(self, draw_args: tuple[Any, str, str], generation: int) -> None:
        """Runs in the drawing thread: draw, keep the figure, and show it if its agent is still selected.

        Showing happens here, not in a done-callback, so :meth:`wait_for_curves` returns after it.
        """
        agent = draw_args[1]
        try:
            marked, problem = self._draw_curves(*draw_args), None
        except Exception as exc:  # noqa: BLE001 - shown in the widget, never raised in a thread
            marked, problem = None, exc
        with self._lock:
            if generation != self._generation:  # the store was re-read meanwhile
                return
            self._drawing.pop(agent, None)
            self._curves[agent] = marked
            if problem is not None:
                self.status.value = message_html(f"Could not draw the curves of {agent!r}: {problem}")
            if self.agent.value == agent:
                self._show_curve(agent, self.selected_iteration)

    # -- roles, findings ------------------------------------------------------------------

    def _role(self, agent: str) -> str | None:
        """The agent's role: ``agent_names``, else the sidecar or the trained file's match, else 0.86 records."""
        if agent in self._names:
            return str(self._names[agent])
        if str(agent) in self._roles:
            return self._roles[str(agent)][0]
        return agent_role(agent, self._data[agent], trained=self._trained) if agent in self._data else None

    def _lazy(self) -> bool:
        """Whether the store is read one agent at a time (SQLite): then nothing reads every agent unasked."""
        return isinstance(self._source, SQLiteHandler)

    def _check(self, data: Mapping[str, Any], path: str | None) -> list[Finding]:
        if not holds_feedback(data) or (self._lazy() and not self._trained):
            return []
        try:
            plain = {agent: dict(records.items()) for agent, records in data.items()}
            found = find_sidecar(None, path)
            trained = self._trained if self._trained_source is not None and self._trained_raw is not None else None
            return check_training(plain, trained, sidecar=found if found is not None else False)
        except (StoreError, ValueError):  # records of mixed shapes: the record pane shows them as they are
            return []

    # -- curation --------------------------------------------------------------------------

    @property
    def draft(self) -> list[str]:
        """The selected role's suggestions as curated so far (empty when there is no role to curate)."""
        role = self._curated_role()
        return list(self._drafts.get(role, [])) if role is not None else []

    def _trained_file(self) -> PickleHandler | None:
        source = self._trained_source
        if isinstance(source, PickleHandler) and not isinstance(source, SQLiteHandler):
            return source
        return None

    def _curated_role(self) -> str | None:
        agent = self.agent.value
        if agent is None or self._trained_file() is None:
            return None
        role = self._role(agent)
        return role if role is not None and role in self._trained else None

    def _show_curation(self, role: str | None) -> None:
        if role is None or self._trained_file() is None or role not in self._trained:
            self.curation.layout.display = "none"
            return
        self.curation.layout.display = None
        if role not in self._drafts:
            suggestions = self._trained[role].get("suggestions")
            self._drafts[role] = [str(item) for item in suggestions] if isinstance(suggestions, list) else []
        self._show_draft(role, keep=self.suggestions.value)
        self._refresh_compare_options()

    def _saved_suggestions(self, role: str) -> Any:
        entry = self._trained.get(role)
        return entry.get("suggestions") if isinstance(entry, Mapping) else None

    def _show_draft(self, role: str, *, keep: Any = None) -> None:
        draft = self._drafts[role]
        self._busy = True
        try:
            self.suggestions.options = [(f"{number + 1}. {text}", number) for number, text in enumerate(draft)]
            self.suggestions.value = keep if isinstance(keep, int) and 0 <= keep < len(draft) else None
        finally:
            self._busy = False
        changed = draft != self._saved_suggestions(role)
        try:
            text = instructions_text(draft, role=role)
        except ValueError as exc:
            text = str(exc)
        self.prompt_pane.value = prompt_html(role, text)
        self.save_button.disabled = not changed
        self.discard_button.disabled = not changed
        self.undo_button.disabled = self._saved is None

    def _on_suggestion(self, change: dict[str, Any]) -> None:
        role = self._curated_role()
        if self._busy or role is None or change["new"] is None:
            return
        self.suggestion_text.value = self._drafts[role][change["new"]]

    def _revise(self, action: Revision) -> None:
        with self._lock:
            role = self._curated_role()
            if role is None:
                return
            index = self.suggestions.value
            try:
                self._drafts[role] = revise_suggestions(
                    self._drafts[role], action, index=index, text=self.suggestion_text.value
                )
            except ValueError as exc:
                self.curation_status.value = message_html(str(exc))
                return
            keep = index
            if action == "up" and index is not None:
                keep = max(index - 1, 0)
            elif action == "down" and index is not None:
                keep = min(index + 1, len(self._drafts[role]) - 1)
            elif action == "add":
                keep = len(self._drafts[role]) - 1 if index is None else index + 1
            elif action == "remove":
                keep = None
            self.curation_status.value = ""
            self._show_draft(role, keep=keep)

    def _discard(self) -> None:
        with self._lock:
            role = self._curated_role()
            if role is not None:
                del self._drafts[role]
                self.curation_status.value = ""
                self._show_curation(role)

    def save_suggestions(self) -> StoreVersion | None:
        """Write the draft of the selected role to the trained file; return the version kept of the file before.

        Through :func:`~crewtrain_nb.crewai.edit_suggestions`: atomic, under the store's lock, the
        previous file kept as a version (:meth:`undo_save` restores it). A problem is shown, not raised.
        """
        with self._lock:
            role, handler = self._curated_role(), self._trained_file()
            if role is None or handler is None:
                self.curation_status.value = message_html("Nothing to save: no role of a trained file is selected.")
                return None
            try:
                version = edit_suggestions(handler, role, self._drafts[role], trusted=self._trusted)
            except (StoreError, TypeError, ValueError) as exc:
                self.curation_status.value = message_html(f"Not saved: {exc}")
                return None
            self._saved = version
            self._load()
            self.curation_status.value = (
                f"<span class='ctn-saved'>Saved {len(self.draft)} suggestions for {html.escape(role)} to "
                f"{html.escape(handler.file_path)}; the file before is version {version.id} "
                "(Undo save restores it).</span>"
            )
            return version

    def undo_save(self) -> bool:
        """Restore the version the last :meth:`save_suggestions` kept (the restore keeps the current file too)."""
        with self._lock:
            handler, version = self._trained_file(), self._saved
            if handler is None or version is None:
                self.curation_status.value = message_html("Nothing to undo: no save in this browser yet.")
                return False
            try:
                handler.restore(version.id)
            except StoreError as exc:
                self.curation_status.value = message_html(f"Could not undo: {exc}")
                return False
            self._saved = None
            self._load()
            self.curation_status.value = (
                f"<span class='ctn-saved'>Restored version {version.id} of {html.escape(handler.file_path)}.</span>"
            )
            return True

    # -- compare ---------------------------------------------------------------------------

    def _refresh_compare_options(self) -> None:
        handler = self._trained_file()
        options: list[tuple[str, Any]] = [("—", None)]
        if self._compare_source is not None:
            path = getattr(self._compare_source, "file_path", None)
            options.append((f"with {path or 'compare_with'}", path or "compare_with"))
        for version in handler.versions() if handler is not None else []:
            stamp = version.time.strftime("%Y-%m-%d %H:%M:%S")
            options.append((f"with version {version.id} ({stamp} UTC)", version.path))
        if list(self.compare.options) != options:
            current = self.compare.value
            self._busy = True
            try:
                self.compare.options = options
                self.compare.value = current if current in [value for _, value in options] else None
            finally:
                self._busy = False
            self._show_compare()

    def _show_compare(self) -> None:
        chosen = self.compare.value
        if chosen is None:
            self.compare_pane.value = ""
            return
        before: Source
        given = ("compare_with", getattr(self._compare_source, "file_path", "compare_with"))
        if self._compare_source is not None and chosen in given:
            before, name = self._compare_source, "compare_with"
        else:
            before, name = as_handler(chosen, trusted=self._trusted), f"version {os.path.basename(chosen)}"
        try:
            rows = compare_entries(read_trained(before, trusted=self._trusted)[0], self._trained)
        except (StoreError, ValueError) as exc:
            self.compare_pane.value = message_html(f"Cannot compare: {exc}")
            return
        self.compare_pane.value = comparison_html(rows, before=name, after="the trained file now")

    def _watch(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.refresh()

    def __repr__(self) -> str:  # the text form a static notebook page shows
        return (
            f"TrainingBrowser({len(self.agent.options)} agents, agent={self.agent.value!r}, "
            f"iteration={self.selected_iteration!r})"
        )
