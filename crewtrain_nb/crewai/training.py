"""CrewAI's training run through crewtrain_nb's store: nothing a person typed is ever lost.

``crew.train()`` overwrites both files with ``{}`` when it starts, wipes both
again on any exception, keeps one record per agent and iteration, and keys the
records by the ids of a throw-away copy of the crew. :func:`train` runs it with
crewtrain_nb's handler in every place CrewAI uses its own, and around it:

* a **journal** (``training_data.pkl.journal.jsonl``): every feedback line,
  fsynced the moment it is entered, before CrewAI does anything with it;
* **kept runs** (``training_runs/<n>/``): the files as each run left them, kept
  before CrewAI's wipe at start and before its ``clear()`` on failure;
* a **sidecar** (``training_data.pkl.agents.json``): which training-copy id is
  which agent (role, goal, tasks).

``crewai`` is imported only when :func:`train` or :func:`evaluate` is called;
:func:`runs` and :func:`restore_run` only read files and work without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import importlib
import importlib.metadata
import itertools
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..store import CrewTrainingHandler, FeedbackJournal, RunArchive, read_journal, safe_loads, utc_now, write_file
from .exchange import FeedbackExchange, FeedbackRequest, TrainingStopped
from .files import FEEDBACK_KEYS
from .sidecar import recorded_roles, sidecar_path, write_sidecar

if TYPE_CHECKING:
    import pandas as pd

    from ..browser import TrainingBrowser
    from ..training_session import TrainingSession

__all__ = [
    "HANDLER_MODULES",
    "TRAINING_DATA_FILE",
    "FeedbackFunction",
    "TrainingRun",
    "TrainingStopped",
    "evaluate",
    "journal_path",
    "restore_run",
    "runs",
    "train",
]

#: The file name CrewAI gives its training data (``crewai.utilities.constants.TRAINING_DATA_FILE``).
TRAINING_DATA_FILE = "training_data.pkl"
#: CrewAI modules that look ``CrewTrainingHandler`` up by name (crewai 1.14-1.x; CrewAI's own tests patch these).
HANDLER_MODULES: tuple[str, ...] = (
    "crewai.utilities.training_handler",
    "crewai.crew",
    "crewai.agents.agent_executor",
    "crewai.agent.core",
    "crewai.agent",
)
#: The CrewAI versions whose training layout this module knows.
SUPPORTED_CREWAI = ((1, 14), (2, 0))
INSTALL_HINT = "pip install 'crewtrain-nb[crewai]'"

#: ``feedback=`` as a function: ``(role, task description, output text) -> feedback text``.
FeedbackFunction = Callable[[str, str, str], str]

# One training run per process at a time: the handler patch is process-wide.
_ACTIVE = threading.Lock()


def journal_path(training: str | os.PathLike[str]) -> str:
    """The feedback journal kept beside a training file."""
    return os.fspath(training) + ".journal.jsonl"


def _directory(directory: str | os.PathLike[str] | None) -> str:
    return os.path.abspath(os.fspath(directory) if directory is not None else os.getcwd())


def _resolve(directory: str, name: str | os.PathLike[str]) -> str:
    path = os.fspath(name)
    if not path.endswith(".pkl"):
        path += ".pkl"  # CrewAI's PickleHandler appends it the same way
    return path if os.path.isabs(path) else os.path.join(directory, path)


# --------------------------------------------------------------------------------------------------------------
# What the run left: TrainingRun, runs(), restore_run()


@dataclass(frozen=True)
class TrainingRun:
    """One training run, as :func:`train` or :func:`runs` knows it.

    Attributes
    ----------
    run
        The run's number in ``directory/training_runs``.
    outcome
        ``"ok"``, ``"failed"``, ``"interrupted"``, ``"running"`` or ``"kept"`` (files found before a run).
    directory
        The training directory.
    entry
        The run's whole entry (times, crewai version, inputs, error, files, counts).
    """

    run: int
    outcome: str
    directory: str
    entry: Mapping[str, Any] = field(repr=False)

    @property
    def training_path(self) -> str:
        """``training_data.pkl`` in the training directory (the live file CrewAI reads)."""
        return os.path.join(self.directory, TRAINING_DATA_FILE)

    @property
    def trained_path(self) -> str:
        """The trained agents file of this run, in the training directory."""
        return os.path.join(self.directory, str(self.entry.get("filename", "trained_agents_data.pkl")))

    @property
    def journal_path(self) -> str:
        """The feedback journal of the training directory."""
        return journal_path(self.training_path)

    @property
    def kept_files(self) -> dict[str, str]:
        """The files this run kept, by name: the state it left them in (before any wipe)."""
        archive = RunArchive(self.directory)
        kept = {name: archive.file(self.run, name) for name in self.entry.get("files", [])}
        return {name: path for name, path in kept.items() if path}

    @property
    def roles(self) -> dict[str, str]:
        """Agent id -> role, as recorded when the run started."""
        return {agent: info.get("role", "") for agent, info in self.entry.get("agents", {}).items()}

    def feedback(self) -> list[dict[str, Any]]:
        """Every feedback line this run's journal holds, in the order it was typed."""
        return [line for line in read_journal(self.journal_path).entries if line.get("run") == self.run]

    def frame(self) -> pd.DataFrame:
        """The feedback frame of the run's training data (the kept copy), with each agent's ``role``."""
        from ..frames import feedback_frame

        frame = feedback_frame(self._training_source())
        return frame.assign(role=frame["agent"].map(self.roles))

    def browser(self) -> TrainingBrowser:
        """A :class:`~crewtrain_nb.TrainingBrowser` over the run's files, agents labelled by role."""
        from ..browser import TrainingBrowser

        kept = self.kept_files
        trained = kept.get(os.path.basename(self.trained_path))
        return TrainingBrowser(self._training_source(), trained=trained, agent_names=self.roles or None)

    def _training_source(self) -> str:
        return self.kept_files.get(TRAINING_DATA_FILE) or self.training_path

    def _repr_html_(self) -> str:
        entry = self.entry
        rows = [
            ("outcome", self.outcome),
            ("started", entry.get("started", "")),
            ("ended", entry.get("ended") or ""),
            ("iterations", entry.get("n_iterations", "")),
            ("agents", entry.get("agents_with_data", "")),
            ("records", entry.get("records", "")),
            ("feedback lines typed", entry.get("feedback_lines", "")),
        ]
        if entry.get("error"):
            rows.append(("error", entry["error"]))
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
        files = "".join(
            f'<li><a href="{html.escape(path)}">{html.escape(name)}</a></li>' for name, path in self.kept_files.items()
        )
        roles = "".join(
            f"<li><code>{html.escape(agent[:8])}</code> {html.escape(role)}</li>" for agent, role in self.roles.items()
        )
        return (
            f'<div class="crewtrain-run"><strong>Training run {self.run}</strong> in '
            f"<code>{html.escape(self.directory)}</code><table>{body}</table>"
            f"<p>Agents</p><ul>{roles}</ul><p>Kept files</p><ul>{files}</ul></div>"
        )


