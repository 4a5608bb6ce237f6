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

from .store import CrewTrainingHandler, OpaqueObject

__all__ = [
    "CREWAI_SCENARIOS",
    "DEMO_FILES",
    "DEMO_ROLES",
    "demo_agent_names",
    "STRUCTURED_CLASS",
    "make_crewai_run",
    "make_metrics_data",
    "make_structured_run",
    "make_trained_agents_data",
    "make_training_data",
    "make_training_data_086",
    "write_crewai_run",
    "write_demo",
    "write_structured_run",
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
    empty_feedback: float = 0.0,
) -> dict[str, dict[int, dict[str, str]]]:
    """Build a ``training_data.pkl``-shaped dict, as ``crewai train`` (CrewAI 1.x) writes it.

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
    empty_feedback
        Share of records whose ``human_feedback`` is ``""`` (the person pressed
        Enter; CrewAI stores it so and its evaluator then rejects the record).

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
            if empty_feedback and rng.random() < empty_feedback:  # no draw at 0: the default data stays the same
                record["human_feedback"] = ""
            if rng.random() >= missing_improved:
                record["improved_output"] = f"{initial} {rng.choice(_IMPROVEMENTS)}"
            records[iteration] = record
        data[agent_id] = records
    return data


#: Feedback a person gives when the answer needs no change (CrewAI 0.86 then asks no second round).
_APPROVALS = ("looks good", "Great, no changes.")


def make_training_data_086(
    roles: tuple[str, ...] = DEMO_ROLES,
    *,
    iterations: int = 4,
    seed: int = 0,
    empty_feedback: float = 0.0,
) -> dict[str, dict[int, dict[str, str]]]:
    """Build a ``training_data.pkl``-shaped dict as CrewAI 0.86 writes it.

    Each record is ``{"initial_output", "human_feedback", "agent", "agent_role"}``
    (``agent`` is the agent's id, as the outer key). ``improved_output`` is never
    there: when the feedback asks for changes, CrewAI 0.86 asks again and the
    second round replaces ``initial_output`` and ``human_feedback`` in place, so
    ``initial_output`` holds the revised answer and ``human_feedback`` the last
    feedback (crewAI #1761).

    Parameters
    ----------
    roles
        One agent per role, in the order their tasks first run.
    iterations
        Iterations per agent, numbered from 0.
    seed
        Seed of the generator.
    empty_feedback
        Share of records whose ``human_feedback`` is ``""``.
    """
    rng = random.Random(seed)
    data: dict[str, dict[int, dict[str, str]]] = {}
    for role in roles:
        agent_id = _uuid(rng)
        records: dict[int, dict[str, str]] = {}
        for iteration in range(iterations):
            topic = rng.choice(_TOPICS)
            answer = _answer(rng, topic, rng.randint(2, 4))
            if rng.random() < 0.5:  # changes were asked for: the record holds the second round
                answer = f"{answer} {rng.choice(_IMPROVEMENTS)}"
            feedback = rng.choice(_APPROVALS)
            if empty_feedback and rng.random() < empty_feedback:
                feedback = ""
            records[iteration] = {
                "initial_output": answer,
                "human_feedback": feedback,
                "agent": agent_id,
                "agent_role": role,
            }
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


# -- CrewAI-shaped runs: the cases the CrewAI insight (crewtrain_nb.crewai) explains ------------------

#: Every scenario :func:`make_crewai_run` builds.
CREWAI_SCENARIOS: tuple[str, ...] = (
    "paraphrased",
    "repeated_correction",
    "shared_role",
    "shared_agent",
    "interrupted",
    "empty_feedback",
    "failed",
    "crewai_086",
    "stale_trained",
)

# Each role: its goal, its task, and what a person told it, each with the suggestion CrewAI's evaluator
# distils from it. The evaluator paraphrases (it is an LLM asked for "actionable instructions"), so a
# suggestion keeps the feedback's key terms in other words and never quotes it.
_CREW: dict[str, dict[str, Any]] = {
    "Market Researcher": {
        "goal": "Find reliable, current facts about the market",
        "task": "Research the European e-bike market: size, growth and main players.",
        "feedback": (
            (
                "Add concrete numbers: market size, growth rate, and the year of each figure.",
                "Quantify the market with its size and growth, dating every figure.",
            ),
            ("Cite a source for every claim, with a link.", "Back each claim with a named, linked source."),
            (
                "Cover the main competitors, not only the leader.",
                "Compare several competitors instead of describing the market leader alone.",
            ),
            (
                "Your data is from 2019; use figures from the last two years.",
                "Prefer recent statistics: figures at most two years old.",
            ),
        ),
        "answer": (
            "The European e-bike market is large and growing.",
            "Germany and the Netherlands buy the most e-bikes.",
            "Prices fall as battery costs drop.",
            "Several brands compete for city commuters.",
        ),
    },
    "Report Writer": {
        "goal": "Turn research into a short, clear report for managers",
        "task": "Write a one-page report on the e-bike market from the research.",
        "feedback": (
            ("Too long. Cut it to five bullet points.", "Keep reports brief: five bullets at most."),
            (
                "Start with a one-sentence summary of the conclusion.",
                "Open with a single sentence that states the conclusion.",
            ),
            (
                "Avoid jargon; write for managers without a technical background.",
                "Use plain wording that non-technical managers understand, free of jargon.",
            ),
            ("Use headings so the reader can skim.", "Organise the text under headings that make skimming easy."),
        ),
        "answer": (
            "This report looks at the e-bike market in Europe.",
            "Demand is driven by commuting and subsidies.",
            "The outlook for the next years is positive.",
            "Risks include supply chains and regulation.",
        ),
    },
    "Fact Checker": {
        "goal": "Make sure every statement in the report is true",
        "task": "Check each statement of the report against the research.",
        "feedback": (
            ("Mark every claim you could not verify.", "Flag each unverified claim explicitly."),
            (
                "Give a confidence level for each check.",
                "State how confident you are in every verification, as a level.",
            ),
            ("Quote the exact sentence you are checking.", "Reproduce each checked sentence exactly, word for word."),
            (
                "Point out contradictions between the research and the draft.",
                "Highlight where the draft contradicts the research.",
            ),
        ),
        "answer": (
            "Statement 1 matches the research.",
            "Statement 2 is supported by the sales figures.",
            "Statement 3 could not be found in the research.",
            "Statement 4 is plausible.",
        ),
    },
    "Data Analyst": {
        "goal": "Explain the numbers behind the market",
        "task": "Analyse quarterly e-bike sales.",
        "feedback": (
            ("Show the trend in a table by quarter.", "Present quarterly trends as a table."),
            ("Explain the outliers in Q3.", "Account for every outlier you find."),
        ),
        "answer": ("Sales rose in every quarter.", "Q3 was unusually strong."),
    },
}
_TASK_ORDER: tuple[str, ...] = ("Market Researcher", "Report Writer", "Fact Checker")
# The crew lists its agents in another order than their tasks run: the trained file follows the crew.
_CREW_ORDER: tuple[str, ...] = ("Report Writer", "Fact Checker", "Market Researcher")
# What a person says when training does not take effect (crewAI #2724): the same correction again.
_REPEATED: tuple[str, ...] = (
    "Too long. Cut it to five bullet points.",
    "Still too long; cut it to five bullet points.",
    "Too long again. Cut it to five bullet points, please.",
    "Too long! Cut it to five bullet points.",
)


def _crew_answer(rng: random.Random, role: str, applied: list[str]) -> str:
    return " ".join([*rng.sample(_CREW[role]["answer"], k=3), *applied])


def _crew_records(
    rng: random.Random, role: str, iterations: int, *, picks: list[int] | None = None
) -> tuple[dict[int, dict[str, str]], list[str]]:
    """One agent's records (feedback chosen from its role's pool) and the suggestions distilled from them.

    During training CrewAI appends the agent's earlier feedback to its task prompt, so each first answer
    already applies the earlier corrections, and the improved answer applies this one too.
    """
    pool = _CREW[role]["feedback"]
    chosen = picks if picks is not None else rng.sample(range(len(pool)), k=min(iterations, len(pool)))
    records: dict[int, dict[str, str]] = {}
    applied: list[str] = []
    for iteration in range(iterations):
        feedback, suggestion = pool[chosen[iteration % len(chosen)]]
        records[iteration] = {
            "initial_output": _crew_answer(rng, role, applied),
            "human_feedback": feedback,
            "improved_output": _crew_answer(rng, role, [*applied, suggestion]),
        }
        applied.append(suggestion)
    suggestions = list(dict.fromkeys(pool[index][1] for index in chosen[:iterations]))
    return records, suggestions


def _trained_entry(rng: random.Random, suggestions: list[str]) -> dict[str, Any]:
    steps = " ".join(f"{number}. {text}" for number, text in enumerate(suggestions, start=1))
    return {"suggestions": suggestions, "quality": float(round(rng.uniform(6.0, 9.0), 1)), "final_summary": steps}


def _agent_info(role: str, tasks: list[str] | None = None) -> dict[str, Any]:
    return {"role": role, "goal": _CREW[role]["goal"], "tasks": tasks if tasks is not None else [_CREW[role]["task"]]}


def make_crewai_run(scenario: str = "paraphrased", *, iterations: int = 3, seed: int = 0) -> dict[str, Any]:
    """Build both files of one ``crew.train()`` run, shaped as CrewAI writes them, for one scenario.

    Parameters
    ----------
    scenario
        One of :data:`CREWAI_SCENARIOS`:

        ``"paraphrased"``
            A clean CrewAI 1.x run of three agents; each suggestion paraphrases a feedback (never
            quotes it), and the trained file lists the roles in the crew's order, not in task order.
        ``"repeated_correction"``
            The writer gets the same correction in every iteration and the fact checker's first
            answer never changes: training is not taking effect (crewAI #2724).
        ``"shared_role"``
            Two agents with the role ``"Market Researcher"``: the trained file keeps one entry for
            both (the last one evaluated), so it has fewer roles than the training file has agents.
        ``"shared_agent"``
            One agent owns two tasks: ``training_data.pkl`` keeps only the last task's record per iteration.
        ``"interrupted"``
            Stopped (Ctrl-C) after the last feedback: that record has no ``improved_output`` and the
            trained file is still the ``{}`` written at the start.
        ``"empty_feedback"``
            A person pressed Enter without typing: ``human_feedback`` is ``""``. The files as they are
            before CrewAI's evaluator runs (it rejects that record, and ``train()`` then wipes both).
        ``"failed"``
            ``train()`` raised: CrewAI 1.x overwrote both files with ``{}``.
        ``"crewai_086"``
            CrewAI 0.86 records: ``agent`` and ``agent_role`` keys, ``improved_output`` missing.
        ``"stale_trained"``
            A trained file from an earlier, bigger crew: its ``"Data Analyst"`` matches no agent.
    iterations
        Training iterations (``n_iterations``), 1 to 4.
    seed
        Seed of the generator; the same seed gives the same run.

    Returns
    -------
    dict
        ``{"training": training_data.pkl's dict, "trained": trained_agents_data.pkl's dict,
        "agents": {agent_id: {"role", "goal", "tasks"}}}``: ``agents`` is the truth a user knows from
        their crew (what the sidecar records, see :func:`crewtrain_nb.crewai.write_sidecar`); empty
        for ``"failed"``.

    Examples
    --------
    >>> run = make_crewai_run("paraphrased", seed=1)
    >>> [info["role"] for info in run["agents"].values()]
    ['Market Researcher', 'Report Writer', 'Fact Checker']
    >>> list(run["trained"])
    ['Report Writer', 'Fact Checker', 'Market Researcher']
    """
    if scenario not in CREWAI_SCENARIOS:
        raise ValueError(f"scenario must be one of {', '.join(map(repr, CREWAI_SCENARIOS))}; got {scenario!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 4:
        raise ValueError(f"iterations must be an int from 1 to 4; got {iterations!r}")
    rng = random.Random(f"{scenario}/{seed}")
    if scenario == "failed":
        return {"training": {}, "trained": {}, "agents": {}}

    training: dict[str, dict[int, dict[str, Any]]] = {}
    agents: dict[str, dict[str, Any]] = {}
    suggestions: dict[str, list[str]] = {}  # agent id -> what its evaluation gives
    roles = _TASK_ORDER
    if scenario == "shared_role":
        roles = ("Market Researcher", "Market Researcher", "Report Writer")
    elif scenario == "shared_agent":
        roles = ("Market Researcher", "Report Writer")
    for index, role in enumerate(roles):
        agent_id = _uuid(rng)
        picks = None
        if scenario == "shared_role" and role == "Market Researcher":
            picks = [1, 0, 3, 2] if index == 0 else [1, 2, 3, 0]  # both asked for sources and recent data
        records, suggestions[agent_id] = _crew_records(rng, role, iterations, picks=picks)
        tasks = None
        if scenario == "shared_role" and role == "Market Researcher":
            tasks = (
                ["Estimate the size of the European e-bike market."]
                if index == 0
                else ["List the main competitors in the European e-bike market."]
            )
        if scenario == "shared_agent" and role == "Market Researcher":
            tasks = [_CREW[role]["task"], "Summarise the research in five sentences."]
        training[agent_id] = records
        agents[agent_id] = _agent_info(role, tasks)
    ids = list(training)

    if scenario == "repeated_correction":
        writer, checker = ids[1], ids[2]
        for iteration, record in training[writer].items():
            record["human_feedback"] = _REPEATED[iteration]
        suggestions[writer] = ["Keep every report to five bullet points or fewer."]
        stuck = training[checker][0]["initial_output"]
        for record in training[checker].values():
            record["initial_output"] = stuck
    elif scenario == "interrupted":
        del training[ids[-1]][iterations - 1]["improved_output"]
    elif scenario == "empty_feedback":
        training[ids[1]][0]["human_feedback"] = ""
    elif scenario == "crewai_086":
        for agent_id, records in training.items():
            for record in records.values():
                del record["improved_output"]
                record["agent"] = agent_id
                record["agent_role"] = agents[agent_id]["role"]

    trained: dict[str, dict[str, Any]] = {}
    if scenario not in ("interrupted", "empty_feedback"):  # train() stopped or raised before evaluating
        order = [agent_id for role in _CREW_ORDER for agent_id in ids if agents[agent_id]["role"] == role]
        for agent_id in order:  # CrewAI evaluates in the crew's agent order; one role keeps the last entry
            trained[agents[agent_id]["role"]] = _trained_entry(rng, suggestions[agent_id])
    if scenario == "stale_trained":
        analyst = _CREW["Data Analyst"]["feedback"]
        trained["Data Analyst"] = _trained_entry(rng, [suggestion for _, suggestion in analyst])
    return {"training": training, "trained": trained, "agents": agents}


def write_crewai_run(
    directory: str | os.PathLike[str], scenario: str = "paraphrased", *, iterations: int = 3, seed: int = 0
) -> dict[str, Path]:
    """Write :func:`make_crewai_run`'s two files into ``directory`` (created if needed) through the handler.

    Returns
    -------
    dict of str to Path
        ``{"training": .../training_data.pkl, "trained": .../trained_agents_data.pkl}``. No sidecar is
        written (CrewAI writes none); pass the run's ``agents`` to :func:`crewtrain_nb.crewai.write_sidecar`.
    """
    run = make_crewai_run(scenario, iterations=iterations, seed=seed)
    return _write_run_files(run, directory)


def _write_run_files(run: dict[str, Any], directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Save a run's ``training`` and ``trained`` dicts under CrewAI's file names in ``directory`` (created)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = {kind: target / DEMO_FILES[kind] for kind in ("training", "trained")}
    for kind, path in paths.items():
        with CrewTrainingHandler(path) as handler:
            handler.save(run[kind])
    return paths


# -- A structured-output run: pydantic models in the records --------------------------------------------

#: ``(module, qualname)`` of the user's pydantic model :func:`make_structured_run` stores, and of its nested one.
STRUCTURED_CLASS: tuple[str, str] = ("ebike_crew.models", "MarketFacts")
_SOURCE_CLASS: tuple[str, str] = ("ebike_crew.models", "MarketFacts.Source")


def _pydantic_state(fields: dict[str, Any]) -> dict[str, Any]:
    """The state pydantic v2's ``__getstate__`` gives (what ``pickle`` stores for a model)."""
    return {
        "__dict__": fields,
        "__pydantic_extra__": None,
        "__pydantic_fields_set__": set(fields),
        "__pydantic_private__": None,
    }


def _market_facts(rng: random.Random, applied: list[str]) -> OpaqueObject:
    pool = _CREW["Market Researcher"]["answer"]
    facts = rng.sample(pool, k=2) + list(applied)
    sources = [
        OpaqueObject(*_SOURCE_CLASS, state=_pydantic_state({"name": name, "url": f"https://example.org/{slug}"}))
        for name, slug in (("EU cycling survey", "survey"), ("Industry report", "report"))[: 1 + len(applied) % 2]
    ]
    fields = {
        "title": "The European e-bike market",
        "facts": facts,
        "sources": sources,
        "market_size_eur_bn": round(rng.uniform(14.0, 22.0), 1),
        "confidence": round(0.5 + 0.1 * len(applied), 2),
    }
    return OpaqueObject(*STRUCTURED_CLASS, state=_pydantic_state(fields))


def make_structured_run(*, iterations: int = 3, seed: int = 0) -> dict[str, Any]:
    """Both files of a ``crew.train()`` run whose research task has ``output_pydantic``, as CrewAI stores them.

    The researcher's ``initial_output`` and ``improved_output`` are instances of the user's pydantic model
    ``ebike_crew.models.MarketFacts`` (:data:`STRUCTURED_CLASS`; a list of nested ``MarketFacts.Source``
    models among its fields); the writer's are text. Here they are :class:`~crewtrain_nb.store.OpaqueObject`
    placeholders with pydantic v2's pickled state: written through the handler they become exactly what
    CrewAI writes (a reference to the class and its state; no pydantic, no user code needed), and safe loading
    gives the placeholders back. A process with the user's classes loads the real models.

    Parameters
    ----------
    iterations
        Training iterations, 1 to 4.
    seed
        Seed of the generator; the same seed gives equal runs.

    Returns
    -------
    dict
        ``{"training", "trained", "agents"}`` as :func:`make_crewai_run` returns them.

    Examples
    --------
    >>> run = make_structured_run()
    >>> facts = next(iter(run["training"].values()))[0]["initial_output"]
    >>> facts.class_name, sorted(facts.fields)[:2]
    ('ebike_crew.models.MarketFacts', ['confidence', 'facts'])
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 4:
        raise ValueError(f"iterations must be an int from 1 to 4; got {iterations!r}")
    rng = random.Random(f"structured_output/{seed}")
    researcher, writer = _uuid(rng), _uuid(rng)
    pool = _CREW["Market Researcher"]["feedback"]
    records: dict[int, dict[str, Any]] = {}
    applied: list[str] = []
    for iteration in range(iterations):
        feedback, suggestion = pool[iteration]
        records[iteration] = {
            "initial_output": _market_facts(rng, applied),
            "human_feedback": feedback,
            "improved_output": _market_facts(rng, [*applied, suggestion]),
        }
        applied.append(suggestion)
    writer_records, writer_suggestions = _crew_records(rng, "Report Writer", iterations)
    training = {researcher: records, writer: writer_records}
    trained = {
        "Report Writer": _trained_entry(rng, writer_suggestions),
        "Market Researcher": _trained_entry(rng, [suggestion for _, suggestion in pool[:iterations]]),
    }
    agents = {researcher: _agent_info("Market Researcher"), writer: _agent_info("Report Writer")}
    return {"training": training, "trained": trained, "agents": agents}


def write_structured_run(directory: str | os.PathLike[str], *, iterations: int = 3, seed: int = 0) -> dict[str, Path]:
    """Write :func:`make_structured_run`'s two files into ``directory`` through the handler.

    Returns
    -------
    dict of str to Path
        ``{"training": .../training_data.pkl, "trained": .../trained_agents_data.pkl}``.
    """
    run = make_structured_run(iterations=iterations, seed=seed)
    return _write_run_files(run, directory)
