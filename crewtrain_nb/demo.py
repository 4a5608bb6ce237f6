"""Deterministic demo stores shaped like CrewAI's training files and ML-style logs.

Everything here is seeded, so the demo, the notebooks and the tests see the
same data on every machine. The generators return plain dicts; :func:`write_demo`
writes them through :class:`~crewtrain_nb.CrewTrainingHandler`.
"""

from __future__ import annotations

import math
import os
import random
import uuid
from pathlib import Path
from typing import Any

from .store import CrewTrainingHandler

__all__ = [
    "DEMO_FILES",
    "DEMO_ROLES",
    "demo_agent_names",
    "make_metrics_data",
    "make_trained_agents_data",
    "make_training_data",
    "write_demo",
]

#: Roles of the demo crew, in the order their tasks first run.
DEMO_ROLES: tuple[str, ...] = ("Senior Researcher", "Technical Writer", "Quality Reviewer")

#: File names :func:`write_demo` creates.
DEMO_FILES: dict[str, str] = {
    "training": "training_data.pkl",
    "trained": "trained_agents_data.pkl",
    "metrics": "metrics.pkl",
}

_TOPICS = (
    "vector databases",
    "retrieval-augmented generation",
    "agent memory",
    "tool calling",
    "evaluation of LLM outputs",
    "prompt caching",
)
_OPENERS = (
    "Here is a summary of {topic}.",
    "The key facts about {topic} are these.",
    "Below is an overview of {topic} for the team.",
)
_BODY = (
    "It matters because teams ship faster with it.",
    "Most systems combine it with a cache.",
    "Benchmarks disagree on the best setup.",
    "Costs grow with the number of calls.",
    "Latency is dominated by network round trips.",
    "Careful evaluation avoids regressions.",
)
_FEEDBACK = (
    "Add concrete numbers and cite a source.",
    "Too long; cut it to three bullet points.",
    "Good, but explain the trade-offs.",
    "Use simpler words for a general audience.",
    "Mention the risks, not only the benefits.",
)
_IMPROVEMENTS = (
    "According to the 2025 survey, adoption doubled.",
    "Trade-off: more recall costs more latency.",
    "Risk: stale data gives wrong answers.",
    "In short: faster, cheaper, but needs monitoring.",
)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _answer(rng: random.Random, topic: str, sentences: int) -> str:
    opener = rng.choice(_OPENERS).format(topic=topic)
    return " ".join([opener, *rng.sample(_BODY, k=min(sentences, len(_BODY)))])


def make_training_data(
    *,
    agents: int = 3,
    iterations: int = 4,
    seed: int = 0,
    missing_improved: float = 0.25,
) -> dict[str, dict[int, dict[str, str]]]:
    """Build a ``training_data.pkl``-shaped dict, as ``crewai train`` writes it.

    Parameters
    ----------
    agents
        Number of agents (uuid4 strings, seeded).
    iterations
        Iterations per agent, numbered from 0.
    seed
        Seed of the generator.
    missing_improved
        Share of records without ``improved_output`` (interrupted runs do this).

    Returns
    -------
    dict
        ``{agent_id: {iteration: {"initial_output", "human_feedback"[, "improved_output"]}}}``.
    """
    rng = random.Random(seed)
    data: dict[str, dict[int, dict[str, str]]] = {}
    for _ in range(agents):
        agent_id = _uuid(rng)
        records: dict[int, dict[str, str]] = {}
        for iteration in range(iterations):
            topic = rng.choice(_TOPICS)
            initial = _answer(rng, topic, rng.randint(2, 4))
            record = {"initial_output": initial, "human_feedback": rng.choice(_FEEDBACK)}
            if rng.random() >= missing_improved:
                record["improved_output"] = f"{initial} {rng.choice(_IMPROVEMENTS)}"
            records[iteration] = record
        data[agent_id] = records
    return data


