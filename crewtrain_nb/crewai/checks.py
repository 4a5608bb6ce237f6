"""What is wrong with a training run, said before CrewAI's evaluator runs (or after it failed).

:func:`check_training` returns one :class:`Finding` per problem; :data:`FINDING_CODES` lists every code
with what it means. The checks follow CrewAI 1.x's code: ``TaskEvaluator.evaluate_training_data``
raises ``ValueError("Critical training data error: Missing fields ...")`` for a record where any of
``initial_output``, ``human_feedback``, ``improved_output`` is missing or empty (falsy), and
``crew.train()`` then overwrites *both* files with ``{}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..store import Source
from .files import FEEDBACK_KEYS, similarity, text_of
from .roles import MIN_ROLE_SCORE, assign_roles
from .sidecar import find_sidecar
from .sources import read_trained, read_training

__all__ = ["FINDING_CODES", "REPEAT_SIMILARITY", "UNCHANGED_SIMILARITY", "Finding", "check_training"]

#: Every code :func:`check_training` produces, with what it means.
FINDING_CODES: dict[str, str] = {
    "empty_training": "training_data.pkl is {}: a failed train() wipes it (or training never ran)",
    "crewai_086": "records written by CrewAI 0.x (agent / agent_role keys)",
    "no_initial_output": "a record without initial_output: CrewAI's evaluator rejects it",
    "no_feedback": "a record with empty human_feedback: CrewAI's evaluator rejects it",
    "no_improved_output": "a record without improved_output: CrewAI's evaluator rejects it",
    "repeated_feedback": "the same correction as in an earlier iteration: training is not taking effect",
    "unchanged_output": "the first answer is the same as in the previous iteration",
    "shared_agent": "one agent owns several tasks: training_data.pkl keeps only the last task's record",
    "trained_empty": "the trained file is {}: CrewAI never evaluated this run",
    "shared_role": "agents with the same role overwrite each other in the trained file",
    "unmatched_role": "a role of the trained file that no agent of the training file maps to",
}

#: Two feedbacks of one agent at least this similar (word-level, case and punctuation ignored) repeat.
REPEAT_SIMILARITY = 0.6
#: Two first answers of one agent at least this similar (same measure) are unchanged.
UNCHANGED_SIMILARITY = 0.95

_PUNCTUATION = re.compile(r"[^\w\s]+")


@dataclass(frozen=True)
class Finding:
    """One problem of a training run.

    Attributes
    ----------
    code
        One of :data:`FINDING_CODES`.
    agent
        The agent id (or role, for ``unmatched_role``) it is about; ``None`` for the whole file.
    iteration
        The iteration it is about, or ``None``.
    message
        What is wrong, in a sentence.
    what_to_do
        What to do about it.
    """

    code: str
    agent: str | None
    iteration: int | None
    message: str
    what_to_do: str


def _normal(text: str | None) -> str | None:
    return None if text is None else _PUNCTUATION.sub(" ", text.lower())


def _falsy(value: Any) -> bool:
    """``not value`` as CrewAI's evaluator computes it, for values whose truth is ambiguous too."""
    try:
        return not value
    except Exception:  # e.g. a numpy array: CrewAI would fail on it as well, but it is not "missing"
        return False


