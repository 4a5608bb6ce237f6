"""CrewAI: what its training files mean (pure logic), and, beside it, the integration with CrewAI itself.

Importing this package never imports ``crewai``: :mod:`crewtrain_nb.crewai.files` is pure logic about the two
files ``crewai train`` writes; code that drives CrewAI imports it only when called.
"""

from __future__ import annotations

from .exchange import FeedbackExchange, FeedbackRequest, TrainingStopped
from .files import (
    FEEDBACK_KEYS,
    FEEDBACK_STATUSES,
    TRAINED_KEYS,
    FeedbackStatus,
    diff_words,
    feedback_status,
    is_feedback_record,
    is_trained_entry,
    similarity,
    text_of,
)
from .training import TrainingRun, evaluate, load_run, restore_run, runs, train

__all__ = [
    "FEEDBACK_KEYS",
    "FEEDBACK_STATUSES",
    "TRAINED_KEYS",
    "FeedbackExchange",
    "FeedbackRequest",
    "FeedbackStatus",
    "TrainingRun",
    "TrainingStopped",
    "diff_words",
    "evaluate",
    "feedback_status",
    "is_feedback_record",
    "is_trained_entry",
    "load_run",
    "restore_run",
    "runs",
    "similarity",
    "text_of",
    "train",
]
