"""The ``crewtrain-nb`` command line (also ``python -m crewtrain_nb``).

Every command reads stores through the safe handler. Bad input prints one line
to stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import StoreError, StoreFormatError

__all__ = ["main"]

EXPORT_SUFFIXES = (".csv", ".json", ".parquet")
PLOT_SUFFIXES = (".png", ".svg", ".pdf")
TRUSTED_HELP = (
    "unpickle anything, importing the classes the file names from installed packages or from modules in "
    "the current directory (as python -m does); only for files you trust: pickles can run code"
)

TRAINED_HELP = (
    "the trained_agents_data.pkl of the same run, to label agents with their roles "
    "(default: trained_agents_data.pkl beside the training file, when there is one)"
)


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _existing(path: str) -> Path:
    candidate = Path(path)
    if not candidate.exists():
        raise CommandError(f"{path}: no such file; give the path of a store such as training_data.pkl")
    if candidate.is_dir():
        raise CommandError(f"{path}: is a directory; give the path of a store file")
    return candidate


def _handler(path: str, trusted: bool) -> Any:
    from .store import CrewTrainingHandler

    return CrewTrainingHandler(_existing(path), trusted=trusted, add_suffix=False)


def _names(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    try:
        names = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: cannot read agent names ({exc}); give a JSON object {{agent_id: role}}") from exc
    if not isinstance(names, dict):
        raise CommandError(f"{path}: agent names must be a JSON object {{agent_id: role}}")
    return {str(key): str(value) for key, value in names.items()}


def _trained_for(args: argparse.Namespace) -> Any:
    """The trained file for a command on ``args.path``: ``--trained``, else the one beside it, else ``None``.

    CrewAI writes ``trained_agents_data.pkl`` beside ``training_data.pkl`` (both in the folder where
    ``crewai train`` runs): a file of that name there is used unless ``--trained`` names another one.
    """
    from .crewai.prompt import DEFAULT_TRAINED_FILE
    from .frames import store_kind

    if getattr(args, "trained", None):
        return _handler(args.trained, args.trusted)
    beside = Path(args.path).with_name(DEFAULT_TRAINED_FILE)
    if not beside.is_file() or beside.resolve() == Path(args.path).resolve():
        return None
    handler = _handler(str(beside), args.trusted)
    try:
        kind = store_kind(handler)
    except (StoreError, ValueError):  # not a trained file after all: nothing to label with
        return None
    return handler if kind in ("trained_agents", "empty") else None


def _roles_of(data: Any, path: str, trained: Any) -> dict[str, tuple[str, str]]:
    """``{agent: (role, how)}`` as the browser finds roles; CrewAI 0.86's stored roles too."""
    from .crewai.sources import read_trained
    from .navigation import role_matches
    from .store import record_roles as agent_roles

    trained_data = read_trained(trained)[0] if trained is not None else None
    stored = {str(agent): (role, "record") for agent, role in agent_roles(data).items()}
    return {**stored, **role_matches(data, trained=trained_data, path=path)}


def _labels_of(data: Any, path: str, trained: Any) -> dict[str, str]:
    """Each agent's label as the browser shows it (roles from the sidecar, 0.86 records, or the trained file)."""
    from .crewai.sources import read_trained
    from .navigation import agent_labels

    trained_data = read_trained(trained)[0] if trained is not None else None
    return agent_labels(data, trained=trained_data, path=path)


# -- commands ------------------------------------------------------------------------


def _sqlite_outline(handler: Any) -> dict[Any, list[int]] | None:
    """Each agent's iteration numbers of a store that ``supports_lazy_reads`` (SQLite), without unpickling a record.

    ``None`` for a store read whole anyway (pickle) or a lazy store holding
    other entries (trained agents): the full shape check then says what it is.
    """
    from .store import TrainingStore

    if not isinstance(handler, TrainingStore) or not handler.supports_lazy_reads:
        return None
    outline: dict[Any, list[int]] = {}
    for agent in handler.agents():
        try:
            outline[agent] = handler.iterations(agent)
        except StoreFormatError:
            return None
    return outline if outline and all(outline.values()) else None


