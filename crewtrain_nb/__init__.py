"""crewtrain_nb: look into CrewAI training data from a Jupyter notebook."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    CorruptStoreError,
    DecryptionError,
    RemoteStoreWarning,
    StoreError,
    StoreFormatError,
    StoreKeyError,
    StoreLockTimeout,
    StoreNotFoundError,
    StoreVersionError,
    StoreWriteError,
    UnsafePickleError,
)
from .store import (
    AuditReport,
    CrewTrainingHandler,
    OpaqueObject,
    PickleHandler,
    SQLiteHandler,
    StoreStats,
    StoreVersion,
    convert,
    verify_audit,
)

if TYPE_CHECKING:
    from .browser import TrainingBrowser
    from .crewai import (
        Finding,
        check_training,
        compare_trained,
        edit_suggestions,
        match_roles,
        prompt_preview,
        read_sidecar,
        write_sidecar,
    )
    from .export import export_csv, export_json, export_parquet, import_json
    from .frames import feedback_frame, metrics_frame, runs_frame, store_kind, to_frame, trained_agents_frame
    from .plots import plot_feedback, plot_metric, plot_metrics, plot_quality
    from .report import Report, build_report, summarize_report, write_report

# The store is imported at once; the rest on first use (PEP 562). A training script that only
# needs the handler, CrewAI's drop-in, then never loads pandas, matplotlib or ipywidgets.
_LAZY: dict[str, str] = {
    "TrainingBrowser": ".browser",
    **dict.fromkeys(
        (
            "Finding",
            "check_training",
            "compare_trained",
            "edit_suggestions",
            "match_roles",
            "prompt_preview",
            "read_sidecar",
            "write_sidecar",
        ),
        ".crewai",
    ),
    **dict.fromkeys(("export_csv", "export_json", "export_parquet", "import_json"), ".export"),
    **dict.fromkeys(
        ("feedback_frame", "metrics_frame", "runs_frame", "store_kind", "to_frame", "trained_agents_frame"), ".frames"
    ),
    **dict.fromkeys(("plot_feedback", "plot_metric", "plot_metrics", "plot_quality"), ".plots"),
    **dict.fromkeys(("Report", "build_report", "summarize_report", "write_report"), ".report"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it ([tool.setuptools.dynamic])

__all__ = [
    "AuditReport",
    "CorruptStoreError",
    "CrewTrainingHandler",
    "DecryptionError",
    "Finding",
    "OpaqueObject",
    "PickleHandler",
    "RemoteStoreWarning",
    "Report",
    "SQLiteHandler",
    "StoreError",
    "StoreFormatError",
    "StoreKeyError",
    "StoreLockTimeout",
    "StoreNotFoundError",
    "StoreStats",
    "StoreVersion",
    "StoreVersionError",
    "StoreWriteError",
    "TrainingBrowser",
    "UnsafePickleError",
    "__version__",
    "build_report",
    "check_training",
    "compare_trained",
    "convert",
    "edit_suggestions",
    "export_csv",
    "export_json",
    "export_parquet",
    "feedback_frame",
    "import_json",
    "match_roles",
    "metrics_frame",
    "plot_feedback",
    "plot_metric",
    "plot_metrics",
    "plot_quality",
    "prompt_preview",
    "read_sidecar",
    "runs_frame",
    "store_kind",
    "summarize_report",
    "to_frame",
    "trained_agents_frame",
    "verify_audit",
    "write_report",
    "write_sidecar",
]
