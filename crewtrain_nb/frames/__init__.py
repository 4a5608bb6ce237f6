"""Pure: store data -> pandas DataFrames.

Every function takes a *source*: a handler, a path of a store file (opened
through :class:`~crewtrain_nb.CrewTrainingHandler`, so safe loading applies), or
the plain nested dict. Nothing here mutates its input, writes files, or imports
matplotlib or ipywidgets.

The package holds one idea per module, each importing only those above it:

- ``_leaves``: type predicates and copies of leaf values;
- ``_shapes``: a source opened once and checked to be one kind of store
  (:class:`OpenStore`, :func:`open_store`, :func:`store_kind`), its records in row order;
- ``_flatten``: records walked column by column into pieces by leaf path;
- ``_columns``: pieces -> pandas columns and the wide, long and tidy frames;
- ``_builders``: the public frame functions;
- ``_given``: :data:`FrameSource`, what the views take (a store or one of these frames), and :func:`frame_for`.
"""

from __future__ import annotations

from ..store import OpaqueObject as OpaqueObject  # re-exported: the exports import it from here
from ..store import Source as Source
from ._builders import feedback_frame, metrics_frame, runs_frame, to_frame, trained_agents_frame
from ._columns import Layout as Layout
from ._flatten import Arrays as Arrays
from ._given import FrameSource as FrameSource
from ._given import frame_for as frame_for
from ._shapes import OpenStore, open_store, store_kind
from ._shapes import StoreKind as StoreKind

__all__ = [
    "OpenStore",
    "feedback_frame",
    "metrics_frame",
    "open_store",
    "runs_frame",
    "store_kind",
    "to_frame",
    "trained_agents_frame",
]

# The public names say where users import them from (help(), tracebacks' qualnames, the API docs), as numpy and
# pandas do for the objects their packages re-export.
for _public in (
    OpenStore,
    feedback_frame,
    metrics_frame,
    open_store,
    runs_frame,
    store_kind,
    to_frame,
    trained_agents_frame,
):
    _public.__module__ = __name__
del _public
