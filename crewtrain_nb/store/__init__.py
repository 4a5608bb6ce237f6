"""The store: the only package of crewtrain_nb that opens files.

Handlers read and write CrewAI's pickled training files atomically, under a
cross-process lock, with safe loading by default.
"""

from __future__ import annotations

from ._audit import AuditReport, verify_audit
from ._backups import StoreVersion
from ._source import Source, as_handler, open_source
from ._unpickle import ALLOWED_GLOBALS, safe_loads
from .handler import DEFAULT_LOCK_TIMEOUT, PICKLE_PROTOCOL, CrewTrainingHandler, PickleHandler

__all__ = [
    "ALLOWED_GLOBALS",
    "AuditReport",
    "DEFAULT_LOCK_TIMEOUT",
    "PICKLE_PROTOCOL",
    "CrewTrainingHandler",
    "PickleHandler",
    "Source",
    "StoreVersion",
    "as_handler",
    "open_source",
    "safe_loads",
    "verify_audit",
]
