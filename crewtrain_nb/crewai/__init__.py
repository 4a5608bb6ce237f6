"""CrewAI: what its training files mean (pure logic), and, beside it, the integration with CrewAI itself.

Importing this package never imports ``crewai`` (nor pandas): the modules here are logic about the two
files ``crewai train`` writes; code that drives CrewAI imports it only when called.

- :mod:`~crewtrain_nb.crewai.files`: what a record and a trained entry are, similarity, word diffs.
- :mod:`~crewtrain_nb.crewai.sources`: open either file from a path, a handler or a dict (the store's dispatch).
- :mod:`~crewtrain_nb.crewai.sidecar`: ``<training file>.agents.json``, the roles recorded at training time.
- :mod:`~crewtrain_nb.crewai.roles`: which role each agent id had (:func:`match_roles`).
- :mod:`~crewtrain_nb.crewai.checks`: what is wrong with a run (:func:`check_training`).
- :mod:`~crewtrain_nb.crewai.prompt`: the text CrewAI injects and the file it reads (:func:`prompt_preview`).
- :mod:`~crewtrain_nb.crewai.compare`: two trained files side by side (:func:`compare_trained`).
- :mod:`~crewtrain_nb.crewai.curate`: change a role's suggestions, a version kept (:func:`edit_suggestions`).
- :mod:`~crewtrain_nb.crewai.training` and :mod:`~crewtrain_nb.crewai.exchange`: ``train()``, CrewAI's training
  through crewtrain_nb's store (imports crewai when called).

Layers: the logic modules read and write only through :mod:`crewtrain_nb.store` and never import the frames,
plots or views (which import them); :mod:`~crewtrain_nb.crewai.training` is the integration, above the views,
and imports the frames and widgets it drives when called. This ``__init__`` is a facade for users: modules of
crewtrain_nb import the module that defines a name (``from ..crewai.files import text_of``), not this one.
:func:`match_roles` and :func:`compare_trained` return DataFrames (the frames layer's currency) and import
pandas when called; everything else returns plain objects.
"""

from __future__ import annotations

from ..store import record_roles as agent_roles
from .checks import FINDING_CODES, REPEAT_SIMILARITY, UNCHANGED_SIMILARITY, Finding, check_training
from .compare import RoleComparison, compare_entries, compare_trained
from .curate import REVISIONS, Revision, edit_suggestions, revise_suggestions
from .exchange import FeedbackExchange, FeedbackRequest, TrainingStopped
from .files import (
    EMPTY_FILE_NOTE,
    FEEDBACK_KEYS,
    FEEDBACK_STATUSES,
    LEGACY_KEYS,
    STATUS_LABELS,
    TRAINED_KEYS,
    ZERO_BYTE_NOTE,
    CrewAIVersion,
    FeedbackStatus,
    FieldNote,
    diff_words,
    explain_empty_file,
    explain_status,
    explain_statuses,
    feedback_status,
    field_notes,
    holds_feedback,
    is_feedback_record,
    is_trained_entry,
    misplaced_files,
    record_version,
    similarity,
    text_of,
)
from .prompt import (
    DEFAULT_TRAINED_FILE,
    INSTRUCTIONS_PREFIX,
    TRAINED_FILE_ENV,
    TrainedFileChoice,
    explain_trained_file,
    instructions_text,
    prompt_preview,
    trained_file_for,
)
from .roles import (
    MIN_ROLE_SCORE,
    RoleMatch,
    assign_roles,
    match_roles,
    role_label,
    role_scores,
    text_similarity,
)
from .sidecar import (
    SIDECAR_FORMAT,
    SIDECAR_VERSION,
    AgentInfo,
    Sidecar,
    find_sidecar,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from .sources import read_trained, read_training
from .training import TrainingRun, evaluate, load_run, restore_run, runs, train

__all__ = [
    "DEFAULT_TRAINED_FILE",
    "EMPTY_FILE_NOTE",
    "FEEDBACK_KEYS",
    "FEEDBACK_STATUSES",
    "FINDING_CODES",
    "INSTRUCTIONS_PREFIX",
    "LEGACY_KEYS",
    "MIN_ROLE_SCORE",
    "REPEAT_SIMILARITY",
    "REVISIONS",
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "STATUS_LABELS",
    "TRAINED_FILE_ENV",
    "TRAINED_KEYS",
    "UNCHANGED_SIMILARITY",
    "ZERO_BYTE_NOTE",
    "AgentInfo",
    "CrewAIVersion",
    "FeedbackExchange",
    "FeedbackRequest",
    "FeedbackStatus",
    "FieldNote",
    "Finding",
    "Revision",
    "RoleComparison",
    "RoleMatch",
    "Sidecar",
    "TrainedFileChoice",
    "TrainingRun",
    "TrainingStopped",
    "agent_roles",
    "assign_roles",
    "check_training",
    "compare_entries",
    "compare_trained",
    "diff_words",
    "edit_suggestions",
    "evaluate",
    "explain_empty_file",
    "explain_status",
    "explain_statuses",
    "explain_trained_file",
    "feedback_status",
    "field_notes",
    "find_sidecar",
    "holds_feedback",
    "instructions_text",
    "is_feedback_record",
    "is_trained_entry",
    "load_run",
    "match_roles",
    "misplaced_files",
    "prompt_preview",
    "read_sidecar",
    "read_trained",
    "read_training",
    "record_version",
    "restore_run",
    "revise_suggestions",
    "role_label",
    "role_scores",
    "runs",
    "sidecar_path",
    "similarity",
    "text_of",
    "text_similarity",
    "train",
    "trained_file_for",
    "write_sidecar",
]
