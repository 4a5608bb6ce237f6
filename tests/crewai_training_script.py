"""Real CrewAI training runs through ``crewtrain_nb.crewai.train()``, for tests/test_crewai_training.py.

``python tests/crewai_training_script.py SCENARIO DIR`` runs one scenario in a
fresh process (crewai is heavy and global; each scenario gets a clean one) and
prints ``RESULT <json>``. Everything CrewAI does is real; the model is a
scripted :class:`BaseLLM` and the person a feedback function (or a replaced
``sys.stdin`` for CrewAI's own terminal prompt).

The crew: three agents, the Researcher owning two tasks (CrewAI's file keeps
only the second one's record per iteration), the Writer's task with
``output_pydantic``.

Scenarios: ``ok``, ``plain`` (the same crew with CrewAI's own ``crew.train``),
``terminal`` (``feedback=None``: CrewAI's prompt reads ``sys.stdin``),
``evaluator-fails`` (the evaluator's LLM times out: CrewAI wipes both
files), ``interrupt`` (``KeyboardInterrupt`` at the third feedback),
``evaluate`` (after ``evaluator-fails``: restore the run, evaluate again),
``kill-after-feedback`` (prints ``TYPED n`` after each feedback is journalled,
then waits to be killed at the third), ``twice`` (two runs in a row).
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script (tests/ is then sys.path[0]) or imported as tests.crewai_training_script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.crewai_script import offline_environment, offline_llm_base, text_of_messages  # noqa: E402

ROLES = ("Researcher", "Writer", "Reviewer")


def scripted_llm(*, evaluator_fails: bool = False, html_output: bool = False) -> Any:
    """A BaseLLM answering in ReAct form, the evaluator's JSON for the training evaluation prompt."""
    counts: dict[str, int] = {}

    class ScriptedLLM(offline_llm_base()):  # type: ignore[misc]
        def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
                 from_task: Any = None, from_agent: Any = None, response_model: Any = None) -> str:  # fmt: skip
            text = text_of_messages(messages)
            if "Assess the quality of the training data" in text:
                if evaluator_fails:  # an LLM timeout at the end of a long session
                    raise TimeoutError("the evaluator's LLM timed out")
                feedback = re.findall(r"Human Feedback:\n(.*)\n", text)
                return json.dumps(
                    {"suggestions": [f"Apply: {f}" for f in feedback], "quality": 7.5, "final_summary": "ok"}
                )
            role = getattr(from_agent, "role", "agent")
            counts[role] = counts.get(role, 0) + 1
            if response_model is not None or '"title"' in text and "Facts" in text:
                return 'Thought: done\nFinal Answer: {"title": "facts ' + str(counts[role]) + '", "points": ["a"]}'
            if html_output:  # markup an output to judge may hold: the widget must show it as text
                return f"Thought: done\nFinal Answer: **{role}** answer {counts[role]} <script>alert(1)</script>"
            return f"Thought: I now know the final answer\nFinal Answer: {role} answer {counts[role]}"

    return ScriptedLLM()


def build_crew(llm: Any) -> Any:
    from crewai import Agent, Crew, Task
    from pydantic import BaseModel

    class Facts(BaseModel):
        title: str
        points: list[str]

    agents = {role: Agent(role=role, goal=f"{role} goal", backstory=f"A {role.lower()}.", llm=llm) for role in ROLES}
    tasks = [
        Task(description="Research the topic {topic}.", expected_output="Notes.", agent=agents["Researcher"]),
        Task(
            description="Write about {topic}.", expected_output="Facts.", agent=agents["Writer"], output_pydantic=Facts
        ),
        Task(description="Research sources for {topic}.", expected_output="Sources.", agent=agents["Researcher"]),
        Task(description="Review the text on {topic}.", expected_output="A review.", agent=agents["Reviewer"]),
    ]
    return Crew(agents=list(agents.values()), tasks=tasks, verbose=False)


def feedback_script(*, interrupt_at: int | None = None, announce: bool = False) -> Any:
    typed: list[str] = []

    def feedback(role: str, task: str, output: str) -> str:
        if interrupt_at is not None and len(typed) + 1 == interrupt_at:
            raise KeyboardInterrupt
        if announce and typed:
            # The previous line is in the journal by now (journalled before CrewAI used it).
            sys.__stdout__.write(f"TYPED {len(typed)}\n")
            sys.__stdout__.flush()
            if len(typed) == 3:
                time.sleep(600)  # the test kills the process here
        line = f"feedback {len(typed)} for {role} on '{task[:20]}'"
        typed.append(line)
        return line

    feedback.typed = typed  # type: ignore[attr-defined]
    return feedback


def small_crew(llm: Any) -> Any:
    """Two agents, one task each: 2 iterations ask for 4 feedbacks."""
    from crewai import Agent, Crew, Task

    agents = [Agent(role=role, goal=f"{role} goal", backstory=f"A {role.lower()}.", llm=llm) for role in ROLES[:2]]
    tasks = [
        Task(description=f"{agent.role}: handle {{topic}}.", expected_output="One line.", agent=agent)
        for agent in agents
    ]
    return Crew(agents=agents, tasks=tasks, verbose=False)


