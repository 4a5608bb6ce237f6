"""The public builders: a source -> one kind of DataFrame (wide or long records, metrics, feedback, roles, runs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..crewai.files import FEEDBACK_KEYS, feedback_status, similarity, text_of
from ..crewai.roles import assign_roles, role_label
from ..store import Source
from ._columns import (
    Layout,
    empty_frame,
    frame_facts,
    in_order,
    key_columns,
    long_frame,
    string_dtype,
    text_array,
    tidy_complete,
    tidy_sparse,
    wide_frame,
)
from ._flatten import Arrays, flatten
from ._leaves import copy_leaf, is_numeric_type
from ._shapes import OpenStore, collect_rows, open_store, path_prefix

_LAYOUTS = ("wide", "long")
_ARRAYS = ("keep", "drop", "summary")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")


def _check_sep(sep: Any) -> None:
    if not isinstance(sep, str) or not sep:
        raise ValueError(f"sep must be a non-empty str that joins nested keys (e.g. '.'); got {sep!r}")


def to_frame(
    source: Source,
    *,
    layout: Layout = "wide",
    sep: str = ".",
    arrays: Arrays = "keep",
    agents: str | Iterable[str] | None = None,
    trained: Source | None = None,
    trusted: bool = False,
) -> pd.DataFrame:
    """The records of a store as a DataFrame.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict.
    layout
        ``"wide"``: one row per (agent, iteration); columns ``agent`` (str),
        ``iteration`` (int64), then one column per leaf of the records, nested
        keys joined with ``sep`` (``metrics.f1``). A key missing from some
        records gives NaN/None there. Records that are not dicts land in a
        ``value`` column. A record key named ``agent`` or ``iteration`` (CrewAI
        0.86 keeps ``"agent"`` in each record) becomes ``record.agent``.
        ``"long"``: columns ``agent``, ``iteration``, ``key``, ``value``, one row
        per leaf present in a record.
    sep
        Joins nested keys into column names.
    arrays
        List, tuple and numpy-array leaves: ``"keep"`` (a copy in an object
        column), ``"drop"``, or ``"summary"`` (``<key>.len`` for every array and
        ``<key>.mean``, ``.min``, ``.max`` for numeric ones, NaN otherwise).
    agents
        Only these agents (one name or several); all by default. A name is an
        agent id, else a role (CrewAI 0.86 records carry ``agent_role``), else a
        unique prefix of an id; ``attrs["named"]`` says which id each name meant.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).
    trained
        The run's ``trained_agents_data.pkl`` (a path, a handler or its dict): adds ``role`` and
        ``label`` columns after ``iteration``. ``role``: recorded (the sidecar), stored (CrewAI 0.86
        records) or inferred (:func:`crewtrain_nb.crewai.match_roles`), NaN where the evidence is too
        weak; ``label``: ``"Role · 0f8fad5b"`` as the browser shows agents, ``" (inferred)"`` after an
        inferred role, else the id. ``attrs["roles"]`` maps each agent to ``(role, how)``. A record key
        named ``role`` or ``label`` then becomes ``record.role`` / ``record.label``.

    Returns
    -------
    pandas.DataFrame
        Rows by agent in store order (the order agents appear in the file:
        CrewAI's task order), then iteration in numeric order. A
        ``trained_agents_data``-shaped store gives one row per agent and no
        ``iteration`` column. ``attrs`` holds ``source`` (path or None),
        ``kind``, ``agents``, ``records`` and ``layout``.

    Raises
    ------
    ValueError
        The source is not a store (saying which agent and iteration), or an
        option is not one of its choices.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> frame = to_frame(make_metrics_data(iterations=12, weights=2))
    >>> list(frame.columns)[:5]
    ['agent', 'iteration', 'loss', 'accuracy', 'metrics.f1']
    >>> frame.loc[frame.agent == "coder", "iteration"].tolist()[-3:]
    [9, 10, 11]
    >>> to_frame({"a": {0: {"x": [1, 3]}}}, arrays="summary").columns.tolist()
    ['agent', 'iteration', 'x.len', 'x.mean', 'x.min', 'x.max']
    >>> to_frame({"a": {0: {"x": 1, "y": {"z": 2}}}}, layout="long")[["key", "value"]].values.tolist()
    [['x', 1], ['y.z', 2]]
    """
    _check_choice("layout", layout, _LAYOUTS)
    _check_choice("arrays", arrays, _ARRAYS)
    _check_sep(sep)
    store = open_store(source, agents=agents, trusted=trusted)
    if trained is None:
        return _frame(store, layout=layout, sep=sep, arrays=arrays, agents=agents, reserved=frozenset())
    frame = _frame(store, layout=layout, sep=sep, arrays=arrays, agents=agents, reserved=_ROLE_COLUMNS)
    return _with_roles(frame, store, source, trained)


_ROLE_COLUMNS = frozenset({"role", "label"})


def _with_roles(frame: pd.DataFrame, store: OpenStore, source: Source, trained: Source) -> pd.DataFrame:
    """``frame`` with ``role`` and ``label`` columns after ``iteration``, from :func:`crewtrain_nb.crewai.assign_roles`.

    ``role``: the agent's role, recorded (the sidecar), stored (CrewAI 0.86 records) or inferred from its
    feedback and the trained file's suggestions; NaN where the evidence is too weak. ``label``: as the
    browser labels agents, ``"Role · 0f8fad5b"``, with ``" (inferred)"`` after an inferred role, else the id.
    Roles are assigned over the whole training file, also when ``agents=`` selects some.
    """
    if store.kind == "trained_agents":
        raise ValueError(
            path_prefix(store.path) + "trained= labels the agents of a training_data.pkl-shaped store; this is a "
            "trained-agents store (its agents are the roles already)"
        )
    matches = {str(match.agent): match for match in assign_roles(source, trained)} if len(frame) else {}
    agents = frame["agent"].astype(object)
    roles = [matches[agent].role if agent in matches else None for agent in agents]
    labels = [
        role_label(agent, matches[agent].role, matches[agent].how) if agent in matches else agent for agent in agents
    ]
    position = list(frame.columns).index("iteration") + 1 if "iteration" in frame.columns else 1
    result = frame.copy(deep=False)
    result.insert(position, "role", pd.array(roles, dtype=string_dtype()))
    result.insert(position + 1, "label", pd.array(labels, dtype=string_dtype()))
    result.attrs = {**frame.attrs, "roles": {agent: (match.role, match.how) for agent, match in matches.items()}}
    return result


def _frame(
    store: OpenStore,
    *,
    layout: Layout,
    sep: str,
    arrays: Arrays,
    agents: str | Iterable[str] | None,
    reserved: frozenset[str],
) -> pd.DataFrame:
    rows = collect_rows(store, agents)
    keyed = {"agent", "iteration"} if rows.iterations is not None else {"agent"}
    if layout == "wide":
        columns = flatten(rows, sep=sep, arrays=arrays, mode="wide", reserved=reserved | keyed)
        frame = wide_frame(rows, columns)
    else:
        columns = flatten(rows, sep=sep, arrays=arrays, mode="long", reserved=frozenset())
        frame = long_frame(rows, columns)
    frame.attrs = frame_facts(store, rows, layout=layout)
    return frame


#: The columns of :func:`metrics_frame` and their dtypes (also those of an empty one).
METRIC_COLUMNS = {"agent": string_dtype(), "iteration": np.int64, "metric": string_dtype(), "value": np.float64}


def metrics_frame(
    source: Source,
    *,
    sep: str = ".",
    arrays: Literal["drop", "summary"] = "drop",
    agents: str | Iterable[str] | None = None,
    trusted: bool = False,
) -> pd.DataFrame:
    """Tidy numeric data for plotting: one row per numeric leaf of every record.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict (an iterations store).
    sep
        Joins nested keys into metric names (``metrics.f1``).
    arrays
        ``"drop"`` ignores list/array leaves; ``"summary"`` adds their
        ``<key>.len``, ``.mean``, ``.min``, ``.max``.
    agents
        Only these agents (an id, a role or a unique id prefix each); all by default.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).

    Returns
    -------
    pandas.DataFrame
        Columns ``agent`` (str), ``iteration`` (int64), ``metric`` (str),
        ``value`` (float64), sorted by agent (in store order), metric, iteration. Numeric leaves
        are ints, floats and numpy numbers; bools, text and None are left out.

    Raises
    ------
    ValueError
        The source is not a store, or is a trained-agents store (use
        :func:`trained_agents_frame`).

    Examples
    --------
    >>> frame = metrics_frame({"a": {1: {"loss": 0.5, "ok": True, "m": {"f1": 0.7}}, 0: {"loss": 0.9}}})
    >>> frame.values.tolist()
    [['a', 0, 'loss', 0.9], ['a', 1, 'loss', 0.5], ['a', 1, 'm.f1', 0.7]]
    """
    _check_choice("arrays", arrays, ("drop", "summary"))
    _check_sep(sep)
    store = open_store(source, agents=agents, trusted=trusted)
    if store.kind == "trained_agents":
        raise ValueError(
            path_prefix(store.path) + "metrics_frame needs an iterations store ({agent: {iteration: record}}); "
            "this is a trained-agents store: use trained_agents_frame()"
        )
    rows = collect_rows(store, agents)
    columns = flatten(rows, sep=sep, arrays=arrays, mode="metrics", reserved=frozenset())
    if not columns:
        frame = empty_frame(METRIC_COLUMNS)
        frame.attrs = frame_facts(store, rows, metrics=0)
        return frame
    columns.sort(key=itemgetter(0))
    names = [name for name, _ in columns]
    if all(in_order(rows.n, chunks) for _, chunks in columns) and len(names) * len(rows.names) <= _MAX_BLOCKS:
        agent_codes, iterations, metric_codes, values = tidy_complete(rows, columns)
    else:
        agent_codes, iterations, metric_codes, values = tidy_sparse(rows, columns)
    data = {
        "agent": text_array(rows.names, agent_codes),
        "iteration": iterations,
        "metric": text_array(names, metric_codes),
        "value": values,
    }
    frame = pd.DataFrame(data, copy=False)
    frame.attrs = frame_facts(store, rows, metrics=len(names))
    return frame


#: Above this many (agent, metric) blocks, tidy rows are ordered by one sort instead of block copies.
_MAX_BLOCKS = 100_000


#: The columns every :func:`feedback_frame` has (``agent_role``, ``role``, ``label`` only at times) and their dtypes.
FEEDBACK_COLUMNS = {
    "agent": string_dtype(),
    "iteration": np.int64,
    "initial_output": string_dtype(),
    "human_feedback": string_dtype(),
    "improved_output": string_dtype(),
    "status": string_dtype(),
    "initial_chars": "Int64",
    "feedback_chars": "Int64",
    "improved_chars": "Int64",
    "similarity": np.float64,
}


def feedback_frame(
    source: Source, *, agents: str | Iterable[str] | None = None, trained: Source | None = None, trusted: bool = False
) -> pd.DataFrame:
    """One row per ``training_data.pkl`` record: the texts, a status, their sizes and a similarity.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict.
    agents
        Only these agents (an id, a role or a unique id prefix each); all by default.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).
    trained
        The run's ``trained_agents_data.pkl`` (a path, a handler or its dict): adds ``role`` and
        ``label`` columns after ``iteration``, as :func:`to_frame` does.

    Returns
    -------
    pandas.DataFrame
        ``agent``, ``iteration``, ``agent_role`` (only when the records carry
        one, as CrewAI 0.86's do), ``initial_output``, ``human_feedback``,
        ``improved_output`` (text; NaN where missing; non-text values as ``str``),
        ``status`` (``"complete"``, ``"no_improved_output"``, ``"no_feedback"``,
        see :func:`crewtrain_nb.crewai.feedback_status`), ``initial_chars``,
        ``feedback_chars``, ``improved_chars`` (character counts, <NA> where
        missing) and ``similarity`` of initial and improved output (0-1, NaN
        without an improved output; see :func:`crewtrain_nb.crewai.similarity`).
        Agents in store order, then iterations ascending; ``attrs`` counts each status.

    Examples
    --------
    >>> frame = feedback_frame({"a": {0: {"initial_output": "x y", "human_feedback": "more"}}})
    >>> frame[["status", "initial_chars", "similarity"]].values.tolist()
    [['no_improved_output', 3, nan]]
    """
    store = open_store(source, agents=agents, trusted=trusted)
    if store.kind == "trained_agents":
        raise ValueError(
            path_prefix(store.path) + "feedback_frame needs a training_data.pkl-shaped store; "
            "this is a trained-agents store: use trained_agents_frame()"
        )
    rows = collect_rows(store, agents)
    if not rows.n:
        frame = empty_frame(FEEDBACK_COLUMNS)
        frame.attrs = frame_facts(store, rows, statuses={})
        return frame if trained is None else _with_roles(frame, store, source, trained)
    records = [record if isinstance(record, Mapping) else {} for record in rows.items]
    texts = {key: [text_of(record.get(key)) for record in records] for key in FEEDBACK_KEYS}
    statuses = [feedback_status(record) for record in records]
    data = key_columns(rows)
    roles = [record.get("agent_role") for record in records]
    if any(role is not None for role in roles):  # CrewAI 0.86 names the role in every record
        data["agent_role"] = pd.array(list(map(text_of, roles)), dtype=string_dtype())
    for key in FEEDBACK_KEYS:
        data[key] = pd.array(texts[key], dtype=string_dtype())
    data["status"] = pd.array(statuses, dtype=string_dtype())
    for key, name in zip(FEEDBACK_KEYS, ("initial_chars", "feedback_chars", "improved_chars"), strict=True):
        data[name] = pd.array([None if text is None else len(text) for text in texts[key]], dtype="Int64")
    data["similarity"] = np.array(
        [
            similarity(before, after) if after is not None and after.strip() else np.nan
            for before, after in zip(texts["initial_output"], texts["improved_output"], strict=True)
        ],
        dtype=np.float64,
    )
    frame = pd.DataFrame(data, copy=False)
    counts = {status: statuses.count(status) for status in dict.fromkeys(statuses)}
    frame.attrs = frame_facts(store, rows, statuses=counts)
    return frame if trained is None else _with_roles(frame, store, source, trained)


#: The columns of :func:`trained_agents_frame` and their dtypes.
TRAINED_COLUMNS = {
    "agent": string_dtype(),
    "quality": np.float64,
    "n_suggestions": np.int64,
    "suggestions": object,
    "final_summary": string_dtype(),
}


def _suggestions(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return [copy_leaf(item) for item in value]
    return [copy_leaf(value)]


def trained_agents_frame(source: Source, *, trusted: bool = False) -> pd.DataFrame:
    """One row per role of a ``trained_agents_data.pkl``-shaped store.

    Parameters
    ----------
    source
        A handler, a path of a store file, or the store's dict.
    trusted
        A path is opened with the full unpickler, which imports the classes
        the file names: only for files you trust (pickles can run code).

    Returns
    -------
    pandas.DataFrame
        ``agent`` (the role), ``quality`` (float64, NaN when missing),
        ``n_suggestions`` (int64), ``suggestions`` (a list of str; empty when
        missing), ``final_summary`` (text, NaN when missing). Roles in store order.

    Raises
    ------
    ValueError
        The source is not a store, or is an iterations store.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_trained_agents_data
    >>> frame = trained_agents_frame(make_trained_agents_data())
    >>> frame.agent.tolist()
    ['Senior Researcher', 'Technical Writer', 'Quality Reviewer']
    >>> bool((frame.n_suggestions == frame.suggestions.map(len)).all())
    True
    """
    store = open_store(source, trusted=trusted)
    if store.kind == "iterations":
        raise ValueError(
            path_prefix(store.path) + "trained_agents_frame needs a trained_agents_data.pkl-shaped store "
            "({role: {'suggestions', 'quality', 'final_summary'}}); this is an iterations store: "
            "use to_frame(), feedback_frame() or metrics_frame()"
        )
    rows = collect_rows(store, None)
    if not rows.n:
        frame = empty_frame(TRAINED_COLUMNS)
        frame.attrs = frame_facts(store, rows)
        return frame
    suggestions = [_suggestions(entry.get("suggestions")) for entry in rows.items]
    quality = [entry.get("quality") for entry in rows.items]
    data = key_columns(rows)
    data["quality"] = np.array(
        [float(q) if is_numeric_type(type(q)) else np.nan for q in quality],
        dtype=np.float64,
    )
    data["n_suggestions"] = np.array([len(s) for s in suggestions], dtype=np.int64)
    data["suggestions"] = pd.Series(np.fromiter(suggestions, dtype=object, count=len(suggestions))).array
    data["final_summary"] = pd.array(
        [text_of(entry.get("final_summary")) for entry in rows.items], dtype=string_dtype()
    )
    frame = pd.DataFrame(data, copy=False)
    frame.attrs = frame_facts(store, rows)
    return frame


def runs_frame(
    runs: Mapping[str, Source],
    *,
    sep: str = ".",
    arrays: Arrays = "keep",
    trusted: bool = False,
) -> pd.DataFrame:
    """The wide frames of several stores, one after another, with a leading ``run`` column.

    Parameters
    ----------
    runs
        ``{"run name": source, ...}``; each source as for :func:`to_frame`.
    sep, arrays, trusted
        As for :func:`to_frame`.

    Returns
    -------
    pandas.DataFrame
        ``run`` (str), then the columns of :func:`to_frame` (union over the
        runs; NaN/None where a run lacks a column). A record key named ``run``
        becomes ``record.run``. ``attrs["runs"]`` maps each run to its facts.

    Raises
    ------
    ValueError
        ``runs`` is empty, not a mapping, or mixes store kinds.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_metrics_data
    >>> frame = runs_frame({"lr=0.1": make_metrics_data(iterations=3), "lr=0.01": make_metrics_data(iterations=5)})
    >>> frame.groupby("run").size().to_dict()
    {'lr=0.01': 15, 'lr=0.1': 9}
    """
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError(
            "runs must be a non-empty dict {'run name': source, ...}; "
            f"got {type(runs).__name__ if not isinstance(runs, Mapping) else 'an empty dict'}"
        )
    _check_choice("arrays", arrays, _ARRAYS)
    _check_sep(sep)
    frames: list[pd.DataFrame] = []
    facts: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for name, source in runs.items():
        store = open_store(source, trusted=trusted)
        frame = _frame(store, layout="wide", sep=sep, arrays=arrays, agents=None, reserved=frozenset({"run"}))
        facts[str(name)] = frame.attrs
        if store.kind != "empty":
            kinds[str(name)] = store.kind
        frame.insert(0, "run", pd.array([str(name)] * len(frame), dtype=string_dtype()))
        frames.append(frame)
    if len(set(kinds.values())) > 1:
        raise ValueError(f"runs mix store kinds ({kinds}); compare stores of one kind")
    if "trained_agents" in kinds.values():
        frames = [frame.drop(columns="iteration") if "iteration" in frame else frame for frame in frames]
    nonempty = [frame for frame in frames if len(frame)] or frames[:1]
    combined = pd.concat(nonempty, ignore_index=True, sort=False) if len(nonempty) > 1 else nonempty[0].copy()
    combined.attrs = {"runs": facts}
    return combined