def make_trained_agents_data(roles: tuple[str, ...] = DEMO_ROLES, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Build a ``trained_agents_data.pkl``-shaped dict keyed by role.

    Returns
    -------
    dict
        ``{role: {"suggestions": [str], "quality": float, "final_summary": str}}``.
    """
    rng = random.Random(seed)
    data: dict[str, dict[str, Any]] = {}
    for role in roles:
        suggestions = rng.sample(_FEEDBACK, k=rng.randint(2, 4))
        data[role] = {
            "suggestions": suggestions,
            "quality": round(rng.uniform(5.5, 9.5), 1),
            "final_summary": f"The {role.lower()} should: " + " ".join(s.lower() for s in suggestions),
        }
    return data


def make_metrics_data(
    *,
    agents: tuple[str, ...] = ("planner", "coder", "critic"),
    iterations: int = 60,
    seed: int = 0,
    weights: int = 8,
) -> dict[str, dict[int, dict[str, Any]]]:
    """Build an ML-style store: per-iteration ``loss``, ``accuracy``, nested ``metrics``, ``weights``.

    Parameters
    ----------
    agents
        Agent names.
    iterations
        Iterations per agent, numbered from 0.
    seed
        Seed of the generator.
    weights
        Length of the ``weights`` list in each record (0 for none).
    """
    rng = random.Random(seed)
    data: dict[str, dict[int, dict[str, Any]]] = {}
    for index, agent in enumerate(agents):
        rate = 0.04 + 0.02 * index
        records: dict[int, dict[str, Any]] = {}
        for iteration in range(iterations):
            progress = 1 - math.exp(-rate * iteration)
            loss = max(0.01, 2.0 * (1 - progress) + 0.1 + rng.gauss(0, 0.06))
            accuracy = min(0.999, max(0.0, 0.5 + 0.45 * progress + rng.gauss(0, 0.02)))
            precision = min(1.0, accuracy + rng.uniform(-0.03, 0.03))
            recall = min(1.0, accuracy + rng.uniform(-0.05, 0.02))
            record: dict[str, Any] = {
                "loss": round(loss, 4),
                "accuracy": round(accuracy, 4),
                "metrics": {
                    "f1": round(2 * precision * recall / (precision + recall), 4),
                    "precision": round(precision, 4),
                    "recall": round(recall, 4),
                },
            }
            if weights:
                record["weights"] = [round(rng.gauss(0, 1 - 0.5 * progress), 4) for _ in range(weights)]
            records[iteration] = record
        data[agent] = records
    return data


def write_demo(directory: str | os.PathLike[str], *, seed: int = 0) -> dict[str, Path]:
    """Write the demo stores into ``directory`` (created if needed) through the handler.

    The metrics store is logged the way people do it: one ``append`` per
    iteration, inside one ``batch()``.

    Returns
    -------
    dict of str to Path
        ``{"training": ..., "trained": ..., "metrics": ...}``.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = {kind: target / name for kind, name in DEMO_FILES.items()}

    training = CrewTrainingHandler(paths["training"])
    training.save(make_training_data(seed=seed))

    trained = CrewTrainingHandler(paths["trained"])
    with trained.batch():
        trained.clear()
        for role, entry in make_trained_agents_data(seed=seed).items():
            trained.save_trained_data(role, entry)

    metrics = CrewTrainingHandler(paths["metrics"])
    with metrics.batch():
        metrics.clear()
        for agent, records in make_metrics_data(seed=seed).items():
            for iteration, record in records.items():
                metrics.append(iteration, agent, record)
    for handler in (training, trained, metrics):
        handler.close()
    return paths


def demo_agent_names(training: dict[str, Any], roles: tuple[str, ...] = DEMO_ROLES) -> dict[str, str]:
    """Map the demo's agent ids to roles, in the order the agents appear.

    CrewAI's ``training_data.pkl`` never names roles; this is the link a user
    knows from their own crew (tasks run in order).
    """
    return dict(zip(training, roles, strict=False))  # extra agents stay unnamed
