"""What the views take as data: a store :data:`~crewtrain_nb.store.Source`, or the frame a frame function made of one.

Which of the two a value is, is decided here (a DataFrame) and in :func:`crewtrain_nb.store.open_source`
(a handler, a path, the dict), nowhere else: a plot asks :func:`given_frame` first and reads the store
only when it says ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import pandas as pd

from ..store import Source
from ._builders import (
    FEEDBACK_COLUMNS,
    METRIC_COLUMNS,
    TRAINED_COLUMNS,
    feedback_frame,
    metrics_frame,
    trained_agents_frame,
)

#: A store (:data:`~crewtrain_nb.store.Source`), or the DataFrame that the matching frame function returned
#: for one (:func:`metrics_frame` for the metric plots, :func:`feedback_frame` for :func:`plot_feedback`,
#: :func:`trained_agents_frame` for :func:`plot_quality`).
FrameSource: TypeAlias = Source | pd.DataFrame

_COLUMNS: dict[Callable[..., pd.DataFrame], Mapping[str, Any]] = {
    metrics_frame: METRIC_COLUMNS,
    feedback_frame: FEEDBACK_COLUMNS,
    trained_agents_frame: TRAINED_COLUMNS,
}


def given_frame(source: FrameSource, made_by: Callable[..., pd.DataFrame]) -> pd.DataFrame | None:
    """``source`` itself when it is a DataFrame with the columns ``made_by`` gives, ``None`` when it is not a frame.

    Parameters
    ----------
    source
        What a view was given.
    made_by
        The frame function whose frames the view draws: :func:`metrics_frame`,
        :func:`feedback_frame` or :func:`trained_agents_frame`.

    Raises
    ------
    ValueError
        ``source`` is a DataFrame without some of those columns (naming them and the function).

    Examples
    --------
    >>> frame = metrics_frame({"a": {0: {"loss": 0.5}}})
    >>> given_frame(frame, metrics_frame) is frame, given_frame({"a": {}}, metrics_frame)
    (True, None)
    """
    if not isinstance(source, pd.DataFrame):
        return None
    columns = list(_COLUMNS[made_by])
    missing = [column for column in columns if column not in source.columns]
    if missing:
        raise ValueError(f"a DataFrame source needs the columns of {made_by.__name__}() {columns}; missing {missing}")
    return source
