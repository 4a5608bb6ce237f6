"""The store: the only package of crewtrain_nb that opens files.

Handlers read and write CrewAI's pickled training files atomically, under a
cross-process lock, with safe loading by default; ``.db`` names get the SQLite
backend (constant-cost appends, lazy reads). Both implement the store contract,
:class:`TrainingStore` (capabilities as ``supports_*`` flags, a change token).
"""

from __future__ import annotations

from ._agents import agent_names_argument, record_roles, resolve_agent, resolve_agents, stored_roles
from ._atomic import PRIVATE_MODE, SHARED_MODE, atomic_file, write_file
from ._audit import AuditReport, verify_audit
from ._backups import StoreVersion
from ._checks import MAX_ITERATION
from ._contract import StoreStats, TrainingStore
from ._convert import convert
from ._copy import IMMUTABLE_TYPES
from ._journal import FeedbackJournal, JournalContents, read_journal
from ._placeholders import OpaqueObject, dumps
from ._runs import RUNS_FOLDER, RunArchive, utc_now
from ._source import LazyEntry, LazyStore, Source, as_handler, open_source, open_view
from ._sqlite import SQLITE_SUFFIXES, SQLiteHandler
from ._unpickle import ALLOWED_GLOBALS, safe_loads
from .handler import DEFAULT_LOCK_TIMEOUT, PICKLE_PROTOCOL, CrewTrainingHandler, PickleHandler

__all__ = [
    "ALLOWED_GLOBALS",
    "AuditReport",
    "DEFAULT_LOCK_TIMEOUT",
    "IMMUTABLE_TYPES",
    "MAX_ITERATION",
    "RUNS_FOLDER",
    "PICKLE_PROTOCOL",
    "PRIVATE_MODE",
    "SHARED_MODE",
    "SQLITE_SUFFIXES",
    "CrewTrainingHandler",
    "FeedbackJournal",
    "JournalContents",
    "LazyEntry",
    "LazyStore",
    "OpaqueObject",
    "PickleHandler",
    "RunArchive",
    "SQLiteHandler",
    "Source",
    "StoreStats",
    "StoreVersion",
    "TrainingStore",
    "agent_names_argument",
    "as_handler",
    "atomic_file",
    "convert",
    "dumps",
    "open_source",
    "open_view",
    "read_journal",
    "record_roles",
    "resolve_agent",
    "resolve_agents",
    "safe_loads",
    "stored_roles",
    "utc_now",
    "verify_audit",
    "write_file",
]
