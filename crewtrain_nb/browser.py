"""``TrainingBrowser``: an ipywidgets explorer over agents and iterations.

Wiring only. What to list comes from :mod:`crewtrain_nb.navigation`, what a
record looks like from :mod:`crewtrain_nb.render`, the curves from
:mod:`crewtrain_nb.plots`, and the data from the store through
:func:`crewtrain_nb.store.open_view` (so safe loading applies). A SQLite store
is browsed lazily: the agent list first, then only the agent being looked at.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .crewai.files import explain_empty_file, misplaced_files
from .errors import CorruptStoreError, StoreNotFoundError
from .export import export_csv
from .frames import store_kind
from .navigation import agent_options, agent_role, curve_frame, iteration_options, resolve_agent, step_iteration
from .plots import MarkedFigure, plot_metrics
from .render import message_html, record_html, trained_html
from .store import Source, as_handler, open_source, open_view

__all__ = ["TrainingBrowser"]


#: The slider's only option when there is nothing to select (a SelectionSlider cannot be empty).
_NO_ITERATION = "—"


def _safe_file_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "agent"


def _draw_curves(data: Mapping[str, Any], agent: str, label: str) -> MarkedFigure | None:
    """The agent's curves with a movable iteration marker, or ``None`` when it has no numbers to plot."""
    frame = curve_frame(data, agent)
    if frame.empty:
        return None
    figure = plot_metrics(
        frame, figsize=(9, 2.6 * ((frame["metric"].nunique() + 2) // 3)), agent_names={agent: label}
    )
    return MarkedFigure(figure, dpi=72)


class TrainingBrowser(widgets.VBox):
    """Browse a training store by agent and iteration in a notebook.

    Parameters
    ----------
    source
        A handler, a store path, or the store's dict (``training_data.pkl`` or an
        ML-style log).
        A path that does not exist yet is shown as "no such file yet" and read
        on :meth:`refresh` (or by ``auto_refresh``) once training writes it.
    trained
        Optional ``trained_agents_data.pkl`` source: shows quality, suggestions
        and summary for the selected agent's role.
    agent_names
        Optional ``{agent_id: role}``; CrewAI's training file does not record roles.
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
        trained: Source | None = None,
        agent_names: Mapping[str, str] | None = None,
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
        self._trained_source = as_handler(trained, trusted=trusted) if trained is not None else None
        self._names = dict(agent_names or {})
        self._export_dir = Path(export_dir)
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

        super().__init__(
            [
                widgets.HBox([self.agent, self.filter, self.refresh_button, self.export_button]),
                widgets.HBox([self.previous_button, self.iteration, self.next_button]),
                self.status,
                widgets.HBox([self.record, self.trained_pane]),
                self.curve,
            ]
        )
        self.add_class("ctn-browser")
        self._load()
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
            roles=lambda: {
                key: role
                for key in agents
                if (role := agent_role(key, self._data[key], names=self._names, trained=self._trained)) is not None
            },
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
        options = agent_options(data, names=self._names, trained=self._trained)
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
        role = agent_role(agent, records, names=self._names, trained=self._trained)
        if self._trained_source is None:
            self.trained_pane.value = ""
        elif role is None:
            self.trained_pane.value = message_html("Role unknown: pass agent_names={agent_id: role} to link it.")
        else:
            self.trained_pane.value = trained_html(role, self._trained.get(role))
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

    def _watch(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.refresh()

    def __repr__(self) -> str:  # the text form a static notebook page shows
        return (
            f"TrainingBrowser({len(self.agent.options)} agents, agent={self.agent.value!r}, "
            f"iteration={self.selected_iteration!r})"
        )
