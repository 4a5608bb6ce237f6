"""Run real CrewAI (in a subprocess, offline, with a scripted LLM) to see the prompt an agent gets.

CrewAI is heavy and usually not in the test environment: the Python that has it is ``sys.executable``
when it can import crewai, else ``$CREWTRAIN_CREWAI_PYTHON``; tests that need it skip without one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

_SCRIPT = r"""
import json, os, sys
from crewai import Agent, Crew, Task
from crewai.llms.base_llm import BaseLLM

seen = []


class Scripted(BaseLLM):
    def call(self, messages, tools=None, callbacks=None, available_functions=None, from_task=None,
             from_agent=None, response_model=None):
        if isinstance(messages, str):
            seen.append(messages)
        else:
            seen.append("\n".join(m["content"] for m in messages if isinstance(m.get("content"), str)))
        return "Thought: I know the answer.\nFinal Answer: done"

    def supports_function_calling(self):
        return False

    def supports_stop_words(self):
        return True

    def get_context_window_size(self):
        return 8192


import crewai

results = []
for trained_file, role, cwd in json.loads(sys.argv[1]):
    os.chdir(cwd)  # CrewAI resolves the trained file against the working directory
    seen.clear()
    agent = Agent(role=role, goal="Write well", backstory="A writer", llm=Scripted(model="scripted"))
    task = Task(description="Write the report.", expected_output="a report", agent=agent)
    crew = Crew(agents=[agent], tasks=[task], trained_agents_file=trained_file)
    crew.kickoff()
    direct = agent._use_trained_data(task_prompt="TASK")
    results.append({"version": crewai.__version__, "prompts": list(seen), "direct": direct})
print(json.dumps(results))
"""


def _crewai_env() -> dict[str, str]:
    """CrewAI offline and quiet: no telemetry, tracing or version check; its files under a temporary home."""
    home = tempfile.mkdtemp(prefix="crewai-home-")
    env = {
        **os.environ,
        "CREWAI_DISABLE_TELEMETRY": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "CREWAI_DISABLE_VERSION_CHECK": "true",
        "OPENAI_API_KEY": "sk-test-not-a-key",
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "XDG_DATA_HOME": home,
        "XDG_CACHE_HOME": home,
    }
    env.pop("CREWAI_TRAINED_AGENTS_FILE", None)
    return env


def crewai_python() -> str:
    """A Python that imports crewai, or skip the test."""
    for candidate in (sys.executable, os.environ.get("CREWTRAIN_CREWAI_PYTHON")):
        if not candidate:
            continue
        found = subprocess.run(
            [candidate, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('crewai') is None)"],
            capture_output=True,
        )
        if found.returncode == 0:
            return candidate
    pytest.skip("crewai is not installed here; set CREWTRAIN_CREWAI_PYTHON to a Python that has it")


def run_crewai_agents(cases: list[tuple[Path | str | None, str, Path]]) -> list[dict[str, Any]]:
    """Kick off a one-agent crew per ``(trained_file, role, cwd)`` in one CrewAI process (it imports slowly).

    Each result: ``prompts`` (what the scripted LLM was sent), ``direct`` (``Agent._use_trained_data("TASK")``)
    and crewai's ``version``. ``trained_file=None`` sets no ``Crew(trained_agents_file=...)``.
    """
    env = _crewai_env()
    payload = json.dumps([[None if file is None else str(file), role, str(cwd)] for file, role, cwd in cases])
    result = subprocess.run(
        [crewai_python(), "-c", _SCRIPT, payload], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_EVALUATOR = r"""
import json, pickle, sys
from crewai import Agent
from crewai.llms.base_llm import BaseLLM
from crewai.utilities.evaluators.task_evaluator import TaskEvaluator


class Scripted(BaseLLM):
    def call(self, messages, tools=None, callbacks=None, available_functions=None, from_task=None,
             from_agent=None, response_model=None):
        return json.dumps({"suggestions": ["Be brief."], "quality": 7.0, "final_summary": "Be brief."})

    def supports_function_calling(self):
        return False

    def supports_stop_words(self):
        return True

    def get_context_window_size(self):
        return 8192


results = []
for path in json.loads(sys.argv[1]):
    with open(path, "rb") as file:
        data = pickle.load(file)
    errors = {}
    for agent_id in data:
        agent = Agent(role="r", goal="g", backstory="b", llm=Scripted(model="scripted"))
        try:
            TaskEvaluator(agent).evaluate_training_data(data, agent_id)
            errors[agent_id] = None
        except ValueError as error:
            errors[agent_id] = str(error)
    results.append(errors)
print(json.dumps(results))
"""


def run_crewai_evaluator(paths: list[Path]) -> list[dict[str, str | None]]:
    """CrewAI's own ``TaskEvaluator.evaluate_training_data`` on each training file, agent by agent.

    Each result maps an agent id to the ``ValueError`` message CrewAI raised for it, or ``None`` when it
    evaluated the agent (a scripted LLM answers the evaluation).
    """
    result = subprocess.run(
        [crewai_python(), "-c", _EVALUATOR, json.dumps([str(path) for path in paths])],
        capture_output=True,
        text=True,
        env=_crewai_env(),
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
