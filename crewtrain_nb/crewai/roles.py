"""Which role each agent id of ``training_data.pkl`` had: recorded, stored in the records, or inferred.

The ids in ``training_data.pkl`` belong to a copy of the crew that ``crew.train()`` makes; nothing in
the file names a role, and the trained file is keyed by role. The evidence, best first:

1. ``"recorded"``: the sidecar ``<training file>.agents.json`` (:mod:`crewtrain_nb.crewai.sidecar`).
2. ``"record"``: CrewAI 0.86 stored ``agent_role`` in each record.
3. ``"inferred"``: CrewAI's evaluator distils each agent's suggestions and summary from that agent's
   feedback, so the feedback of an agent resembles the suggestions of its role. The resemblance is the
   cosine similarity of TF-IDF vectors of word-boundary character 3- and 4-grams (as scikit-learn's
   ``analyzer="char_wb"``, here in the standard library): paraphrases share word stems ("verify",
   "unverified") more than whole words. Order is weak evidence only (``training_data.pkl`` lists agents in
   the order their tasks ran, the trained file in the crew's agent order): it breaks ties, nothing more.

The roles are chosen together, for the best total score: each agent gets at most one role, and a role
goes to two agents only when the training file has more agents than the trained file has roles (two
agents with one role overwrite each other in the trained file). The search is exact (dynamic
programming over the sets of roles used, ``O(agents * roles * 2**roles)``) up to
:data:`EXACT_SEARCH_ROLES` roles, greedy beyond. An inferred role whose score is below ``min_score``
(default :data:`MIN_ROLE_SCORE`) is not given: the role is ``None``.

:func:`match_roles` returns a DataFrame (pandas is imported when it is called, so importing
:mod:`crewtrain_nb.crewai` stays light for a training process); :func:`assign_roles` is the same as a list.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..store import Source
from .files import text_of
from .sidecar import find_sidecar
from .sources import read_trained, read_training

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "EXACT_SEARCH_ROLES",
    "MIN_ROLE_SCORE",
    "ORDER_WEIGHT",
    "RoleHow",
    "RoleMatch",
    "assign_roles",
    "match_roles",
    "role_label",
    "role_scores",
    "text_similarity",
]

RoleHow = Literal["recorded", "record", "inferred"]

#: Below this similarity an inferred role is not given (the role is ``None``). Measured on the demo
#: runs (:func:`crewtrain_nb.demo.make_crewai_run`): an agent and its own role score 0.2-0.5, an agent
#: and another role below 0.1.
MIN_ROLE_SCORE = 0.15
#: Added to the score of an agent and the role at the same position, to break ties only.
ORDER_WEIGHT = 0.001
#: Up to this many candidate roles the assignment is exact; beyond it, greedy.
EXACT_SEARCH_ROLES = 12

_WORD = re.compile(r"[^\W\d_]+|\d+")
# Words that carry no evidence about a role (English function words and CrewAI's boilerplate).
_STOPWORDS = frozenset(
    """a about after again all also an and any are as at be because been before being both but by can could
    did do does each every few for from had has have he her here his how i if in into is it its just more most
    must my no nor not of off on once only or other our out over own please same she should so some such than
    that the their them then there these they this those through to too under until up very was we were what
    when where which while who why will with would you your""".split()
)


@dataclass(frozen=True)
class RoleMatch:
    """The role of one agent id, how it is known, and the score of the evidence.

    ``score`` is 1.0 for a recorded role or one stored in the records; for an inferred role (or an agent
    left without one) the similarity of its feedback with the best role it could get, ``nan`` when there
    was no role to compare with.
    """

    agent: Any
    role: str | None
    how: RoleHow | None
    score: float


def _grams(text: str) -> Counter[str]:
    grams: Counter[str] = Counter()
    for word in _WORD.findall(text.lower()):
        if len(word) < 2 or word in _STOPWORDS:
            continue
        padded = f" {word} "
        for size in (3, 4):
            grams.update(padded[start : start + size] for start in range(len(padded) - size + 1))
    return grams


def _tfidf(documents: list[Counter[str]]) -> list[dict[str, float]]:
    """Unit TF-IDF vectors (sublinear tf, smoothed idf, as scikit-learn's defaults with ``sublinear_tf``)."""
    frequency: Counter[str] = Counter()
    for document in documents:
        frequency.update(document.keys())
    total = len(documents)
    vectors: list[dict[str, float]] = []
    for document in documents:
        vector = {
            gram: (1.0 + math.log(count)) * (math.log((1 + total) / (1 + frequency[gram])) + 1.0)
            for gram, count in document.items()
        }
        norm = math.sqrt(sum(value * value for value in vector.values()))
        vectors.append({gram: value / norm for gram, value in vector.items()} if norm else {})
    return vectors


def _cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(value * b.get(gram, 0.0) for gram, value in a.items())


def text_similarity(texts: Iterable[str], others: Iterable[str]) -> list[list[float]]:
    """Pairwise TF-IDF cosine similarity (0-1) of ``texts`` with ``others``, fitted on both together.

    Examples
    --------
    >>> scores = text_similarity(["Cite a source for every claim."], ["Back each claim with a source.", "Be brief."])
    >>> scores[0][0] > 0.3 > scores[0][1]
    True
    """
    left, right = [_grams(text) for text in texts], [_grams(text) for text in others]
    vectors = _tfidf(left + right)
    return [[_cosine(vector, other) for other in vectors[len(left) :]] for vector in vectors[: len(left)]]


def _feedback_text(records: Any) -> str:
    if not isinstance(records, Mapping):
        return ""
    texts = (text_of(record.get("human_feedback")) for record in records.values() if isinstance(record, Mapping))
    return "\n".join(text for text in texts if text)


def _role_text(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return ""
    suggestions = entry.get("suggestions")
    if isinstance(suggestions, str) or not isinstance(suggestions, Iterable):
        suggestions = [suggestions]
    texts = [text_of(item) for item in suggestions] + [text_of(entry.get("final_summary"))]
    return "\n".join(text for text in texts if text)


def role_scores(training: Mapping[Any, Any], trained: Mapping[str, Any]) -> dict[Any, dict[str, float]]:
    """``{agent: {role: similarity}}`` of each agent's feedback with each role's suggestions and summary.

    Both arguments are the files' dicts (see :func:`assign_roles` for sources).
    """
    agents, roles = list(training), list(trained)
    if not agents or not roles:
        return {agent: {} for agent in agents}
    matrix = text_similarity(
        [_feedback_text(training[agent]) for agent in agents], [_role_text(trained[role]) for role in roles]
    )
    return {agent: dict(zip(roles, row, strict=True)) for agent, row in zip(agents, matrix, strict=True)}


def _best_assignment(scores: list[list[float]], *, reuse: bool) -> list[int]:
    """The column of each row for the best total: columns distinct, or (``reuse``) every column used.

    Dynamic programming over the set of columns used so far; ties keep the first found (lower columns
    for earlier rows), so the result is deterministic.
    """
    rows, columns = len(scores), len(scores[0])
    if columns > EXACT_SEARCH_ROLES:
        return _greedy_assignment(scores, reuse=reuse)
    full = (1 << columns) - 1
    states: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for row in range(rows):
        following: dict[int, tuple[float, tuple[int, ...]]] = {}
        left = rows - row - 1
        for mask, (total, picks) in states.items():
            for column in range(columns):
                bit = 1 << column
                if mask & bit and not reuse:
                    continue
                key = mask | bit
                if reuse and bin(full & ~key).count("1") > left:
                    continue  # the roles still unused could not all be given any more
                value = total + scores[row][column]
                if key not in following or value > following[key][0] + 1e-12:
                    following[key] = (value, (*picks, column))
        states = following
    if reuse:
        return list(states[full][1])
    best = max(states.values(), key=lambda state: state[0])
    return list(best[1])


def _greedy_assignment(scores: list[list[float]], *, reuse: bool) -> list[int]:
    pairs = sorted(
        ((score, row, column) for row, line in enumerate(scores) for column, score in enumerate(line)),
        key=lambda item: (-item[0], item[1], item[2]),
    )
    chosen: dict[int, int] = {}
    used: set[int] = set()
    for _, row, column in pairs:
        if row not in chosen and (reuse or column not in used):
            chosen[row] = column
            used.add(column)
    return [chosen[row] for row in range(len(scores))]


def _recorded_role(records: Any) -> str | None:
    """CrewAI 0.86's ``agent_role``, from the first record that has one."""
    if isinstance(records, Mapping):
        for record in records.values():
            role = record.get("agent_role") if isinstance(record, Mapping) else None
            if isinstance(role, str) and role:
                return role
    return None


def assign_roles(
    training: Source,
    trained: Source | None = None,
    *,
    sidecar: Any = None,
    min_score: float = MIN_ROLE_SCORE,
    trusted: bool = False,
) -> list[RoleMatch]:
    """The role of every agent id of ``training``, in the file's order (see the module's docstring).

    Parameters
    ----------
    training
        ``training_data.pkl``: a path, a handler, or its dict.
    trained
        ``trained_agents_data.pkl`` of the same run (a path, a handler, or its dict), for inference.
    sidecar
        ``None`` (default): the sidecar beside the training file when there is one. A path, a
        :class:`~crewtrain_nb.crewai.Sidecar`, or ``{agent_id: role}``; ``False`` to ignore it.
    min_score
        Inferred roles scoring below this are not given.
    trusted
        Passed to the handler opened for a path.

    Returns
    -------
    list of RoleMatch

    Raises
    ------
    StoreError, StoreFormatError
        A file cannot be read, or is not the kind of file the argument needs.
    """
    data, path = read_training(training, trusted=trusted)
    roles_data: Mapping[str, Any] = {} if trained is None else read_trained(trained, trusted=trusted)[0]
    found = find_sidecar(sidecar, path)
    recorded = found.roles() if found is not None else {}
    known: dict[Any, RoleMatch] = {}
    for agent, records in data.items():
        if str(agent) in recorded:
            known[agent] = RoleMatch(agent, recorded[str(agent)], "recorded", 1.0)
        elif (role := _recorded_role(records)) is not None:
            known[agent] = RoleMatch(agent, role, "record", 1.0)
    unknown = [agent for agent in data if agent not in known]
    taken = {match.role for match in known.values()}
    candidates = [role for role in roles_data if role not in taken] or list(roles_data)
    inferred: dict[Any, RoleMatch] = {agent: RoleMatch(agent, None, None, math.nan) for agent in unknown}
    if unknown and candidates:
        scores = role_scores({agent: data[agent] for agent in unknown}, {role: roles_data[role] for role in candidates})
        matrix = [
            [scores[agent][role] + (ORDER_WEIGHT if row == column else 0.0) for column, role in enumerate(candidates)]
            for row, agent in enumerate(unknown)
        ]
        picks = _best_assignment(matrix, reuse=len(unknown) > len(candidates))
        for agent, column in zip(unknown, picks, strict=True):
            role = candidates[column]
            score = scores[agent][role]
            inferred[agent] = (
                RoleMatch(agent, role, "inferred", score) if score >= min_score else RoleMatch(agent, None, None, score)
            )
    return [known.get(agent) or inferred[agent] for agent in data]


def role_label(agent: Any, role: str | None, how: RoleHow | None = None) -> str:
    """An agent's label, as the browser shows it: the role and the id's first 8 characters, or the id alone.

    ``" (inferred)"`` follows an inferred role, so a guess from the text is never shown as a fact.

    Examples
    --------
    >>> role_label("0f8fad5b-d9cb-469f-a165-70867728950e", "Writer", "inferred")
    'Writer · 0f8fad5b (inferred)'
    >>> role_label("0f8fad5b-d9cb-469f-a165-70867728950e", None)
    '0f8fad5b-d9cb-469f-a165-70867728950e'
    """
    name = str(agent)
    if role is None or role == name:
        return name
    return f"{role} · {name[:8]}" + (" (inferred)" if how == "inferred" else "")


def match_roles(
    training: Source,
    trained: Source | None = None,
    *,
    sidecar: Any = None,
    min_score: float = MIN_ROLE_SCORE,
    trusted: bool = False,
) -> pd.DataFrame:
    """The role of every agent id of ``training_data.pkl``, by the best evidence there is.

    Parameters are those of :func:`assign_roles`.

    Returns
    -------
    pandas.DataFrame
        One row per agent in the file's order: ``agent``, ``role`` (``None`` where the evidence is too
        weak: unknown, never guessed), ``how`` (``"recorded"``, ``"record"``, ``"inferred"``, or ``None``
        with the role) and ``score`` (float64; see :class:`RoleMatch`).

    Examples
    --------
    >>> from crewtrain_nb.demo import make_crewai_run
    >>> run = make_crewai_run("paraphrased")
    >>> frame = match_roles(run["training"], run["trained"])
    >>> frame.role.tolist() == [info["role"] for info in run["agents"].values()]
    True
    >>> set(frame.how)
    {'inferred'}
    """
    import pandas as pd

    matches = assign_roles(training, trained, sidecar=sidecar, min_score=min_score, trusted=trusted)
    return pd.DataFrame(
        {
            "agent": pd.Series([str(match.agent) for match in matches], dtype=object),
            "role": pd.Series([match.role for match in matches], dtype=object),
            "how": pd.Series([match.how for match in matches], dtype=object),
            "score": pd.Series([match.score for match in matches], dtype="float64"),
        }
    )