def _feedback_records(handler: Any, data: Any, outline: dict[Any, list[int]]) -> dict[Any, Any] | None:
    """Each agent's records when they are CrewAI feedback (to count statuses), else ``None``.

    A SQLite store is asked for one record first: a metric log is never read whole.
    """
    from .crewai.files import holds_feedback, is_feedback_record

    if data is not outline:  # a loaded pickle store
        return data if holds_feedback(data) else None
    first = next(iter(outline))
    if not is_feedback_record(handler.get(first, outline[first][0])):
        return None
    return {agent: handler.entry(agent) for agent in outline}


def _status_counts(records: Any) -> str:
    from .crewai.files import FEEDBACK_STATUSES, STATUS_LABELS, feedback_status

    statuses = [feedback_status(record) for record in records.values()]
    return " · ".join(
        f"{statuses.count(status)} {STATUS_LABELS[status]}" for status in FEEDBACK_STATUSES if status in statuses
    )


def _cmd_info(args: argparse.Namespace) -> int:
    from .crewai.files import explain_empty_file, explain_statuses
    from .frames import store_kind
    from .store import SQLITE_SUFFIXES

    handler = _handler(args.path, args.trusted)
    # A SQLite store of iterations is described from its keys alone: a large one is never loaded.
    outline = _sqlite_outline(handler)
    if outline is None:
        kind = store_kind(handler)  # checks the shape, naming the file when it is wrong
        data = handler.peek()
        if kind == "iterations":
            outline = {agent: list(records) for agent, records in data.items()}
    else:
        kind, data = "iterations", outline
    stats = handler.stats()  # bytes on disk include a SQLite store's write-ahead log
    changed = stats.changed.isoformat(timespec="seconds") if stats.changed else "-"
    described: str = kind
    if not data and Path(handler.file_path).suffix.lower() not in SQLITE_SUFFIXES:  # CrewAI writes pickles only
        described = f"{kind} ({explain_empty_file(stats.bytes)})"
    print(f"file:         {handler.file_path}")
    print(f"kind:         {described}")
    print(f"size:         {stats.bytes:,} bytes")
    print(f"last change:  {changed}")
    print(f"agents:       {len(data)}")
    if outline is not None:
        feedback = _feedback_records(handler, data, outline) if any(outline.values()) else None
        trained = _trained_for(args) if feedback else None
        if trained is not None:
            print(f"trained:      {trained.file_path}")
        # The full id (to copy), then the role as the browser finds it: sidecar, 0.86 records, trained file.
        found = _roles_of(feedback, handler.file_path, trained) if feedback else {}
        labels = {
            agent: f"{agent} ({found[str(agent)][0]}{', inferred' if found[str(agent)][1] == 'inferred' else ''})"
            if str(agent) in found and found[str(agent)][0] != str(agent)
            else str(agent)
            for agent in outline
        }
        print(f"records:      {sum(len(iterations) for iterations in outline.values())}")
        width = max(map(len, labels.values()), default=0)
        for agent, iterations in outline.items():
            keys = sorted(iterations)
            span = f"{keys[0]}..{keys[-1]}" if keys else "-"
            noun = "iteration" if len(iterations) == 1 else "iterations"
            line = f"  {labels[agent]:<{width}}  {len(iterations):>6} {noun}  ({span})"
            if feedback:
                line += f"  {_status_counts(feedback[agent])}"
            print(line)
        if feedback:
            for meaning in explain_statuses(record for records in feedback.values() for record in records.values()):
                print(f"  * {meaning}")
    elif kind == "trained_agents":
        for role, entry in data.items():
            quality = entry.get("quality") if isinstance(entry, dict) else None
            print(f"  {role}: quality {quality}")
    return 0


def _format_leaf(value: Any) -> str:
    from .render import is_array, summarize_array

    if is_array(value):
        return summarize_array(value)
    return value if isinstance(value, str) else repr(value)


