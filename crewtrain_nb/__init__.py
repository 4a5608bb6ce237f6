"""crewtrain_nb: look into CrewAI training data from a Jupyter notebook."""

from __future__ import annotations

from .browser import TrainingBrowser
from .errors import (
    CorruptStoreError,
    DecryptionError,
    RemoteStoreWarning,
    StoreError,
    StoreFormatError,
    StoreKeyError,
    StoreLockTimeout,
    StoreVersionError,
    StoreWriteError,
    UnsafePickleError,
)
from .export import export_csv, export_json, export_parquet, import_json
from .frames import feedback_frame, metrics_frame, runs_frame, store_kind, to_frame, trained_agents_frame
from .plots import plot_feedback, plot_metric, plot_metrics, plot_quality
from .report import Report, build_report, summarize_report, write_report
from .store import (
    AuditReport,
    CrewTrainingHandler,
    PickleHandler,
    SQLiteHandler,
    StoreStats,
    StoreVersion,
    convert,
    verify_audit,
)

__version__ = "0.1.0"

__all__ = [
    "AuditReport",
    "CorruptStoreError",
    "CrewTrainingHandler",
    "DecryptionError",
    "PickleHandler",
    "RemoteStoreWarning",
    "Report",
    "SQLiteHandler",
    "StoreError",
    "StoreFormatError",
    "StoreKeyError",
    "StoreLockTimeout",
    "StoreStats",
    "StoreVersion",
    "StoreVersionError",
    "StoreWriteError",
    "TrainingBrowser",
    "UnsafePickleError",
    "__version__",
    "build_report",
    "convert",
    "export_csv",
    "export_json",
    "export_parquet",
    "feedback_frame",
    "import_json",
    "metrics_frame",
    "plot_feedback",
    "plot_metric",
    "plot_metrics",
    "plot_quality",
    "runs_frame",
    "store_kind",
    "summarize_report",
    "to_frame",
    "trained_agents_frame",
    "verify_audit",
    "write_report",
]
