"""The hand-over between CrewAI's training thread and a person answering somewhere else (a notebook widget).

The training thread calls :meth:`FeedbackExchange.ask` and blocks until the
person answers (:meth:`FeedbackExchange.answer`) or stops the run
(:meth:`FeedbackExchange.stop`, which makes ``ask`` raise
:class:`TrainingStopped`: a ``BaseException``, so CrewAI does not wipe its
files). Pure threading: no widgets, no crewai.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FeedbackExchange", "FeedbackRequest", "TrainingStopped"]


class TrainingStopped(BaseException):
    """Raised inside CrewAI's training to stop it after the current step, without CrewAI wiping the files.

    CrewAI clears both files on any ``Exception``; like ``KeyboardInterrupt``, this is not one.
    """


@dataclass(frozen=True)
class FeedbackRequest:
    """One output waiting for a person's feedback.

    Attributes
    ----------
    step
        1 for the first feedback of the run, counting up.
    iteration
        CrewAI's training iteration (0-based).
    agent, role, task, output
        The training-copy agent id, its role, the task's description and the output to judge.
    previous
        This agent's earlier feedback in the run (what CrewAI already appends to its prompt).
    """

    step: int
    iteration: int | None
    agent: str
    role: str
    task: str
    output: str
    previous: tuple[str, ...] = ()


class FeedbackExchange:
    """One pending :class:`FeedbackRequest` at a time, between a training thread and a person."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending: FeedbackRequest | None = None
        self._answer: str | None = None
        self._stopped = False
        self._listeners: list[Callable[[FeedbackRequest], None]] = []

    @property
    def pending(self) -> FeedbackRequest | None:
        """The request waiting for an answer, if any."""
        with self._condition:
            return self._pending

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped

    def on_request(self, listener: Callable[[FeedbackRequest], None]) -> None:
        """Call ``listener(request)`` (in the training thread) whenever a new request is posted."""
        self._listeners.append(listener)

    def ask(self, request: FeedbackRequest, *, timeout: float | None = None) -> str:
        """Post ``request`` and wait for its answer (called by the training thread).

        Raises
        ------
        TrainingStopped
            :meth:`stop` was called before or while waiting.
        TimeoutError
            No answer within ``timeout`` seconds.
        """
        with self._condition:
            if self._stopped:
                raise TrainingStopped("training was stopped")
            self._pending, self._answer = request, None
        for listener in self._listeners:
            listener(request)
        with self._condition:
            answered = self._condition.wait_for(lambda: self._answer is not None or self._stopped, timeout)
            try:
                if self._stopped:
                    raise TrainingStopped("training was stopped")
                if not answered:
                    raise TimeoutError(f"no feedback for step {request.step} within {timeout} s")
                assert self._answer is not None
                return self._answer
            finally:
                self._pending, self._answer = None, None

    def answer(self, text: str) -> None:
        """Answer the pending request with ``text``.

        Raises
        ------
        RuntimeError
            No request is waiting (nothing to answer).
        TypeError
            ``text`` is not a ``str``.
        """
        if not isinstance(text, str):
            raise TypeError(f"feedback must be text (str), got {type(text).__name__}")
        with self._condition:
            if self._pending is None:
                raise RuntimeError("no output is waiting for feedback")
            self._answer = text
            self._condition.notify_all()

    def stop(self) -> None:
        """Stop training at the current step: a waiting or later :meth:`ask` raises :class:`TrainingStopped`."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