def _print_trained(role: Any, entry: Any) -> None:
    """A trained agent: quality, each suggestion on its own line, the summary."""
    from .crewai.files import TRAINED_KEYS, is_trained_entry
    from .render import flatten_record

    print(f"{role}:")
    if not is_trained_entry(entry):
        for key, value in flatten_record(entry):
            print(f"  {key}: {_format_leaf(value)}")
        return
    suggestions = entry.get("suggestions")
    if isinstance(suggestions, (str, bytes)) or not isinstance(suggestions, (list, tuple)):
        suggestions = [] if suggestions is None else [suggestions]
    print(f"  quality: {entry.get('quality', '(missing)')}")
    print(f"  suggestions ({len(suggestions)}):")
    for suggestion in suggestions:
        print(f"    - {suggestion}")
    print(f"  final_summary: {entry.get('final_summary', '(missing)')}")
    extra = {key: value for key, value in entry.items() if key not in TRAINED_KEYS}
    for key, value in flatten_record(extra) if extra else []:
        print(f"  {key}: {_format_leaf(value)}")


def _cmd_show(args: argparse.Namespace) -> int:
    from .crewai.files import FEEDBACK_KEYS, field_notes, is_feedback_record, text_of
    from .crewai.sidecar import sidecar_path
    from .render import flatten_record
    from .store import resolve_agent, stored_roles

    # Lazy reads: a SQLite store fetches one record, not the whole store.
    handler = _handler(args.path, args.trusted)
    agents = handler.agents()
    if not agents:
        raise CommandError(_empty_store(args.path, handler))
    matched: dict[str, str] = {}  # agent -> label, for feedback records (roles found as the browser finds them)

    def roles() -> dict[str, str]:
        found = stored_roles(handler, agents)
        if matched:
            found = {**found, **{agent: label.split(" · ")[0] for agent, label in matched.items() if label != agent}}
        return found

    trained = None
    first = handler.entry(agents[0])
    if isinstance(first, dict) and first and is_feedback_record(next(iter(first.values()))):
        trained = _trained_for(args)
        if trained is not None or sidecar_path(handler.file_path) and os.path.exists(sidecar_path(handler.file_path)):
            matched = _labels_of(handler.peek(), handler.file_path, trained)
    agent = (
        resolve_agent(agents, args.agent, roles=roles, path=handler.file_path) if args.agent is not None else agents[0]
    )
    try:
        iterations = sorted(handler.iterations(agent))
    except StoreFormatError:  # a trained agent (or another value): print it whole
        iterations = []
    if not iterations:
        _print_trained(agent, handler.entry(agent))
        return 0
    iteration = args.iteration if args.iteration is not None else iterations[0]
    if iteration not in iterations:
        raise CommandError(f"agent {agent!r} has no iteration {iteration}; it has {iterations[0]}..{iterations[-1]}")
    record = handler.get(agent, iteration)
    print(f"agent {agent} · iteration {iteration}")
    if matched.get(str(agent), str(agent)) != str(agent):
        where = f" (trained file: {trained.file_path})" if trained is not None else ""
        print(f"label: {matched[str(agent)]}{where}")
    if is_feedback_record(record):
        notes = field_notes(record)  # what a missing or empty field means
        for key in FEEDBACK_KEYS:
            print(f"\n[{key}]")
            if key in notes:
                print(f"({notes[key].state}) {notes[key].meaning}")
            else:
                text = text_of(record.get(key))
                print("(missing)" if text is None else text)
        extra = {key: value for key, value in record.items() if key not in FEEDBACK_KEYS}
        for key, value in flatten_record(extra) if extra else []:
            print(f"{key}: {_format_leaf(value)}")
    else:
        for key, value in flatten_record(record):
            print(f"  {key}: {_format_leaf(value)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_csv, export_json, export_parquet

    handler = _handler(args.path, args.trusted)
    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        export_csv(handler, out, layout=args.layout)
    elif suffix == ".json":
        export_json(handler, out)
    elif suffix == ".parquet":
        export_parquet(handler, out, layout=args.layout)
    else:
        raise CommandError(f"{out}: unknown output type {suffix or '(none)'}; use one of {', '.join(EXPORT_SUFFIXES)}")
    print(f"wrote {out}")
    return 0


def _empty_store(path: str, handler: Any) -> str:
    from .crewai.files import explain_empty_file

    return f"{path}: the store is empty ({explain_empty_file(handler.stats().bytes)})"


def _cmd_plot(args: argparse.Namespace) -> int:
    from .crewai.files import holds_feedback
    from .frames import store_kind
    from .plots import plot_feedback, plot_metrics, plot_quality

    out = Path(args.output)
    if out.suffix.lower() not in PLOT_SUFFIXES:
        raise CommandError(f"{out}: unknown image type {out.suffix or '(none)'}; use one of {', '.join(PLOT_SUFFIXES)}")
    handler = _handler(args.path, args.trusted)
    kind = store_kind(handler)
    data = handler.peek()
    crewai = "trained agents" if kind == "trained_agents" else "CrewAI feedback" if holds_feedback(data) else None
    if crewai is not None:
        given = [
            flag
            for flag, value in (("--metric", args.metric), ("--smoothing", args.smoothing), ("--logy", args.logy))
            if value
        ]
        if given:
            raise CommandError(
                f"{' and '.join(given)}: for metric logs only; {args.path} holds {crewai}, drawn as "
                + ("quality per role" if kind == "trained_agents" else "output lengths and similarity per iteration")
            )
    if kind == "empty" and not data:
        raise CommandError(_empty_store(args.path, handler) + ": nothing to plot")
    if kind == "trained_agents":
        figure = plot_quality(handler).figure.figure  # the root Figure (an Axes' .figure may be a SubFigure)
    elif crewai is not None:
        # Rows are headed as the browser labels agents; plot_feedback shortens the other ids.
        figure = plot_feedback(handler, trained=_trained_for(args))
    else:
        figure = plot_metrics(handler, args.metric or None, smoothing=args.smoothing, logy=args.logy)
    figure.savefig(out, dpi=120, bbox_inches="tight")
    print(f"wrote {out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .crewai.files import holds_feedback, misplaced_files
    from .frames import store_kind
    from .report import write_report

    source = _handler(args.path, args.trusted)
    # The trained file beside is the run's only for CrewAI feedback (a metric log beside it is another matter).
    data = source.peek()
    trained = _trained_for(args) if args.trained or (isinstance(data, dict) and holds_feedback(data)) else None
    if args.compare and trained is None:
        raise CommandError(f"--compare {args.compare}: compares a trained file with --trained; give --trained too")
    compare = _handler(args.compare, args.trusted) if args.compare else None
    problem = misplaced_files(
        store_kind(source),
        store_kind(trained) if trained is not None else None,
        source=args.path,
        trained=args.trained,
        option="--trained",
    )
    if problem:
        raise CommandError(problem)
    path = write_report(
        source, args.output, trained=trained, agent_names=_names(args.agent_names), compare_with=compare
    )
    print(f"wrote {path}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .store import convert

    source = _existing(args.source)
    written = convert(source, args.destination, overwrite=args.overwrite, trusted=args.trusted)
    print(f"wrote {written}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import write_demo

    for path in write_demo(args.directory).values():
        print(f"wrote {path}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """The main job: demo stores → CSV export, training curves, feedback and quality plots, HTML report."""
    from .demo import demo_agent_names, write_demo
    from .export import export_csv
    from .navigation import agent_options
    from .plots import plot_feedback, plot_metrics, plot_quality
    from .report import write_report
    from .store import CrewTrainingHandler

    out = Path(args.output)
    stores = write_demo(out / "stores")
    training = CrewTrainingHandler(stores["training"])
    metrics = CrewTrainingHandler(stores["metrics"])
    trained = CrewTrainingHandler(stores["trained"])
    names = demo_agent_names(training.peek())
    written: list[Path] = list(stores.values())

    for handler, name in ((metrics, "metrics.csv"), (training, "training_data.csv")):
        export_csv(handler, out / name)
        written.append(out / name)
    figure = plot_metrics(metrics, smoothing=0.6)
    figure.savefig(out / "training_curves.png", dpi=110, bbox_inches="tight")
    written.append(out / "training_curves.png")
    labels = {agent: label for label, agent in agent_options(training.peek(), names=names)}
    plot_feedback(training, agent_names=labels).savefig(out / "feedback.png", dpi=110, bbox_inches="tight")
    written.append(out / "feedback.png")
    plot_quality(trained).figure.figure.savefig(out / "quality.png", dpi=110, bbox_inches="tight")
    written.append(out / "quality.png")
    written.append(write_report(training, out / "report.html", trained=trained, agent_names=names))
    written.append(write_report(metrics, out / "metrics_report.html"))
    print(f"crewtrain-nb quickstart: wrote {len(written)} files to {out.resolve()}")
    for path in written:
        print(f"  {Path(path).resolve().relative_to(out.resolve())}  ({Path(path).stat().st_size:,} bytes)")
    return 0


def _training_directory(path: str | None) -> Path:
    directory = Path(path) if path is not None else Path.cwd()
    if not directory.is_dir():
        raise CommandError(f"{directory}: no such directory; give the folder where training ran")
    return directory


def _cmd_runs(args: argparse.Namespace) -> int:
    from .crewai.training import runs

    directory = _training_directory(args.directory)
    frame = runs(directory)
    if frame.empty:
        print(f"{directory}: no training runs kept (crewtrain_nb.crewai.train() keeps them in training_runs/)")
        return 0
    columns = ["run", "outcome", "started", "ended", "n_iterations", "agents", "records", "error"]
    print(frame[columns].astype(object).where(frame[columns].notna(), "").to_string(index=False))
    return 0


def _cmd_restore_run(args: argparse.Namespace) -> int:
    from .crewai.training import load_run, restore_run

    directory = _training_directory(args.directory)
    restored = load_run(args.run_number, directory)
    kept = restore_run(args.run_number, directory)
    names = ", ".join(restored.kept_files)
    print(f"restored run {args.run_number} ({names}) in {directory}; what was there before is kept as run {kept.run}")
    return 0


# -- CrewAI insight: check, prompt, diff ------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when nothing is wrong, 1 with findings (2, from main, when a file cannot be read)."""
    from .crewai.checks import check_training

    training = _handler(args.path, args.trusted)
    trained = _handler(args.trained, args.trusted) if args.trained else None
    findings = check_training(training, trained)
    if not findings:
        data = training.peek()
        records = sum(len(entry) for entry in data.values())
        print(f"{training.file_path}: no findings ({len(data)} agents, {records} records checked)")
        return 0
    print(f"{training.file_path}: {len(findings)} finding{'s' if len(findings) != 1 else ''}")
    for finding in findings:
        where = [f"agent {finding.agent}" if finding.agent is not None else "", ""]
        if finding.iteration is not None:
            where[1] = f"iteration {finding.iteration}"
        print(f"\n{finding.code}  {'  '.join(part for part in where if part)}".rstrip())
        print(f"  {finding.message}")
        print(f"  what to do: {finding.what_to_do}")
    return 1


def _cmd_prompt(args: argparse.Namespace) -> int:
    from .crewai.prompt import explain_trained_file, prompt_preview, trained_file_for

    if args.explain:
        print(explain_trained_file())
        print()
    if args.trained is None:
        choice = trained_file_for()
        if not choice.exists:
            if args.explain:
                return 0
            raise CommandError(
                f"{choice.path}: no trained file where a crew here would look (see crewtrain-nb prompt --explain); "
                "give the file: crewtrain-nb prompt TRAINED"
            )
        path = choice.path
    else:
        path = str(_existing(args.trained))
    texts = prompt_preview(_handler(path, args.trusted), args.role)
    if args.role is not None:
        sys.stdout.write(texts[args.role] + "\n")  # exactly what CrewAI appends, then a newline
        return 0
    if not texts:
        print(f"{path}: the trained file is empty ({{}}): CrewAI appends nothing to any agent's prompt")
        return 0
    print(f"{path}: what CrewAI 1.x appends to the task prompt of an agent with each role")
    for role, text in texts.items():
        print(f"\n--- {role} ---")
        print(text.lstrip("\n") if text else "(nothing: the entry is empty)")
    return 0


def _cmd_diff(args: argparse.Namespace) -> int:
    from .crewai.compare import compare_entries

    rows = compare_entries(_handler(args.a, args.trusted), _handler(args.b, args.trusted))
    if not rows:
        print("both trained files are empty")
        return 0

    def number(value: float, *, sign: bool = False) -> str:
        return "-" if value != value else (f"{value:+.1f}" if sign else f"{value:.1f}")

    width = max(len("role"), *(len(row.role) for row in rows))
    print(f"{'role':<{width}}  {'in':<6}  {'before':>6}  {'after':>6}  {'delta':>6}  added  removed  kept")
    for row in rows:
        print(
            f"{row.role:<{width}}  {row.presence.replace('only_', ''):<6}  {number(row.quality_before):>6}  "
            f"{number(row.quality_after):>6}  {number(row.quality_delta, sign=True):>6}  "
            f"{len(row.added):>5}  {len(row.removed):>7}  {len(row.kept):>4}"
        )
    for row in rows:
        if row.added or row.removed:
            print(f"\n{row.role}:")
            for item in row.removed:
                print(f"  - {item}")
            for item in row.added:
                print(f"  + {item}")
    return 0


def _add_insight_commands(command: Callable[[str, Callable[[argparse.Namespace], int], str], Any]) -> None:
    trusted_help = TRUSTED_HELP
    check = command(
        "check", _cmd_check, "what is wrong with a training run (exit 0: nothing, 1: findings, 2: unreadable)"
    )
    check.add_argument("path", help="the training_data.pkl to check")
    check.add_argument("--trained", help="the trained_agents_data.pkl of the same run")
    check.add_argument("--trusted", action="store_true", help=trusted_help)

    prompt = command("prompt", _cmd_prompt, "the exact text CrewAI appends to each agent's task prompt")
    prompt.add_argument(
        "trained", nargs="?", help="a trained_agents_data.pkl (default: the file a crew here would read)"
    )
    prompt.add_argument("--role", help="only this role, printed exactly as CrewAI appends it")
    prompt.add_argument("--explain", action="store_true", help="say which trained file a crew reads, and why")
    prompt.add_argument("--trusted", action="store_true", help=trusted_help)

    diff = command("diff", _cmd_diff, "compare two trained files: quality and suggestions per role")
    diff.add_argument("a", help="the trained file before (e.g. an earlier run)")
    diff.add_argument("b", help="the trained file after")
    diff.add_argument("--trusted", action="store_true", help=trusted_help)


# -- parser ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crewtrain-nb",
        description="Look into CrewAI training stores (training_data.pkl, trained_agents_data.pkl, metric logs).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        return sub

    def store_arguments(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("path", help="a store file, e.g. training_data.pkl")
        sub.add_argument(
            "--trusted", action="store_true", help=TRUSTED_HELP
        )

    info = command("info", _cmd_info, "store kind, agents, iterations per agent, file size, last change")
    store_arguments(info)
    info.add_argument("--trained", help=TRAINED_HELP)

    show = command("show", _cmd_show, "print one record, readable")
    store_arguments(show)
    show.add_argument(
        "--agent", help="an agent id, else a role, else a unique prefix of an id (default: the first); shows the id"
    )
    show.add_argument("--iteration", type=int, help="iteration number (default: the first)")
    show.add_argument("--trained", help=TRAINED_HELP)

    export = command("export", _cmd_export, "export to CSV, JSON or Parquet, chosen by the output's suffix")
    store_arguments(export)
    export.add_argument("-o", "--output", required=True, help="output file: .csv, .json or .parquet")
    export.add_argument("--layout", choices=("wide", "long"), default="wide", help="table layout (CSV/Parquet)")

    plot = command(
        "plot",
        _cmd_plot,
        "draw a store to PNG, SVG or PDF: training curves of a metric log, output lengths and similarity of "
        "CrewAI feedback (training_data.pkl), quality per role of trained agents (trained_agents_data.pkl)",
    )
    store_arguments(plot)
    plot.add_argument("-o", "--output", required=True, help="output image: .png, .svg or .pdf")
    plot.add_argument("--metric", action="append", help="a metric to draw (repeatable; default: all; metric logs)")
    plot.add_argument(
        "--smoothing", type=float, default=0.0, help="EMA weight in [0, 1), as in TensorBoard (metric logs)"
    )
    plot.add_argument("--logy", action="store_true", help="log-scale y axis (metric logs)")
    plot.add_argument("--trained", help=TRAINED_HELP)

    report = command("report", _cmd_report, "write a self-contained HTML report")
    store_arguments(report)
    report.add_argument("-o", "--output", required=True, help="output .html file")
    report.add_argument("--trained", help=TRAINED_HELP)
    report.add_argument("--agent-names", help="JSON file {agent_id: role} to label agents")
    report.add_argument(
        "--compare", metavar="B", help="another trained file (before; --trained is after): adds a comparison section"
    )

    convert = command(
        "convert", _cmd_convert, "copy a store between pickle (.pkl) and SQLite (.db, .sqlite, .sqlite3), losslessly"
    )
    convert.add_argument("source", help="the store to read, e.g. training_data.pkl")
    convert.add_argument("destination", help="the store to write; its suffix picks the format, e.g. training_data.db")
    convert.add_argument("--overwrite", action="store_true", help="replace the destination if it exists")
    convert.add_argument(
        "--trusted", action="store_true", help=TRUSTED_HELP
    )

    runs = command("runs", _cmd_runs, "list the training runs crewtrain_nb.crewai.train() kept in a directory")
    runs.add_argument("directory", nargs="?", help="the folder where training ran (default: the current one)")

    restore = command(
        "restore-run", _cmd_restore_run, "put a kept run's files back for CrewAI (the current ones are kept)"
    )
    restore.add_argument("run_number", metavar="RUN", type=int, help="the run number (see: crewtrain-nb runs)")
    restore.add_argument("directory", nargs="?", help="the folder where training ran (default: the current one)")

    demo = command("demo", _cmd_demo, "write the demo stores (CrewAI-shaped and ML-shaped) into a directory")
    demo.add_argument("directory", help="where to write them")

    _add_insight_commands(command)

    quickstart = command("quickstart", _cmd_quickstart, "the main job on the built-in demo stores")
    quickstart.add_argument("output", nargs="?", default="demo-output", help="output folder (default: demo-output)")
    return parser


#: Python keyword arguments that error messages name, and the flag that does the same here.
_FLAGS = {"trusted=True": "--trusted", "overwrite=True": "--overwrite"}

#: What an ``OSError`` without a store's own message means, as a sentence after the path.
_ERRNO_SENTENCES = {
    errno.EISDIR: "is a directory; give a file name (inside it, if you like)",
    errno.ENOENT: "no such file or directory; check the path and that its folder exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EACCES: "permission denied; check the permissions of the file and of its folder",
    errno.EPERM: "permission denied; check the permissions of the file and of its folder",
    errno.EROFS: "is on a read-only file system; write somewhere else",
    errno.ENOSPC: "no space left on the device; free some space and try again",
}


def _error_text(exc: BaseException) -> str:
    """One line for the terminal: errno text as a sentence naming the path, Python keywords as CLI flags."""
    if isinstance(exc, OSError) and not isinstance(exc, StoreError) and exc.errno is not None:
        where = os.fsdecode(exc.filename) if exc.filename is not None else "a file"
        sentence = _ERRNO_SENTENCES.get(exc.errno) or (exc.strerror or str(exc)).lower()
        text = f"{where}: {sentence}"
    else:
        text = str(exc)
    for keyword, flag in _FLAGS.items():
        text = text.replace(keyword, flag)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    args = _parser().parse_args(argv)
    if getattr(args, "trusted", False) and os.getcwd() not in sys.path:
        # As ``python -m`` does: a trusted pickle may name classes of modules in the current directory.
        sys.path.insert(0, os.getcwd())
    def show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        # A warning the user should act on (e.g. --agent-names matching no agent): one line, no source path.
        print(f"crewtrain-nb {args.command}: warning: {_error_text(Exception(str(message)))}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args.run(args))
    except (CommandError, StoreError, ValueError, ImportError, OSError, RuntimeError) as exc:
        print(f"crewtrain-nb {args.command}: error: {_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"crewtrain-nb {args.command}: interrupted", file=sys.stderr)
        return 130
