"""Two trained files side by side: two training runs, or a file before and after curating it.

:func:`compare_entries` is the comparison as a list; :func:`compare_trained` as a DataFrame (pandas is
imported when it is called, so importing :mod:`crewtrain_nb.crewai` stays light).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..store import Source
from .sources import read_trained

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RoleComparison", "compare_entries", "compare_trained"]

Presence = Literal["both", "only_a", "only_b"]


@dataclass(frozen=True)
class RoleComparison:
    """One role in two trained files ``a`` (before) and ``b`` (after).

    Suggestions are compared as exact strings: an edited suggestion is one removed and one added.
    """

    role: str
    presence: Presence
    quality_before: float
    quality_after: float
    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept: tuple[str, ...]

    @property
    def quality_delta(self) -> float:
        """``quality_after - quality_before`` (``nan`` when either is missing)."""
        return self.quality_after - self.quality_before


def _quality(entry: Any) -> float:
    value = entry.get("quality") if isinstance(entry, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return math.nan
    return float(value)


def _suggestions(entry: Any) -> list[str]:
    value = entry.get("suggestions") if isinstance(entry, Mapping) else None
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        return [str(value)]
    return [item if isinstance(item, str) else str(item) for item in value]


def compare_entries(a: Source, b: Source, *, trusted: bool = False) -> list[RoleComparison]:
    """Compare two trained files role by role: the roles of ``a`` in its order, then those only in ``b``.

    Parameters
    ----------
    a, b
        Two ``trained_agents_data.pkl`` (paths, handlers or dicts): before, after.
    trusted
        Passed to the handlers opened for paths.
    """
    before = read_trained(a, trusted=trusted, name="a")[0]
    after = read_trained(b, trusted=trusted, name="b")[0]
    rows: list[RoleComparison] = []
    for role in [*before, *(role for role in after if role not in before)]:
        presence: Presence = "both" if role in before and role in after else "only_a" if role in before else "only_b"
        old, new = _suggestions(before.get(role)), _suggestions(after.get(role))
        rows.append(
            RoleComparison(
                role,
                presence,
                _quality(before.get(role)),
                _quality(after.get(role)),
                added=tuple(item for item in new if item not in old),
                removed=tuple(item for item in old if item not in new),
                kept=tuple(item for item in new if item in old),
            )
        )
    return rows


def compare_trained(a: Source, b: Source, *, trusted: bool = False) -> pd.DataFrame:
    """Per role: quality before, after and the change; suggestions added, removed and kept.

    Parameters
    ----------
    a, b
        Two ``trained_agents_data.pkl`` (paths, handlers or dicts): before, after.
    trusted
        Passed to the handlers opened for paths.

    Returns
    -------
    pandas.DataFrame
        One row per role (those of ``a`` first, in its order): ``role``, ``presence`` (``"both"``,
        ``"only_a"``, ``"only_b"``), ``quality_before``, ``quality_after``, ``quality_delta`` (float64,
        NaN where a side lacks the role), ``added``, ``removed``, ``kept`` (lists of suggestions) and
        ``n_added``, ``n_removed``, ``n_kept``.

    Examples
    --------
    >>> a = {"Writer": {"suggestions": ["Be brief."], "quality": 6.0, "final_summary": ""}}
    >>> b = {"Writer": {"suggestions": ["Be brief.", "Use headings."], "quality": 7.5, "final_summary": ""}}
    >>> compare_trained(a, b)[["role", "quality_delta", "added"]].values.tolist()
    [['Writer', 1.5, ['Use headings.']]]
    """
    import pandas as pd

    rows = compare_entries(a, b, trusted=trusted)

    def lists(name: str) -> pd.Series:
        return pd.Series([list(getattr(row, name)) for row in rows], dtype=object)

    return pd.DataFrame(
        {
            "role": pd.Series([row.role for row in rows], dtype=object),
            "presence": pd.Series([row.presence for row in rows], dtype=object),
            "quality_before": pd.Series([row.quality_before for row in rows], dtype="float64"),
            "quality_after": pd.Series([row.quality_after for row in rows], dtype="float64"),
            "quality_delta": pd.Series([row.quality_delta for row in rows], dtype="float64"),
            "added": lists("added"),
            "removed": lists("removed"),
            "kept": lists("kept"),
            "n_added": pd.Series([len(row.added) for row in rows], dtype="int64"),
            "n_removed": pd.Series([len(row.removed) for row in rows], dtype="int64"),
            "n_kept": pd.Series([len(row.kept) for row in rows], dtype="int64"),
        }
    )