def _record_findings(agent: str, iteration: int, record: Mapping[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    advice = {
        "no_initial_output": "the task gave no answer: check the agent's LLM, then train again",
        "no_feedback": "type feedback at every prompt (an empty answer is stored as ''), then train again",
        "no_improved_output": "let every iteration finish (Ctrl-C or a crash stops before the improved answer), "
        "then train again",
    }
    for key in FEEDBACK_KEYS:
        if not _falsy(record.get(key)):
            continue
        code = {"initial_output": "no_initial_output", "human_feedback": "no_feedback"}.get(key, "no_improved_output")
        state = "empty" if key in record else "missing"
        found.append(
            Finding(
                code,
                agent,
                iteration,
                f"{key} is {state}: CrewAI's evaluator raises 'Critical training data error' and train() "
                "then overwrites both files with {}",
                advice[code],
            )
        )
    return found


def _repeats(agent: str, records: Mapping[int, Any]) -> list[Finding]:
    found: list[Finding] = []
    feedback: list[tuple[int, str]] = []
    previous: tuple[int, str] | None = None
    for iteration in sorted(records):
        record = records[iteration]
        if not isinstance(record, Mapping):
            continue
        text = _normal(text_of(record.get("human_feedback")))
        if text and text.strip():
            earlier = [(number, old) for number, old in feedback if similarity(old, text) >= REPEAT_SIMILARITY]
            if earlier:
                found.append(
                    Finding(
                        "repeated_feedback",
                        agent,
                        iteration,
                        f"the feedback repeats the correction of iteration {earlier[0][0]}: "
                        f"{text_of(record.get('human_feedback'))!r}",
                        "training is not taking effect (crewAI #2724): check that the agent's task prompt "
                        "carries the earlier feedback, and that the crew runs with the trained file "
                        "(crewtrain-nb prompt --explain)",
                    )
                )
            feedback.append((iteration, text))
        answer = _normal(text_of(record.get("initial_output")))
        if answer and previous is not None and similarity(previous[1], answer) >= UNCHANGED_SIMILARITY:
            found.append(
                Finding(
                    "unchanged_output",
                    agent,
                    iteration,
                    f"the first answer is the same as in iteration {previous[0]}: the earlier feedback did not "
                    "change it",
                    "CrewAI appends the earlier feedback to the task prompt during training; if the answer "
                    "never changes, check the LLM's temperature and caching, and the task's human_input",
                )
            )
        if answer:
            previous = (iteration, answer)
    return found


def check_training(
    training: Source, trained: Source | None = None, *, sidecar: Any = None, trusted: bool = False
) -> list[Finding]:
    """Everything :data:`FINDING_CODES` describes that holds for this run, in file order.

    Parameters
    ----------
    training
        ``training_data.pkl``: a path, a handler, or its dict.
    trained
        The run's ``trained_agents_data.pkl`` (path, handler or dict), to check it against the training file.
    sidecar
        As for :func:`~crewtrain_nb.crewai.assign_roles` (the sidecar beside the training file by default).
    trusted
        Passed to the handler opened for a path.

    Returns
    -------
    list of Finding
        Empty when nothing is wrong.

    Raises
    ------
    StoreError, StoreFormatError
        A file cannot be read, or is not the kind the argument needs.

    Examples
    --------
    >>> from crewtrain_nb.demo import make_crewai_run
    >>> run = make_crewai_run("interrupted")
    >>> [finding.code for finding in check_training(run["training"], run["trained"])]
    ['no_improved_output', 'trained_empty']
    """
    data, path = read_training(training, trusted=trusted)
    trained_data = None if trained is None else read_trained(trained, trusted=trusted)[0]
    if not data:
        return [
            Finding(
                "empty_training",
                None,
                None,
                "training_data.pkl is empty ({}): when crew.train() raises, CrewAI 1.x overwrites both files "
                "with {}; it also starts every run by writing {}",
                "read the error train() printed (often the evaluator's 'Critical training data error'), fix it "
                "and train again; keep a copy of the files while training (crewtrain_nb's store keeps versions)",
            )
        ]
    found: list[Finding] = []
    old = [
        agent
        for agent, records in data.items()
        if any(
            isinstance(record, Mapping) and ("agent_role" in record or "agent" in record) for record in records.values()
        )
    ]
    if old:
        found.append(
            Finding(
                "crewai_086",
                None,
                None,
                f"{len(old)} of {len(data)} agents have records written by CrewAI 0.x (agent / agent_role keys); "
                "0.x often stored no improved_output, and a second feedback round replaced the first in place",
                "the roles come from the records; to train with CrewAI 1.x's evaluator, train again with 1.x",
            )
        )
    for agent, records in data.items():
        for iteration in sorted(records):
            record = records[iteration]
            found.extend(_record_findings(str(agent), iteration, record))
        found.extend(_repeats(str(agent), records))
    recorded = find_sidecar(sidecar, path)
    for agent in data:
        owned = recorded.agents[str(agent)].tasks if recorded is not None and str(agent) in recorded.agents else ()
        if len(owned) > 1:
            found.append(
                Finding(
                    "shared_agent",
                    str(agent),
                    None,
                    f"this agent owns {len(owned)} tasks ({', '.join(map(repr, owned))}); each iteration keeps "
                    "only the last task's record, so the feedback on the others is lost",
                    "give each task its own agent while training, or accept that only the last task is learned",
                )
            )
    if trained_data is None:
        return found
    if not trained_data:
        found.append(
            Finding(
                "trained_empty",
                None,
                None,
                "the trained file is {} while the training file has data: train() stopped before CrewAI "
                "evaluated the run (interrupted, or the file is another run's), so no agent gets instructions",
                "run crewai train again and let it finish (it starts both files afresh); fix any other finding first",
            )
        )
        return found
    matches = assign_roles(data, trained_data, sidecar=recorded if recorded is not None else False)
    by_role: dict[str, list[str]] = {}
    for match in matches:
        if match.role is not None:
            by_role.setdefault(match.role, []).append(str(match.agent))
    for role, agents in by_role.items():
        if len(agents) < 2:
            continue
        for agent in agents:
            others = ", ".join(other[:8] for other in agents if other != agent)
            found.append(
                Finding(
                    "shared_role",
                    agent,
                    None,
                    f"role {role!r} is also the role of agent {others}: the trained file has one entry per role, "
                    "so the agent evaluated last overwrote the others' suggestions",
                    "give each agent its own role (CrewAI keys trained data by role)",
                )
            )
    for role in trained_data:
        if role not in by_role:
            found.append(
                Finding(
                    "unmatched_role",
                    role,
                    None,
                    f"no agent of the training file maps to the trained role {role!r} (no recorded role, and no "
                    f"agent's feedback resembles its suggestions: score < {MIN_ROLE_SCORE})",
                    "check that both files come from the same run (crewai train writes both); a crew whose agent "
                    "has this role still gets its suggestions at run time",
                )
            )
    return found
