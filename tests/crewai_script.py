"""A real CrewAI crew run offline, for tests/test_crewai_interop.py: ``python tests/crewai_script.py COMMAND ...``.

Everything CrewAI does is real (``Crew.train``, its executor, its evaluator,
its handler and lock); only the model and the human are scripted: a
:class:`BaseLLM` subclass answers in ReAct form and returns the evaluator's
JSON, and the feedback comes from a replaced ``sys.stdin``. crewai is
imported inside the functions only (pytest's doctest collection imports this
module in environments without crewai).

Commands (each prints one JSON line on success):

``train DIR --handler crewai|crewtrain [--iterations N] [--agents N]``
    ``crew.train()`` in ``DIR`` (CrewAI writes ``training_data.pkl`` there)
    with CrewAI's own handler or crewtrain_nb's in all five places CrewAI
    looks it up; prints how many calls CrewAI's own handler received.
``kickoff DIR``
    A fresh crew with ``trained_agents_file``: prints the prompts its agents received, and
    what CrewAI's own ``PickleHandler.load`` returns for both files (``repr``).
``append PATH AGENT COUNT [--go FILE]``
    CrewAI's own ``CrewTrainingHandler.append`` ``COUNT`` times, printing ``ack N`` after each;
    with ``--go``, crewai is imported first, then ``ready`` printed and ``FILE`` waited for.
``watch DIR STOP_FILE [--without-crewai] [--browse-every N]``
    crewtrain_nb's ``load()`` of both files in a loop (and ``TrainingBrowser.refresh()``
    every N reads) until ``STOP_FILE`` exists; prints reads, wrong reads and errors.
    ``--without-crewai`` hides crewai_core, as in a notebook without crewai.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

#: CrewAI modules that look ``CrewTrainingHandler`` up by name (see CrewAI's own tests, which patch these).
HANDLER_MODULES = (
    "crewai.utilities.training_handler",
    "crewai.crew",
    "crewai.agents.agent_executor",
    "crewai.agent.core",
    "crewai.agent",
)
TRAINING_FILE = "training_data.pkl"
TRAINED_FILE = "trained_agents_data.pkl"
ROLES = ("Researcher", "Writer", "Reviewer")


def offline_environment(home: str) -> dict[str, str]:
    """Environment variables that keep CrewAI offline and out of the real home directory."""
    return {
        "CREWAI_DISABLE_TELEMETRY": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "CREWAI_DISABLE_VERSION_CHECK": "true",
        "CREWAI_STORAGE_DIR": os.path.join(home, "storage"),
        "OPENAI_API_KEY": "sk-offline-test-key",
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_DATA_HOME": os.path.join(home, ".local", "share"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
    }


def text_of_messages(messages: Any) -> str:
    """The prompt text of what CrewAI sends an LLM (a string, or chat messages)."""
    if isinstance(messages, str):
        return messages
    return "\n".join(str(message.get("content", "")) for message in messages)


def offline_llm_base() -> type:
    """A :class:`crewai.llms.base_llm.BaseLLM` with what a scripted model needs but its ``call``.

    ReAct text only (no function calling), stop words, a fixed context window; the model name is ``scripted``.
    """
    from crewai.llms.base_llm import BaseLLM

    class OfflineLLM(BaseLLM):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(model="scripted", **kwargs)

        def supports_function_calling(self) -> bool:
            return False

        def supports_stop_words(self) -> bool:
            return True

        def get_context_window_size(self) -> int:
            return 8192

    return OfflineLLM


def scripted_llm_class(answer_size: int = 0) -> type:
    """A :class:`crewai.llms.base_llm.BaseLLM` that answers from a script and records every prompt.

    ``answer_size`` pads each answer to about that many characters (big records make CrewAI's in-place
    writes take long enough for a reader to meet a half-written file).
    """
    padding = " ".join(f"word{index}" for index in range(answer_size // 8))
    prompts: list[str] = []
    answers: dict[str, int] = {}

    class ScriptedLLM(offline_llm_base()):  # type: ignore[misc]
        # BaseLLM is a pydantic model: what the script records lives outside it.
        recorded: ClassVar[list[str]] = prompts

        def call(
            self,
            messages: Any,
            tools: Any = None,
            callbacks: Any = None,
            available_functions: Any = None,
            from_task: Any = None,
            from_agent: Any = None,
            response_model: Any = None,
        ) -> str:
            text = text_of_messages(messages)
            prompts.append(text)
            if "Assess the quality of the training data" in text:
                feedback = re.findall(r"Human Feedback:\n(.*)\n", text)
                return json.dumps(
                    {
                        "suggestions": [f"Apply: {item}" for item in feedback],
                        "quality": 8.0,
                        "final_summary": f"{len(feedback)} rounds of feedback applied.",
                    }
                )
            role = getattr(from_agent, "role", "agent")
            count = answers.get(role, 0)
            answers[role] = count + 1
            return f"Thought: I now know the final answer\nFinal Answer: {role} answer {count}{padding}"

    return ScriptedLLM


def build_crew(llm: Any, *, agents: int = 3, trained_agents_file: str | None = None) -> Any:
    """``agents`` agents, one task each, all on ``llm``."""
    from crewai import Agent, Crew, Task

    members = [
        Agent(role=role, goal=f"Do the {role.lower()}'s part", backstory=f"A careful {role.lower()}.", llm=llm)
        for role in ROLES[:agents]
    ]
    tasks = [
        Task(description=f"{agent.role}: handle {{topic}}.", expected_output="One sentence.", agent=agent)
        for agent in members
    ]
    options: dict[str, Any] = {"trained_agents_file": trained_agents_file} if trained_agents_file else {}
    return Crew(agents=members, tasks=tasks, verbose=False, **options)


def use_handler(handler: str) -> dict[str, int]:
    """Put crewtrain_nb's handler in every place CrewAI uses its own (``handler="crewtrain"``).

    Returns a dict that counts the calls CrewAI's own handler receives (it should stay empty).
    """
    import importlib

    from crewai.utilities import training_handler

    calls: dict[str, int] = {}
    own = training_handler.CrewTrainingHandler
    for name in ("load", "save", "append", "save_trained_data", "clear", "initialize_file"):
        original = getattr(own, name)

        def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] = calls.get(_name, 0) + 1
            return _original(*args, **kwargs)

        setattr(own, name, counted)
    if handler == "crewtrain":
        from crewtrain_nb import CrewTrainingHandler

        for module in HANDLER_MODULES:
            importlib.import_module(module).CrewTrainingHandler = CrewTrainingHandler
    return calls


def train(directory: str, *, handler: str, iterations: int, agents: int, answer_size: int = 0) -> dict[str, Any]:
    os.chdir(directory)
    calls = use_handler(handler)
    llm = scripted_llm_class(answer_size)()
    crew = build_crew(llm, agents=agents)
    lines = [
        f"feedback {iteration}.{index}: be more specific about {role}"
        for iteration in range(iterations)
        for index, role in enumerate(ROLES[:agents])
    ]
    sys.stdin = io.StringIO("".join(line + "\n" for line in lines))
    crew.train(n_iterations=iterations, filename=TRAINED_FILE, inputs={"topic": "lock files"})
    return {"own_handler_calls": calls, "prompts": len(llm.recorded)}


def kickoff(directory: str) -> dict[str, Any]:
    os.chdir(directory)
    llm = scripted_llm_class()()
    crew = build_crew(llm, trained_agents_file=os.path.join(directory, TRAINED_FILE))
    crew.kickoff(inputs={"topic": "lock files"})
    from crewai.utilities.file_handler import PickleHandler

    loads = {name: repr(PickleHandler(os.path.join(directory, name)).load()) for name in (TRAINING_FILE, TRAINED_FILE)}
    return {"prompts": llm.recorded, "loads": loads}


def wait_for(go: str | None) -> None:
    """Say ``ready`` and wait until ``go`` exists, so processes that import for a while start appending together."""
    if go is None:
        return
    import time

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not os.path.exists(go):
        time.sleep(0.005)


def append(path: str, agent: str, count: int, go: str | None = None) -> None:
    from crewai.utilities.training_handler import CrewTrainingHandler

    handler = CrewTrainingHandler(path)
    wait_for(go)
    for iteration in range(count):
        handler.append(iteration, agent, {"initial_output": f"{agent} {iteration}", "human_feedback": "ok"})
        sys.stdout.write(f"ack {iteration}\n")
        sys.stdout.flush()


def _fields(data: Any) -> set[tuple[Any, ...]]:
    """Every (agent, iteration, field) or (role, field) a store holds: what must never vanish once seen."""
    found: set[tuple[Any, ...]] = set()
    if not isinstance(data, dict):
        return found
    for agent, entry in data.items():
        if isinstance(entry, dict):
            for key, value in entry.items():
                if isinstance(value, dict):
                    found.update((agent, key, name) for name in value)
                else:
                    found.add((agent, key))
    return found


def watch(directory: str, stop_file: str, *, browse_every: int) -> dict[str, Any]:
    """Read both files until ``stop_file`` appears; count reads, wrong reads ({} or a vanished field) and errors.

    CrewAI writes ``{}`` to both files once, at the start of ``train()``, before any record; after that no
    field it wrote ever goes away, so any field seen once and missing later is a wrong read.
    """
    from crewtrain_nb import CrewTrainingHandler, TrainingBrowser

    paths = [os.path.join(directory, TRAINING_FILE), os.path.join(directory, TRAINED_FILE)]
    handlers = [CrewTrainingHandler(path) for path in paths]
    seen: list[set[tuple[Any, ...]]] = [set(), set()]
    counts = {"reads": 0, "wrong": 0, "errors": 0, "refreshes": 0, "wrong_refreshes": 0, "records_seen": 0}
    problems: list[str] = []
    import time

    # Built before the run, as in a notebook: its imports and first drawing are not paid mid-run.
    browser = TrainingBrowser(CrewTrainingHandler(paths[0])) if browse_every else None
    selected: Any = None
    started = time.monotonic()
    slowest = 0.0
    last_round = False
    while not last_round:
        last_round = os.path.exists(stop_file)  # one more round after the writer finished: the final state
        for index, handler in enumerate(handlers):
            try:
                began = time.monotonic()
                data = handler.load()
                slowest = max(slowest, time.monotonic() - began)
            except Exception as exc:  # noqa: BLE001 - counted: the test asserts there are none
                counts["errors"] += 1
                problems.append(f"{type(exc).__name__}: {exc}")
                continue
            counts["reads"] += 1
            fields = _fields(data)
            if not seen[index] <= fields:
                counts["wrong"] += 1
                problems.append(f"{paths[index]}: {len(seen[index] - fields)} fields vanished")
            if fields and not seen[index]:
                counts[f"first_data_{index}_s"] = round(time.monotonic() - started, 2)
            seen[index] |= fields
        if browser is not None and (counts["reads"] // 2) % browse_every == 0:
            browser.refresh()
            counts["refreshes"] += 1
            if selected is not None and (not browser.agent.options or browser.agent.value != selected):
                counts["wrong_refreshes"] += 1
                problems.append(f"the browser lost its view: {browser.status.value or browser.record.value}")
            if selected is None and browser.agent.options:
                selected = browser.agent.value
    counts["records_seen"] = len(seen[0])
    counts["slowest_load_s"] = round(slowest, 3)
    counts["seconds"] = round(time.monotonic() - started, 1)
    if browser is not None:
        browser.close()
    return {**counts, "problems": problems[:20]}


# -- driving the commands from a test or tests/reliability_report.py ------------------------------------

SCRIPT = str(Path(__file__).resolve())
ROOT = str(Path(__file__).resolve().parents[1])


def script_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "CREWTRAIN_TEST_HOME": str(home), "PYTHONPATH": ROOT}


def start_script(*arguments: str, home: Path, python: str = sys.executable) -> subprocess.Popen[str]:
    """Start this script with ``arguments`` in a child process (``python`` must have crewai for most commands)."""
    return subprocess.Popen(
        [python, SCRIPT, *arguments], env=script_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen[str], timeout: float = 900) -> dict[str, Any]:
    """Wait for a child of :func:`start_script` and return its ``RESULT`` JSON; fail with its output otherwise."""
    stdout, stderr = process.communicate(timeout=timeout)
    if process.returncode != 0:
        raise RuntimeError(f"exit {process.returncode}\n{stdout[-3000:]}\n{stderr[-3000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"no RESULT line\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])  # type: ignore[no-any-return]


def run_script(*arguments: str, home: Path, python: str = sys.executable) -> dict[str, Any]:
    return finish(start_script(*arguments, home=home, python=python))


def reader_check(
    scratch: Path, *, iterations: int = 4, answer_size: int = 20_000, python: str = sys.executable
) -> dict[str, Any]:
    """Two readers (one as a notebook without crewai: flock; one with crewai_core's lock) while CrewAI trains.

    Answers of ``answer_size`` characters make the file grow to about a megabyte, so each of CrewAI's
    in-place saves is visible half-written for a while to a reader that does not take CrewAI's lock.

    Returns the readers' results, summed: ``reads``, ``wrong``, ``errors``, ``refreshes``, ``wrong_refreshes``,
    with ``records_seen`` per reader and the first ``problems``.
    """
    directory = scratch / "run"
    directory.mkdir()
    stop = scratch / "stop"
    readers = [
        start_script(
            "watch",
            str(directory),
            str(stop),
            *flags,
            "--browse-every",
            "200",
            home=scratch / f"home-r{index}",
            python=python,
        )
        for index, flags in enumerate((["--without-crewai"], []))
    ]
    try:
        trained = run_script(
            "train",
            str(directory),
            "--handler",
            "crewai",
            "--iterations",
            str(iterations),
            "--answer-size",
            str(answer_size),
            home=scratch / "home-train",
            python=python,
        )
    finally:
        stop.touch()
    results = [finish(reader) for reader in readers]
    total = {
        key: sum(result[key] for result in results)
        for key in ("reads", "wrong", "errors", "refreshes", "wrong_refreshes")
    }
    return {
        **total,
        "records_seen": [result["records_seen"] for result in results],
        "problems": [problem for result in results for problem in result["problems"]],
        "writes": trained["own_handler_calls"].get("save", 0) + trained["own_handler_calls"].get("initialize_file", 0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train")
    training.add_argument("directory")
    training.add_argument("--handler", choices=("crewai", "crewtrain"), required=True)
    training.add_argument("--iterations", type=int, default=3)
    training.add_argument("--agents", type=int, default=3)
    training.add_argument("--answer-size", type=int, default=0)
    kicking = commands.add_parser("kickoff")
    kicking.add_argument("directory")
    appending = commands.add_parser("append")
    appending.add_argument("path")
    appending.add_argument("agent")
    appending.add_argument("count", type=int)
    appending.add_argument("--go")
    watching = commands.add_parser("watch")
    watching.add_argument("directory")
    watching.add_argument("stop_file")
    watching.add_argument("--without-crewai", action="store_true")
    watching.add_argument("--browse-every", type=int, default=0)
    arguments = parser.parse_args(argv)
    if getattr(arguments, "without_crewai", False):
        sys.modules["crewai_core"] = None  # type: ignore[assignment]  # find_spec now says: not installed
    os.environ.update(offline_environment(os.environ.get("CREWTRAIN_TEST_HOME") or tempfile.mkdtemp()))
    if arguments.command == "train":
        result = train(
            arguments.directory,
            handler=arguments.handler,
            iterations=arguments.iterations,
            agents=arguments.agents,
            answer_size=arguments.answer_size,
        )
    elif arguments.command == "kickoff":
        result = kickoff(arguments.directory)
    elif arguments.command == "watch":
        result = watch(arguments.directory, arguments.stop_file, browse_every=arguments.browse_every)
    else:
        append(arguments.path, arguments.agent, arguments.count, arguments.go)
        result = {}
    sys.__stdout__.write("RESULT " + json.dumps(result) + "\n")
    sys.__stdout__.flush()


if __name__ == "__main__":
    main()