def _run_from_entry(directory: str, entry: Mapping[str, Any]) -> TrainingRun:
    return TrainingRun(run=int(entry["run"]), outcome=str(entry.get("outcome")), directory=directory, entry=entry)


def runs(directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Every kept training run of ``directory`` (default: the working directory), oldest first.

    Returns
    -------
    pandas.DataFrame
        One row per run: ``run``, ``started``, ``ended``, ``outcome``, ``n_iterations``, ``agents``,
        ``records``, ``error``. A run whose process is gone while its entry says ``running`` shows as
        ``interrupted``.
    """
    import pandas as pd

    rows = [
        {
            "run": entry["run"],
            "started": entry.get("started"),
            "ended": entry.get("ended"),
            "outcome": entry.get("outcome"),
            "n_iterations": entry.get("n_iterations"),
            "agents": entry.get("agents_with_data"),
            "records": entry.get("records"),
            "error": entry.get("error"),
        }
        for entry in RunArchive(_directory(directory)).entries()
    ]
    columns = ["run", "started", "ended", "outcome", "n_iterations", "agents", "records", "error"]
    counts = dict.fromkeys(["run", "n_iterations", "agents", "records"], "Int64")  # missing for kept files
    return pd.DataFrame(rows, columns=columns).astype(counts)


def load_run(run: int, directory: str | os.PathLike[str] | None = None) -> TrainingRun:
    """The :class:`TrainingRun` of run number ``run`` (as :func:`runs` shows it)."""
    folder = _directory(directory)
    for entry in RunArchive(folder).entries():
        if entry["run"] == int(run):
            return _run_from_entry(folder, entry)
    RunArchive(folder).entry(run)  # raises, naming the runs that exist
    raise AssertionError("unreachable")


def restore_run(run: int, directory: str | os.PathLike[str] | None = None) -> TrainingRun:
    """Put run ``run``'s kept files back in ``directory`` for CrewAI, keeping the current ones as a run first.

    Each kept pickle is checked to load safely before anything changes; the files are written back
    byte for byte, atomically.

    Returns
    -------
    TrainingRun
        The run that keeps what was there before the restore (outcome ``"kept"``).

    Raises
    ------
    RuntimeError
        A training run is going on in ``directory``.
    StoreError
        No such run (the message lists the runs kept), or it kept no files.
    """
    folder = _directory(directory)
    archive = RunArchive(folder)
    if any(entry.get("outcome") == "running" for entry in archive.entries()):
        raise RuntimeError(f"{folder}: a training run is going on; restore a run after it ended.")
    source = load_run(run, folder)
    kept = source.kept_files
    if not kept:
        from ..errors import StoreError

        raise StoreError(f"{archive.run_path(run)}: run {run} kept no files to restore.", path=archive.run_path(run))
    payloads: dict[str, bytes] = {}
    for name, path in kept.items():
        with open(path, "rb") as file:
            payloads[name] = file.read()
        if name.endswith(".pkl") and payloads[name]:
            safe_loads(payloads[name], path=path)  # refuse a damaged or unsafe copy before anything changes
    targets = [os.path.join(folder, name) for name in kept]
    before = archive.start(
        {
            "outcome": "kept",
            "started": utc_now(),
            "ended": utc_now(),
            "error": None,
            "note": f"before restoring run {run}",
        }
    )
    archive.keep(before, targets)
    archive.update(before, **_counts(os.path.join(archive.run_path(before), TRAINING_DATA_FILE)))
    for name, payload in payloads.items():
        write_file(os.path.join(folder, name), payload)
    return load_run(before, folder)


# --------------------------------------------------------------------------------------------------------------
# Running CrewAI's training


def _crewai_version() -> str:
    try:
        importlib.import_module("crewai")
        return importlib.metadata.version("crewai")
    except (ImportError, importlib.metadata.PackageNotFoundError):
        raise ImportError(f"crewtrain_nb.crewai.train() needs CrewAI, which is not installed: {INSTALL_HINT}") from None


def _check_layout() -> tuple[str, Any]:
    """Import crewai's training modules; refuse a version whose layout this module does not know."""
    version = _crewai_version()
    try:
        parts = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        parts = (0, 0)
    low, high = SUPPORTED_CREWAI
    if not low <= parts < high:
        raise RuntimeError(
            f"crewtrain_nb.crewai.train() knows the training code of CrewAI {low[0]}.{low[1]} to {high[0] - 1}.x; "
            f"crewai {version} is installed. Install a supported version ({INSTALL_HINT}) or run `crewai train`."
        )
    modules = {}
    for name in (*HANDLER_MODULES, "crewai.core.providers.human_input"):
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise RuntimeError(f"crewai {version}: module {name} is missing ({exc}); its layout is not known.") from exc
    for name in HANDLER_MODULES:
        if not hasattr(modules[name], "CrewTrainingHandler"):
            raise RuntimeError(f"crewai {version}: {name} has no CrewTrainingHandler; its layout is not known.")
    human_input = modules["crewai.core.providers.human_input"]
    for name in ("SyncHumanInputProvider", "set_provider", "reset_provider"):
        if not hasattr(human_input, name):
            raise RuntimeError(f"crewai {version}: human_input has no {name}; its layout is not known.")
    return version, human_input


@contextlib.contextmanager
def _patched(modules: Mapping[str, Any], handler: type) -> Iterator[None]:
    originals = {name: module.CrewTrainingHandler for name, module in modules.items()}
    try:
        for module in modules.values():
            module.CrewTrainingHandler = handler
        yield
    finally:
        for name, module in modules.items():
            module.CrewTrainingHandler = originals[name]


@contextlib.contextmanager
def _recording_copy(crew: Any, record: Callable[[Any], None]) -> Iterator[None]:
    """Call ``record`` with the copy ``crew.train()`` makes of ``crew`` (the one whose ids key the file)."""
    cls = type(crew)
    original = cls.copy

    def copy(self: Any, *args: Any, **kwargs: Any) -> Any:
        duplicate = original(self, *args, **kwargs)
        if self is crew:
            record(duplicate)
        return duplicate

    cls.copy = copy
    try:
        yield
    finally:
        cls.copy = original


def _agents_of(crew: Any) -> dict[str, dict[str, Any]]:
    agents: dict[str, dict[str, Any]] = {
        str(agent.id): {"role": str(agent.role), "goal": str(getattr(agent, "goal", "")), "tasks": []}
        for agent in crew.agents
    }
    for task in crew.tasks:
        agent = getattr(task, "agent", None)
        if agent is not None and str(agent.id) in agents:
            agents[str(agent.id)]["tasks"].append(str(task.description))
    return agents


def _counts(path: str) -> dict[str, int]:
    try:
        data = CrewTrainingHandler(path).load()
    except Exception:  # a damaged file is kept as it is; counts are only a summary
        return {}
    if not isinstance(data, dict):
        return {}
    entries = [value for value in data.values() if isinstance(value, dict)]
    return {"agents_with_data": len(entries), "records": sum(len(value) for value in entries)}


Asker = Callable[[FeedbackRequest, Any], str]  # (request, the training crew) -> feedback text


def _feedback_asker(feedback: Any, human_input: Any, exchange: FeedbackExchange) -> Asker:
    if feedback is None:
        return lambda request, crew: human_input.SyncHumanInputProvider._prompt_input(crew)
    if feedback == "notebook":
        return lambda request, crew: exchange.ask(request)
    if callable(feedback):

        def ask(request: FeedbackRequest, crew: Any) -> str:
            answer = feedback(request.role, request.task, request.output)
            if not isinstance(answer, str):
                raise TypeError(f"feedback= must return the feedback text (str), got {type(answer).__name__}")
            return answer

        return ask
    raise TypeError(f"feedback= must be None (CrewAI's terminal prompt), 'notebook' or a function, got {feedback!r}")


def _provider(human_input: Any, asker: Asker, journal: FeedbackJournal, run: int, exchange: FeedbackExchange) -> Any:
    base = human_input.SyncHumanInputProvider
    steps = itertools.count(1)

    # CrewAI's class, looked up when train() runs (crewai is never imported here): Any to the checker.
    class JournallingProvider(base):  # type: ignore[misc, valid-type]
        """CrewAI's provider, with every training feedback journalled (fsynced) before CrewAI sees it."""

        def _feedback(self, formatted_answer: Any, context: Any) -> str:
            if exchange.stopped:
                raise TrainingStopped("training was stopped")
            task = getattr(context, "task", None)
            crew = getattr(context, "crew", None)
            agent = str(context.agent.id)
            earlier = read_journal(journal.path).entries
            request = FeedbackRequest(
                step=next(steps),
                iteration=getattr(crew, "_train_iteration", None),
                agent=agent,
                role=str(context.agent.role),
                task=str(getattr(task, "description", "")),
                output=base._get_output_string(formatted_answer),
                previous=tuple(
                    str(line.get("feedback", ""))
                    for line in earlier
                    if line.get("run") == run and line.get("agent") == agent
                ),
            )
            text = asker(request, crew)
            journal.append(
                {
                    "run": run,
                    "time": utc_now(),
                    "iteration": request.iteration,
                    "agent": agent,
                    "role": request.role,
                    "task": request.task,
                    "output": request.output,
                    "feedback": text,
                    "pid": os.getpid(),
                }
            )
            return text

        def handle_feedback(self, formatted_answer: Any, context: Any) -> Any:
            if not context._is_training_mode():
                return super().handle_feedback(formatted_answer, context)
            text = self._feedback(formatted_answer, context)
            return base._handle_training_feedback(formatted_answer, text, context)

        async def handle_feedback_async(self, formatted_answer: Any, context: Any) -> Any:
            if not context._is_training_mode():
                return await super().handle_feedback_async(formatted_answer, context)
            text = await asyncio.to_thread(self._feedback, formatted_answer, context)
            return await base._handle_training_feedback_async(formatted_answer, text, context)

    return JournallingProvider()


def train(
    crew: Any,
    n_iterations: int,
    *,
    filename: str = "trained_agents_data.pkl",
    inputs: Mapping[str, Any] | None = None,
    directory: str | os.PathLike[str] | None = None,
    feedback: FeedbackFunction | Literal["notebook"] | None = None,
    keep_runs: int | None = None,
) -> TrainingRun | TrainingSession:
    """Run ``crew.train(n_iterations, filename, inputs)`` through crewtrain_nb's store.

    Every place CrewAI uses its own ``CrewTrainingHandler`` gets crewtrain_nb's (atomic, locked, safely read),
    with both files in ``directory``; the patch is undone afterwards, also on error and ``KeyboardInterrupt``.
    Every feedback line is journalled (fsynced) before CrewAI uses it, the files are kept as run ``n`` before
    CrewAI wipes them (at start, and in ``clear()`` on failure), and a sidecar records which training-copy id
    is which agent.

    Parameters
    ----------
    crew
        A ``crewai.Crew``.
    n_iterations
        How many training iterations (each is one ``kickoff``).
    filename
        The trained agents file CrewAI writes (``crewai train -f``), relative to ``directory``.
    inputs
        The crew's inputs.
    directory
        Where both files, the journal and ``training_runs/`` go (default: the working directory). The working
        directory itself is never changed, so training may run in a thread.
    feedback
        ``None``: CrewAI's terminal prompt (still journalled). ``"notebook"``: return at once with a live
        :class:`~crewtrain_nb.training_session.TrainingSession` widget while training runs in a background
        thread; the person answers in the widget. A function ``(role, task, output) -> str``: called for
        each feedback (scripted or LLM-assisted feedback).
    keep_runs
        ``None`` keeps every run; an int keeps the newest that many.

    Returns
    -------
    TrainingRun or TrainingSession
        The finished run (``outcome="ok"``); with ``feedback="notebook"``, the live session (its ``.run`` is
        the run once training ended, ``.wait()`` waits for it).

    Raises
    ------
    ImportError
        crewai is not installed (the message names ``pip install 'crewtrain-nb[crewai]'``).
    RuntimeError
        Another ``train()`` is running in this process, or the installed crewai's layout is unknown.
    Exception
        Whatever ``crew.train()`` raised; the run is then ``failed`` and its files were kept before CrewAI's wipe.
    """
    if not isinstance(n_iterations, int) or isinstance(n_iterations, bool) or n_iterations < 1:
        raise ValueError(f"n_iterations must be an int >= 1, got {n_iterations!r}")
    if keep_runs is not None and (not isinstance(keep_runs, int) or keep_runs < 1):
        raise ValueError(f"keep_runs must be None (keep every run) or an int >= 1, got {keep_runs!r}")
    version, human_input = _check_layout()
    exchange = FeedbackExchange()
    asker = _feedback_asker(feedback, human_input, exchange)
    if not _ACTIVE.acquire(blocking=False):
        raise RuntimeError("a crewtrain_nb.crewai.train() is already running in this process; wait for it to end")
    folder = _directory(directory)

    def run() -> TrainingRun:
        try:
            return _train(
                crew, n_iterations, filename, dict(inputs or {}), folder, asker, keep_runs, version, human_input,
                exchange,
            )  # fmt: skip
        finally:
            _ACTIVE.release()

    if feedback == "notebook":
        from ..training_session import TrainingSession

        try:
            session = TrainingSession(
                exchange, training=_resolve(folder, TRAINING_DATA_FILE), steps=n_iterations * len(crew.tasks)
            )
        except BaseException:
            _ACTIVE.release()
            raise
        session.start(run)
        return session
    if not _in_event_loop():
        return run()
    # In Jupyter the kernel's event loop runs in this thread, and CrewAI refuses a synchronous kickoff
    # there: train in a worker thread and wait for it here.
    return _run_in_thread(run, exchange)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_in_thread(run: Callable[[], TrainingRun], exchange: FeedbackExchange) -> TrainingRun:
    finished: list[TrainingRun] = []
    failed: list[BaseException] = []

    def work() -> None:
        try:
            finished.append(run())
        except BaseException as exc:  # handed to the waiting thread below
            failed.append(exc)

    worker = threading.Thread(target=work, name="crewtrain-nb-train", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        # A kernel interrupt reaches this thread only: stop training at its next feedback, then wait for it.
        exchange.stop()
        worker.join()
        raise
    if failed:
        raise failed[0]
    return finished[0]


def _train(
    crew: Any,
    n_iterations: int,
    filename: str,
    inputs: dict[str, Any],
    directory: str,
    asker: Asker,
    keep_runs: int | None,
    version: str,
    human_input: Any,
    exchange: FeedbackExchange,
) -> TrainingRun:
    os.makedirs(directory, exist_ok=True)
    training_path = _resolve(directory, TRAINING_DATA_FILE)
    trained_path = _resolve(directory, filename)
    live = [training_path, trained_path, sidecar_path(training_path)]
    archive = RunArchive(directory)
    journal = FeedbackJournal(journal_path(training_path))

    # What is there now was left by an earlier run (ours or `crewai train`): keep it unless a run kept it already.
    _keep_if_new(archive, live)
    run = archive.start(
        {
            "outcome": "running",
            "started": utc_now(),
            "ended": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "crewai": version,
            "n_iterations": n_iterations,
            "inputs": _jsonable(inputs),
            "filename": os.path.relpath(trained_path, directory),
            "error": None,
            "files": [],
            "agents": {},
        }
    )
    wiped = threading.Event()

    def keep_before_wipe(path: str) -> None:
        # CrewAI is about to overwrite the files with {} (train() failed): keep them as this run left them.
        if not wiped.is_set():
            wiped.set()
            archive.keep(run, live)

    def record_copy(train_crew: Any) -> None:
        agents = _agents_of(train_crew)
        write_sidecar(training_path, agents, crewai_version=version)
        archive.update(run, agents=agents)

    class DirectoryHandler(CrewTrainingHandler):
        """crewtrain_nb's handler, with CrewAI's relative file names resolved in the training directory."""

        def __init__(self, file_name: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
            super().__init__(_resolve(directory, file_name), *args, **kwargs)

        def clear(self) -> None:
            keep_before_wipe(self.file_path)
            super().clear()

    modules = {name: importlib.import_module(name) for name in HANDLER_MODULES}
    provider = _provider(human_input, asker, journal, run, exchange)
    outcome, error = "ok", None
    token = human_input.set_provider(provider)
    try:
        with _patched(modules, DirectoryHandler), _recording_copy(crew, record_copy):
            crew.train(n_iterations=n_iterations, filename=trained_path, inputs=inputs)
    except TrainingStopped:  # Stop in the notebook (or a kernel interrupt): an interrupted run, not an error
        outcome, error = "interrupted", "stopped before the run ended"
    except Exception as exc:
        outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    except BaseException as exc:  # KeyboardInterrupt and the like: CrewAI leaves the files as they are
        outcome, error = "interrupted", f"{type(exc).__name__}: {exc}".rstrip(": ")
        raise
    finally:
        human_input.reset_provider(token)
        if not wiped.is_set():
            archive.keep(run, live)
        kept = RunArchive(directory)
        kept_training = kept.file(run, TRAINING_DATA_FILE)
        lines = sum(1 for line in read_journal(journal.path).entries if line.get("run") == run)
        entry = archive.update(
            run,
            outcome=outcome,
            ended=utc_now(),
            error=error,
            feedback_lines=lines,
            **(_counts(kept_training) if kept_training else {}),
        )
        if keep_runs is not None:
            archive.prune(keep_runs, protect=[run])
    return _run_from_entry(directory, entry)


def _keep_if_new(archive: RunArchive, paths: list[str]) -> None:
    existing = [path for path in paths if os.path.exists(path)]
    if not existing:
        return
    numbers = archive.numbers()
    if numbers:
        last = numbers[-1]
        same = all(_same_bytes(path, archive.file(last, os.path.basename(path))) for path in existing)
        if same:
            return
    found = archive.start(
        {"outcome": "kept", "started": utc_now(), "ended": utc_now(), "error": None, "note": "files found before a run"}
    )
    archive.keep(found, existing)
    archive.update(found, **_counts(os.path.join(archive.run_path(found), TRAINING_DATA_FILE)))


def _same_bytes(path: str, other: str | None) -> bool:
    if other is None:
        return False
    with open(path, "rb") as a, open(other, "rb") as b:
        return a.read() == b.read()


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return {key: repr(item) for key, item in value.items()} if isinstance(value, dict) else repr(value)
    return value


# --------------------------------------------------------------------------------------------------------------
# Evaluation again, without training again


def evaluate(
    crew: Any,
    *,
    training: str | os.PathLike[str] | None = None,
    filename: str = "trained_agents_data.pkl",
    directory: str | os.PathLike[str] | None = None,
    drop_incomplete: bool = False,
) -> dict[str, Any]:
    """Run CrewAI's own evaluator on saved training data and write the trained agents file.

    For a run that failed at evaluation (CrewAI wiped the files): ``restore_run(n)`` first, or point
    ``training`` at the run's kept copy. The saved data is keyed by the training copy's ids; each of
    ``crew``'s agents is matched to them by role through the sidecar.

    Parameters
    ----------
    crew
        The ``crewai.Crew`` whose agents (and their LLMs) evaluate.
    training
        The training data file (default: ``training_data.pkl`` in ``directory``).
    filename
        The trained agents file to write, relative to ``directory``.
    directory
        Default: the working directory.
    drop_incomplete
        Leave out records CrewAI's evaluator rejects (missing ``improved_output``, empty feedback) instead of
        refusing them.

    Returns
    -------
    dict
        What was written: role -> ``{"suggestions", "quality", "final_summary"}``.

    Raises
    ------
    ValueError
        A record CrewAI's evaluator would reject, with ``drop_incomplete=False``; the message names the agent,
        iteration and what is missing. Or an agent of ``crew`` that no saved id maps to.
    """
    _check_layout()
    from crewai.utilities.evaluators.task_evaluator import TaskEvaluator

    folder = _directory(directory)
    training_path = os.fspath(training) if training is not None else _resolve(folder, TRAINING_DATA_FILE)
    data = CrewTrainingHandler(training_path).load()
    if not isinstance(data, dict) or not data:
        raise ValueError(
            f"{training_path}: holds no training data to evaluate (CrewAI wipes it when train() fails; "
            "see runs() and restore_run())."
        )
    roles = _roles_of(training_path, data)
    handler = CrewTrainingHandler(_resolve(folder, filename))
    written: dict[str, Any] = {}
    for agent in crew.agents:
        ids = [agent_id for agent_id, role in roles.items() if role == agent.role and data.get(agent_id)]
        if not ids:
            continue
        for agent_id in ids:
            records = dict(data[agent_id])
            incomplete = {iteration: _missing(record) for iteration, record in records.items() if _missing(record)}
            if incomplete and not drop_incomplete:
                detail = "; ".join(f"iteration {it}: no {', '.join(fields)}" for it, fields in incomplete.items())
                raise ValueError(
                    f"{training_path}: agent {agent_id} ({agent.role}) has records CrewAI's evaluator rejects "
                    f"({detail}); pass drop_incomplete=True to leave them out."
                )
            records = {iteration: record for iteration, record in records.items() if iteration not in incomplete}
            if not records:
                continue
            result = TaskEvaluator(agent).evaluate_training_data(training_data={agent_id: records}, agent_id=agent_id)
            written[str(agent.role)] = result.model_dump()
            handler.save_trained_data(str(agent.role), written[str(agent.role)])
    if not written:
        raise ValueError(
            f"{training_path}: no agent of the crew maps to its saved ids by role ({sorted(set(roles.values()))})"
        )
    return written


def _missing(record: Any) -> list[str]:
    if not isinstance(record, Mapping):
        return list(FEEDBACK_KEYS)
    return [key for key in FEEDBACK_KEYS if not record.get(key)]


def _roles_of(training_path: str, data: Mapping[str, Any]) -> dict[str, str]:
    path = sidecar_path(training_path)
    recorded = recorded_roles(training_path)
    if recorded:
        return recorded
    roles: dict[str, str] = {}
    for agent_id, records in data.items():  # CrewAI 0.86 records carry the role
        if isinstance(records, Mapping):
            for record in records.values():
                if isinstance(record, Mapping) and record.get("agent_role"):
                    roles[str(agent_id)] = str(record["agent_role"])
                    break
    if not roles:
        raise ValueError(
            f"{training_path}: no sidecar ({os.path.basename(path)}) says which id is which agent; "
            "train with crewtrain_nb.crewai.train() to record it."
        )
    return roles
