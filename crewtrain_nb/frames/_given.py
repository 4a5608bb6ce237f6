"""What the views take as data: a store :data:`~crewtrain_nb.store.Source`, or the frame a frame function made of one.

Which of the two a value is, is decided here (a DataFrame) and in :func:`crewtrain_nb.store.open_source`
(a handler, a path, the dict), nowhere else: a view gets the frame it draws from :func:`frame_for`.
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


def frame_for(
    source: FrameSource, made_by: Callable[..., pd.DataFrame], build: Callable[[Source], pd.DataFrame]
) -> pd.DataFrame:
    """The frame a view draws: ``source`` itself when it is a DataFrame, else ``build(source)`` (from the store).

    Parameters
    ----------
    source
        What the view was given.
    made_by
        The frame function whose frames the view draws: :func:`metrics_frame`,
        :func:`feedback_frame` or :func:`trained_agents_frame`. A DataFrame
        must have the columns it gives.
    build
        Makes the frame of a store (``made_by`` with the view's options, say).

    Raises
    ------
    ValueError
        ``source`` is a DataFrame without some of those columns (naming them and the function).

    Examples
    --------
    >>> frame = metrics_frame({"a": {0: {"loss": 0.5}}})
    >>> frame_for(frame, metrics_frame, metrics_frame) is frame
    True
    >>> frame_for({"a": {0: {"loss": 0.5}}}, metrics_frame, metrics_frame).equals(frame)
    True
    """
    if not isinstance(source, pd.DataFrame):
        return build(source)
    columns = list(_COLUMNS[made_by])
    missing = [column for column in columns if column not in source.columns]
    if missing:
        raise ValueError(f"a DataFrame source needs the columns of {made_by.__name__}() {columns}; missing {missing}")
    return source
