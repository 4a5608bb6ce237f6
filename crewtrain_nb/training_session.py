"""Give CrewAI training feedback in the notebook: the widget ``train(crew, n, feedback="notebook")`` returns.

Thin wiring: CrewAI's training runs in a background thread and asks through a
:class:`~crewtrain_nb.crewai.exchange.FeedbackExchange`; this widget shows each
request (role, task, the output rendered as Markdown with raw HTML escaped, the
agent's earlier feedback) and answers it from the feedback box. The kernel stays
free while training runs, so the widget's events are handled. Works wherever
ipywidgets does (JupyterLab, Notebook 7, VS Code, Voila); no server of its own.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .crewai.exchange import FeedbackExchange, FeedbackRequest

if TYPE_CHECKING:
    from .browser import TrainingBrowser
    from .crewai.training import TrainingRun

__all__ = ["EMPTY_FEEDBACK_WARNING", "QUICK_ANSWERS", "TrainingSession", "render_output"]

#: Buttons for common answers; each fills the feedback box (the person still presses Submit).
QUICK_ANSWERS: tuple[str, ...] = (
    "Good as it is: keep this approach.",
    "Be more specific: name concrete facts and sources.",
    "Shorter, please: keep only what the task asks for.",
)
#: Why an empty answer is refused once (CrewAI's evaluator raises on it, and then CrewAI wipes both files).
EMPTY_FEEDBACK_WARNING = (
    "Empty feedback: CrewAI's evaluator rejects a record without feedback, and when it does, CrewAI wipes both "
    "training files. Type feedback, or press Submit again to send it empty anyway."
)

_STYLE = """<style>
.ctn-session { color: var(--jp-ui-font-color1, #1a1a1a); background: var(--jp-layout-color1, #ffffff); }
.ctn-session .ctn-box { border: 1px solid var(--jp-border-color1, #bdbdbd); border-radius: 4px; padding: 6px 10px;
  background: var(--jp-layout-color0, #ffffff); color: var(--jp-content-font-color1, #1a1a1a);
  max-height: 22em; overflow: auto; }
.ctn-session .ctn-muted { color: var(--jp-ui-font-color1, #333333); }
.ctn-session .ctn-warning { color: var(--jp-ui-font-color1, #1a1a1a); font-weight: 600;
  border-left: 3px solid var(--jp-warn-color1, #e65100); padding-left: 6px; }
.ctn-session code, .ctn-session pre { color: var(--jp-content-font-color1, #1a1a1a);
  background: var(--jp-layout-color2, #eeeeee); }
</style>"""


def render_output(text: str) -> str:
    """Markdown to HTML with every raw HTML tag escaped (an output holding ``<script>`` shows as text).

    Uses markdown-it-py with HTML disabled, which also refuses ``javascript:`` links.
    """
    from markdown_it import MarkdownIt

    rendered: str = MarkdownIt("commonmark", {"html": False}).render(text)  # typed Any: a renderer may be swapped
    return rendered


class TrainingSession(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types: VBox is Any here
    """A live training run in the notebook: judge each output, type feedback, Submit; Stop ends the run.

    Parameters
    ----------
    exchange
        Where the training thread posts its requests.
    training
        The ``training_data.pkl`` the run writes (the live frame/curves underneath read it).
    steps
        How many feedbacks the run will ask for (iterations x tasks), for the progress bar.
    """

    def __init__(self, exchange: FeedbackExchange, *, training: str | os.PathLike[str], steps: int) -> None:
        self.exchange = exchange
        self.training = os.fspath(training)
        self.run: TrainingRun | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._insisting = False
        self._browser: TrainingBrowser | None = None

        self.heading = widgets.HTML().add_class("ctn-session-heading")
        self.output = widgets.HTML().add_class("ctn-session-output")
        self.previous = widgets.HTML().add_class("ctn-session-previous")
        self.feedback = widgets.Textarea(
            placeholder="Your feedback on this output", layout=widgets.Layout(width="100%", height="6em")
        ).add_class("ctn-session-feedback")
        self.submit = widgets.Button(description="Submit", button_style="primary").add_class("ctn-session-submit")
        self.quick = [widgets.Button(description=answer[:28], tooltip=answer) for answer in QUICK_ANSWERS]
        for button, answer in zip(self.quick, QUICK_ANSWERS, strict=True):
            button.add_class("ctn-session-quick")
            button.on_click(self._filler(answer))
        self.stop_button = widgets.Button(description="Stop", button_style="danger").add_class("ctn-session-stop")
        self.status = widgets.HTML("Starting CrewAI's training…").add_class("ctn-session-status")
        self.progress = widgets.IntProgress(value=0, min=0, max=max(steps, 1), description="0 of " + str(steps))
        self.progress.add_class("ctn-session-progress")
        self.live = widgets.VBox().add_class("ctn-session-live")
        self._steps = steps

        self.submit.on_click(lambda _: self.send(self.feedback.value))
        self.stop_button.on_click(lambda _: self.stop())
        exchange.on_request(self._show)
        controls = widgets.HBox([self.submit, *self.quick, self.stop_button])
        super().__init__(
            [
                widgets.HTML(_STYLE),
                self.heading,
                self.progress,
                self.output,
                self.previous,
                self.feedback,
                controls,
                self.status,
                self.live,
            ]
        )
        self.add_class("ctn-session")
        self._set_waiting(True)

    # -- what the person does ---------------------------------------------------------------------

    def send(self, text: str) -> bool:
        """Answer the waiting output with ``text`` (what Submit does); return whether it was sent.

        Empty feedback is refused once with CrewAI's reason; a second empty Submit in a row sends it.
        """
        if self.exchange.pending is None:
            self.status.value = "Nothing is waiting for feedback right now."
            return False
        if not text.strip() and not self._insisting:
            self._insisting = True
            self.status.value = f'<span class="ctn-warning">{html.escape(EMPTY_FEEDBACK_WARNING)}</span>'
            return False
        self._insisting = False
        self._set_waiting(True)
        self.progress.value = min(self.progress.value + 1, self.progress.max)
        self.progress.description = f"{self.progress.value} of {self._steps}"
        self.status.value = "Sent. CrewAI is improving the output and moving on…"
        self.feedback.value = ""
        self.exchange.answer(text)
        return True

    def stop(self) -> None:
        """End training after the current step, without CrewAI wiping the files (the run is ``interrupted``)."""
        self.exchange.stop()
        self._set_waiting(True)
        self.stop_button.disabled = True
        self.status.value = "Stopping after the current step…"

    @property
    def finished(self) -> bool:
        """Whether training has ended (its outcome is in :attr:`run`, or its exception in :attr:`error`)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> TrainingRun:
        """Wait for training to end; return its :class:`~crewtrain_nb.crewai.TrainingRun`.

        Raises
        ------
        TimeoutError
            Still running after ``timeout`` seconds.
        Exception
            What training raised (the run is then kept as ``failed``; see ``runs()``).
        """
        if not self._done.wait(timeout):
            raise TimeoutError(f"training is still running after {timeout} s")
        if self.error is not None:
            raise self.error
        assert self.run is not None
        return self.run

    # -- wiring ------------------------------------------------------------------------------------

    def start(self, train: Callable[[], TrainingRun]) -> None:
        """Run ``train`` in a background thread (called by ``train(feedback="notebook")``)."""

        def work() -> None:
            try:
                self.run = train()
            except BaseException as exc:  # shown in the widget, re-raised by wait()
                self.error = exc
            finally:
                self._finished()

        threading.Thread(target=work, name="crewtrain-nb-session", daemon=True).start()

    def _filler(self, answer: str) -> Callable[[Any], None]:
        def fill(_: Any) -> None:
            self.feedback.value = answer

        return fill

    def _set_waiting(self, waiting: bool) -> None:
        self.submit.disabled = waiting
        self.feedback.disabled = waiting
        for button in self.quick:
            button.disabled = waiting

    def _show(self, request: FeedbackRequest) -> None:
        # Called in the training thread when CrewAI asks; the kernel's thread sends the widget updates.
        iteration = "" if request.iteration is None else f"iteration {request.iteration + 1} · "
        self.heading.value = (
            f"<h3>{html.escape(request.role)}</h3><p class='ctn-muted'>{iteration}step {request.step} of "
            f"{self._steps} · task: {html.escape(request.task)}</p>"
        )
        self.output.value = f"<div class='ctn-box'>{render_output(request.output)}</div>"
        if request.previous:
            items = "".join(f"<li>{html.escape(line) or '(empty)'}</li>" for line in request.previous)
            self.previous.value = (
                "<p class='ctn-muted'>Earlier feedback for this agent (CrewAI already adds it to the prompt):</p>"
                f"<ul>{items}</ul>"
            )
        else:
            self.previous.value = ""
        self.status.value = "Waiting for your feedback."
        self._insisting = False
        self._set_waiting(False)
        self._refresh_live()

    def _refresh_live(self) -> None:
        from .browser import TrainingBrowser
        from .crewai.sidecar import recorded_roles
        from .store import CrewTrainingHandler

        try:
            if self._browser is None:
                if not CrewTrainingHandler(self.training).peek():
                    return
                self._browser = TrainingBrowser(self.training, agent_names=recorded_roles(self.training) or None)
                self.live.children = [self._browser]
            else:
                self._browser.refresh()
        except Exception as exc:  # the live view is a convenience; feedback must go on
            self.live.children = [
                widgets.HTML(f"<p class='ctn-muted'>Live view unavailable: {html.escape(str(exc))}</p>")
            ]

    def _finished(self) -> None:
        self._set_waiting(True)
        self.stop_button.disabled = True
        if self.error is not None:
            self.status.value = (
                f"<span class='ctn-warning'>Training failed: {html.escape(type(self.error).__name__)}: "
                f"{html.escape(str(self.error))}</span> Every line you typed is in the journal; see runs()."
            )
        elif self.run is not None:
            self.status.value = f"Training finished: run {self.run.run}, {html.escape(self.run.outcome)}."
        self._refresh_live()
        self._done.set()