def drive_notebook_session(directory: str, *, stop_at: int | None) -> dict[str, Any]:
    """``train(feedback="notebook")``, answered the way a person does: set the box's value, press Submit."""
    from crewtrain_nb.crewai import train

    session = train(small_crew(scripted_llm(html_output=True)), 2, inputs={"topic": "locks"}, directory=directory,
                    feedback="notebook")  # fmt: skip
    seen: dict[str, Any] = {"typed": [], "outputs": [], "previous": []}
    deadline = time.monotonic() + 300
    step = 0
    while not session.finished and time.monotonic() < deadline:
        request = session.exchange.pending
        if request is None or session.submit.disabled:
            time.sleep(0.02)
            continue
        step += 1
        seen["outputs"].append(session.output.value)
        seen["previous"].append(session.previous.value)
        if stop_at is not None and step == stop_at:
            session.stop_button.click()
            break
        if step == 1:  # an empty answer is refused once, with CrewAI's reason
            session.feedback.value = ""
            session.submit.click()
            seen["empty_refused"] = session.exchange.pending is request and "evaluator rejects" in session.status.value
        line = f"typed in the widget {step}: {request.role} should cite a source"
        session.feedback.value = line
        session.submit.click()
        seen["typed"].append(line)
        while session.exchange.pending is request:
            time.sleep(0.01)
    run = session.wait(timeout=300)
    seen["outcome"] = run.outcome
    seen["progress"] = [session.progress.value, session.progress.max]
    seen["status"] = session.status.value
    return seen


def main() -> None:
    scenario, directory = sys.argv[1], sys.argv[2]
    os.environ.update(offline_environment(tempfile.mkdtemp()))
    from crewtrain_nb.crewai import evaluate, restore_run, runs, train

    result: dict[str, Any] = {}
    cwd = os.getcwd()
    inputs = {"topic": "lock files"}
    if scenario == "plain":
        os.chdir(directory)
        lines = [f"feedback {i}" for i in range(100)]
        sys.stdin = io.StringIO("".join(line + "\n" for line in lines))
        build_crew(scripted_llm()).train(n_iterations=2, filename="trained_agents_data.pkl", inputs=inputs)
    elif scenario in ("ok", "twice"):
        for _ in range(2 if scenario == "twice" else 1):
            feedback = feedback_script()
            run = train(build_crew(scripted_llm()), 2, inputs=inputs, directory=directory, feedback=feedback)
            result.setdefault("typed", []).extend(feedback.typed)
            result.setdefault("runs", []).append(run.run)
        result["outcome"] = run.outcome
        result["html"] = run._repr_html_()
        result["frame_rows"] = len(run.frame())
        result["browser_labels"] = sorted(label for label, _ in run.browser().agent.options)
    elif scenario == "terminal":
        lines = [f"feedback {i}" for i in range(100)]
        sys.stdin = io.StringIO("".join(line + "\n" for line in lines))
        run = train(build_crew(scripted_llm()), 2, inputs=inputs, directory=directory)
        result["outcome"] = run.outcome
    elif scenario == "evaluator-fails":
        feedback = feedback_script()
        try:
            train(
                build_crew(scripted_llm(evaluator_fails=True)), 2, inputs=inputs, directory=directory, feedback=feedback
            )
        except Exception as exc:  # CrewAI re-raises after clearing both files
            result["error"] = f"{type(exc).__name__}: {exc}"
        result["typed"] = feedback.typed
    elif scenario == "evaluate":
        frame = runs(directory)
        failed = int(frame[frame.outcome == "failed"].run.iloc[-1])
        restore_run(failed, directory)
        result["written"] = evaluate(build_crew(scripted_llm()), directory=directory)
    elif scenario == "interrupt":
        import crewai.crew

        own = crewai.crew.CrewTrainingHandler
        feedback = feedback_script(interrupt_at=3)
        try:
            train(build_crew(scripted_llm()), 2, inputs=inputs, directory=directory, feedback=feedback)
        except KeyboardInterrupt:
            result["interrupted"] = True
        result["typed"] = feedback.typed
        result["restored"] = crewai.crew.CrewTrainingHandler is own
    elif scenario == "concurrent":
        import threading

        started, release = threading.Event(), threading.Event()

        def slow(role: str, task: str, output: str) -> str:
            started.set()
            release.wait(60)
            return "fine"

        worker = threading.Thread(
            target=train, args=(build_crew(scripted_llm()), 1), kwargs={"directory": directory, "feedback": slow}
        )
        worker.start()
        started.wait(60)
        try:
            train(build_crew(scripted_llm()), 1, directory=directory, feedback=slow)
        except RuntimeError as exc:
            result["second"] = str(exc)
        release.set()
        worker.join(120)
    elif scenario == "old-version":
        import importlib.metadata

        importlib.metadata.version = lambda name: "0.86.0"  # what train() reads to know CrewAI's layout
        try:
            train(build_crew(scripted_llm()), 1, directory=directory, feedback=feedback_script())
        except RuntimeError as exc:
            result["refused"] = str(exc)
    elif scenario in ("notebook", "notebook-stop"):
        result.update(drive_notebook_session(directory, stop_at=3 if scenario == "notebook-stop" else None))
    elif scenario == "kill-after-feedback":
        train(
            build_crew(scripted_llm()), 2, inputs=inputs, directory=directory, feedback=feedback_script(announce=True)
        )
    result["cwd_unchanged"] = os.getcwd() == cwd
    sys.__stdout__.write("RESULT " + json.dumps(result) + "\n")
    sys.__stdout__.flush()


if __name__ == "__main__":
    main()
