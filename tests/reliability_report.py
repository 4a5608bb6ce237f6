"""Run the reliability checks and write RELIABILITY.md (the figures of this run).

    .venv/bin/python -m tests.reliability_report [--output RELIABILITY.md] [--kills 200] [--fuzz 25000]
        [--sqlite-fuzz 10000] [--model-examples 600] [--sqlite-model-examples 300] [--crewai-python PYTHON]

The CrewAI checks (a real ``crew.train()`` beside readers, ``tests/crewai_script.py``) run with
``--crewai-python`` (default: this interpreter) when crewai is installed there, else their rows say so.

The checks are the same code the tests run (``tests/reliability_lib.py``,
``tests/hostile_corpus.py``, ``tests/test_store_model.py``), for each store
backend (pickle and SQLite); the tests assert on them, this script counts. It
exits non-zero if any check found a problem.

It lives in the tests package, beside the harness it shares with the tests (and a test module's state
machine), and runs as a module from the repository root: every import is the package's own, no path is set.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import crewai_script
from . import reliability_lib as lib

ROOT = Path(__file__).resolve().parents[1]

EXPECTED_ERROR = {"unsafe": "UnsafePickleError", "corrupt": "CorruptStoreError"}

#: What each guarantee means for a user: (guarantee, meaning).
MEANING: list[tuple[str, str]] = [
    (
        "crash at every step",
        "A crash, `kill -9` or power cut while CrewAI or your script saves leaves the previous version of the "
        "file or the new one, never a torn file; the next save cleans up the half-written temporary file. "
        "SQLite: the database opens, passes SQLite's integrity check and holds the data before or after the "
        "interrupted write; the write-ahead log is replayed or discarded by SQLite on the next open.",
    ),
    (
        "kill -9 soak",
        "Every `append` that returned is on disk: a process killed right after it loses nothing it was told was saved.",
    ),
    (
        "model-checked store",
        "Any mix of `append`, `save_trained_data`, `save`, `clear`, `batch()` (including blocks that raise), "
        "reopened handlers and two handlers on one file gives exactly what a plain dict would; a `batch()` that "
        "raises writes nothing.",
    ),
    (
        "faults",
        "A full disk or an I/O error while saving raises `StoreWriteError` naming the file, and the old file stays "
        "byte for byte; a read-only directory or a directory in place of the file is a clear `StoreError`, never a "
        "traceback from deep inside; a stuck process holding the lock gives `StoreLockTimeout` after "
        "`lock_timeout`, data untouched. SQLite: the same; in a read-only directory, where SQLite cannot create "
        "its `-shm` file, a store is still read (the file alone when it has no `-wal` log, else through the "
        "writer's `-shm`, read-only), and a write is a `StoreWriteError` saying the directory must be writable.",
    ),
    (
        "beside CrewAI",
        "A notebook loading (or a browser refreshing) while `crew.train()` writes with CrewAI's own handler never "
        "sees `{}`, a half-written file or a vanished record: each read of a changed file holds CrewAI's own lock "
        "(same `TMPDIR` and user needed).",
    ),
    (
        "hostile pickles",
        "Opening a store someone sent you cannot run code, open other files, import modules or crash the "
        "interpreter: `UnsafePickleError` names what was refused. Only `trusted=True` loads arbitrary pickles.",
    ),
    (
        "fuzzing",
        "A damaged file (bit rot, truncation, a bad copy) raises `CorruptStoreError`, never another exception, a "
        "hang or a crash, and tiny files declaring gigabytes do not allocate them (one known gap: the memo index). "
        "SQLite: a damaged database raises a `StoreError` (`CorruptStoreError` for damage) from `load()` and the "
        "lazy reads alike.",
    ),
    (
        "writers and a reader",
        "Many processes can append while a notebook keeps re-loading: the notebook never sees a half-written file "
        "or a record disappear, and nothing is lost.",
    ),
    (
        "permissions",
        "New store and lock files (SQLite: the database and its `-wal` and `-shm`) are readable by you only "
        "(`0600`), whatever the umask; an existing file keeps its mode. Backups (`backups=`) and audit logs "
        "(`audit=True`) are `0600` too (`tests/test_backups.py`, `tests/test_audit.py`).",
    ),
]


Row = tuple[str, str, str, str]  # check, backend, figure, how


def run_checks(args: argparse.Namespace) -> tuple[list[Row], list[str], dict[str, float]]:
    rows: list[Row] = []
    problems: list[str] = []
    seconds: dict[str, float] = {}

    def timed(name: str) -> Any:
        class Timer:
            def __enter__(self) -> None:
                self.start = time.perf_counter()

            def __exit__(self, *exc: object) -> None:
                seconds[name] = time.perf_counter() - self.start
                print(f"{name}: {seconds[name]:.1f} s", file=sys.stderr)

        return Timer()

    with tempfile.TemporaryDirectory(prefix="crewtrain-reliability-") as scratch, lib.Zygote() as zygote:
        base = Path(scratch)
        (base / "crash").mkdir()
        with timed("crash points"):
            crash = lib.run_crash_points(base / "crash", zygote=zygote)
        problems += [f"crash: {p}" for p in crash.problems]
        calls = ", ".join(f"{crash.calls[name]} {name}" for name in lib.CRASH_FUNCTIONS)
        rows.append(
            (
                "crash points tested",
                "pickle",
                f"{crash.crash_points}",
                f"child killed by `os._exit` just before and just after each of the {calls} calls of a "
                f"{len(lib.CRASH_SCRIPT)}-operation script; {len(crash.problems)} files neither before nor after",
            )
        )
        (base / "tails").mkdir()
        with timed("tail crash points"):
            tails = lib.run_crash_points(base / "tails", zygote=zygote, script="tails")
        problems += [f"tail crash: {p}" for p in tails.problems]
        calls = ", ".join(f"{tails.calls[name]} {name}" for name in lib.CRASH_FUNCTIONS if tails.calls[name])
        rows.append(
            (
                "crash points tested, tails and compaction",
                "pickle",
                f"{tails.crash_points}",
                f"the same, on a {len(lib.TAIL_SCRIPT)}-operation script of tails ({tails.commits} commits: appends, "
                f"a new agent, replaced entries, CrewAI's load/save pattern) and compactions ({calls} calls); "
                f"{len(tails.problems)} files neither before nor after",
            )
        )
        (base / "soak").mkdir()
        with timed("kill soak"):
            soak = lib.run_kill_soak(base / "soak", zygote=zygote, kills=args.kills)
        problems += [f"soak: {p}" for p in soak.problems]
        rows.append(
            (
                "kills survived (SIGKILL)",
                "pickle",
                f"{soak.kills - len(soak.problems)} / {soak.kills}",
                f"appending child killed 0-50 ms into its run; {soak.acknowledged} acknowledged appends checked",
            )
        )
        rows.append(("acknowledged records lost", "pickle", f"{soak.lost}", "after any of the kills"))
        rows += sqlite_process_checks(args, base, zygote, problems, timed)

    with timed("model"):
        examples = run_model("pickle", args.model_examples)
    rows.append(
        (
            "model-checked runs",
            "pickle",
            f"{examples}",
            "hypothesis state machine, up to 30 steps each; load() == dict model, and pickle.load of the file too",
        )
    )
    with timed("model (SQLite)"):
        examples = run_model("sqlite", args.sqlite_model_examples)
    rows.append(
        (
            "model-checked runs",
            "SQLite",
            f"{examples}",
            "the same state machine; load() == dict model, and the rows read with sqlite3 alone too",
        )
    )

    with timed("hostile"):
        findings = lib.audit_hostile_payloads()
    payloads = [f for f in findings if "index" in f]
    bad = [
        f
        for f in payloads
        if f["outcome"] != EXPECTED_ERROR[f["expected"]] or f["violations"] or f["marker"] or not f["unchanged"]
    ]
    problems += [f"hostile: {f['name']}: {f['outcome']} {f['violations'][:2]}" for f in bad]
    unsafe = sum(1 for f in payloads if f["outcome"] == "UnsafePickleError")
    rows.append(
        (
            "hostile payloads refused",
            "pickle",
            f"{len(payloads) - len(bad)} / {len(payloads)}",
            f"{unsafe} `UnsafePickleError`, {len(payloads) - unsafe} `CorruptStoreError` (bytes invalid here); "
            f"protocols {min(f['protocol'] for f in payloads)}-{max(f['protocol'] for f in payloads)}; "
            "audit hook saw no exec, compile, import, subprocess or other open",
        )
    )

    with timed("fuzz"):
        fuzz = lib.run_fuzz(args.fuzz)
    problems += [f"fuzz: {p}" for p in fuzz.problems]
    outcomes = ", ".join(f"{count} {name}" for name, count in sorted(fuzz.outcomes.items()))
    rows.append(
        (
            "fuzz inputs",
            "pickle",
            f"{fuzz.inputs}",
            f"mutated store files and random bytes, seeded; {outcomes}; {len(fuzz.problems)} escapes, hangs or crashes",
        )
    )
    with timed("fuzz (SQLite)"):
        fuzz = lib.run_fuzz(args.sqlite_fuzz, backend="sqlite")
    problems += [f"fuzz (SQLite): {p}" for p in fuzz.problems]
    outcomes = ", ".join(f"{count} {name}" for name, count in sorted(fuzz.outcomes.items()))
    rows.append(
        (
            "fuzz inputs",
            "SQLite",
            f"{fuzz.inputs}",
            "mutated database files (byte flips, header bytes, truncation, pages zeroed, garbled or copied), "
            f"seeded; load(), agents(), iterations(), get(), len() on each; outcome of load(): {outcomes}; "
            f"{len(fuzz.problems)} escapes, hangs or crashes",
        )
    )
    with timed("huge lengths"):
        huge = lib.check_huge_lengths()
    gaps = [h for h in huge if h["name"] == lib.MEMO_INDEX_PAYLOAD]
    bounded = [
        h
        for h in huge
        if h["name"] != lib.MEMO_INDEX_PAYLOAD
        and h["outcome"] in {"CorruptStoreError", "UnsafePickleError"}
        and h["rss_growth_mb"] < 64
    ]
    problems += [f"huge: {h['name']}: {h['outcome']}" for h in huge if h not in bounded and h not in gaps]
    rows.append(
        (
            "huge declared lengths bounded",
            "pickle",
            f"{len(bounded)} / {len(huge) - len(gaps)}",
            "BINBYTES8/BINUNICODE8/BYTEARRAY8/FRAME of 2**40, LONG4, bytearray(2**29), 200,000-deep nesting: "
            "error, peak RSS growth < 64 MB",
        )
    )
    for gap in gaps:
        rows.append(
            (
                "known gap: memo index",
                "pickle",
                f"{gap['rss_growth_mb']:.0f} MB",
                "a 12-byte pickle with LONG_BINPUT 2**25 makes CPython's C unpickler zero a memo table that size "
                "(not fixed; see tests/test_fuzz_loader.py)",
            )
        )

    for backend, label in (("pickle", "pickle"), ("sqlite", "SQLite")):
        with tempfile.TemporaryDirectory(prefix="crewtrain-writers-") as scratch, timed(f"writers and reader {label}"):
            concurrency = lib.run_writers_and_reader(Path(scratch), writers=8, appends=200, backend=backend)
        problems += [f"concurrency ({label}): {p}" for p in concurrency.problems]
        rows.append(
            (
                "processes x appends",
                label,
                f"{concurrency.writers} x {concurrency.appends}",
                f"while a reader process loaded {concurrency.reader_loads} times without an error or a vanished "
                "record",
            )
        )
        rows.append(
            (
                "records lost",
                label,
                f"{concurrency.writers * concurrency.appends - concurrency.records}",
                f"{concurrency.records} of {concurrency.writers * concurrency.appends} records in the final store",
            )
        )
    with tempfile.TemporaryDirectory(prefix="crewtrain-crewai-") as scratch, timed("beside CrewAI"):
        rows += crewai_checks(Path(scratch), python=args.crewai_python, problems=problems)
    return rows, problems, seconds


def crewai_checks(scratch: Path, *, python: str, problems: list[str]) -> list[Row]:
    """Readers of both files while a real ``crew.train()`` writes them with CrewAI's own handler."""
    import subprocess

    found = subprocess.run(
        [python, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('crewai') is None)"],
        check=False,
    )
    if found.returncode != 0:
        return [("reads beside crew.train()", "pickle", "skipped", f"crewai is not installed for {python}")]
    iterations = 4
    result = crewai_script.reader_check(scratch, iterations=iterations, python=python)
    problems += [f"beside CrewAI: {problem}" for problem in result["problems"]]
    if result["records_seen"] != [3 * iterations * 3] * 2:
        problems.append(f"beside CrewAI: readers saw {result['records_seen']} record fields, not {3 * iterations * 3}")
    return [
        (
            "reads beside crew.train()",
            "pickle",
            f"{result['reads']:,}",
            f"two reader processes (one without crewai: flock on CrewAI's lock file; one through crewai_core's "
            f"lock) loading both files in a loop while a real crew.train() (3 agents x {iterations} iterations, "
            f"scripted LLM and feedback, CrewAI's own handler) wrote them {result['writes']} times",
        ),
        ("wrong reads", "pickle", f"{result['wrong']}", "`{}` or a record field missing after it had been seen"),
        ("read errors", "pickle", f"{result['errors']}", "any exception from load()"),
        (
            "browser refreshes beside crew.train()",
            "pickle",
            f"{result['refreshes']}",
            f"{result['wrong_refreshes']} lost the view or the selected agent",
        ),
    ]


def sqlite_process_checks(
    args: argparse.Namespace, base: Path, zygote: lib.Zygote, problems: list[str], timed: Any
) -> list[Row]:
    """Crash points and I/O faults at SQLite's system calls (strace), and the kill -9 soak, on SQLite."""
    rows: list[Row] = []
    unavailable = lib.strace_available()
    if unavailable is not None:
        rows.append(("crash points tested", "SQLite", "skipped", f"needs strace: {unavailable}"))
        rows.append(("I/O faults injected", "SQLite", "skipped", f"needs strace: {unavailable}"))
    else:
        (base / "sqlite-crash").mkdir()
        with timed("crash points (SQLite)"):
            crash = lib.run_sqlite_crash_points(base / "sqlite-crash", zygote=zygote)
        problems += [f"crash (SQLite): {p}" for p in crash.problems]
        calls = ", ".join(f"{crash.calls[name]} {name}" for name in lib.SQLITE_IO_CALLS)
        rows.append(
            (
                "crash points tested",
                "SQLite",
                f"{crash.crash_points}",
                f"SQLite writes from C, out of reach of Python hooks: strace kills the child (SIGKILL) on entering "
                f"each of the {calls} system calls the same script makes (dying on entering call k+1 is dying "
                f"just after call k); {crash.before} left the state before the operation, {crash.after} the state "
                f"after, {len(crash.problems)} anything else or failed SQLite's integrity check",
            )
        )
        (base / "sqlite-faults").mkdir()
        with timed("faults (SQLite)"):
            faults = lib.run_sqlite_faults(base / "sqlite-faults", zygote=zygote)
        problems += [f"faults (SQLite): {p}" for p in faults.problems]
        rows.append(
            (
                "I/O faults injected",
                "SQLite",
                f"{faults.faults}",
                f"strace makes the k-th pwrite64 fail with EIO or ENOSPC, or the k-th fdatasync with EIO, for every k "
                f"of each of {len(lib.FAULT_WRITES)} kinds of write; "
                f"{faults.outcomes.get('StoreWriteError (write)', 0)} raised `StoreWriteError` and kept the old "
                f"data; {faults.outcomes.get('done (close)', 0)} hit the checkpoint when the handler closed, after "
                f"the write returned, and the new data stayed; {len(faults.recovered)} succeeded with the new data "
                "(EIO on the fsync of the directory after SQLite created its -wal, which SQLite ignores by design); "
                f"{len(faults.problems)} anything else",
            )
        )
    (base / "sqlite-soak").mkdir()
    with timed("kill soak (SQLite)"):
        soak = lib.run_kill_soak(base / "sqlite-soak", zygote=zygote, kills=args.kills, backend="sqlite")
    problems += [f"soak (SQLite): {p}" for p in soak.problems]
    rows.append(
        (
            "kills survived (SIGKILL)",
            "SQLite",
            f"{soak.kills - len(soak.problems)} / {soak.kills}",
            f"appending child killed 0-50 ms into its run; {soak.acknowledged} acknowledged appends checked",
        )
    )
    rows.append(("acknowledged records lost", "SQLite", f"{soak.lost}", "after any of the kills"))
    return rows


def run_model(backend: str, examples: int) -> int:
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    from .test_store_model import MODELS

    run_state_machine_as_test(
        MODELS[backend],
        settings=settings(
            max_examples=examples, stateful_step_count=30, deadline=None, derandomize=True, database=None
        ),
    )
    return examples


def render(rows: list[Row], problems: list[str], seconds: dict[str, float]) -> str:
    import numpy

    lines = [
        "# Reliability",
        "",
        "Figures from the last run of `python -m tests.reliability_report` (the same checks the test suite asserts; "
        "real processes and real files). Re-run it to refresh this file.",
        "",
        f"Run {datetime.date.today().isoformat()} on {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {numpy.__version__}, "
        f"{sum(seconds.values()):.0f} s in all.",
        "",
        "| check | backend | figure | how |",
        "|---|---|---|---|",
        *(f"| {name} | {backend} | {figure} | {how} |" for name, backend, figure, how in rows),
        "",
        f"Problems found in this run: {len(problems)}." if problems else "Problems found in this run: none.",
        *(f"- {problem}" for problem in problems),
        "",
        "## What this means for you",
        "",
        "| guarantee | what it means when you use the store |",
        "|---|---|",
        *(f"| {guarantee} | {meaning} |" for guarantee, meaning in MEANING),
        "",
        "## Where each check lives",
        "",
        "- crash points, kill soak, faults, permissions, writers and a reader: `tests/test_reliability.py` "
        "(parametrized over `STORE_BACKENDS` in `tests/reliability_lib.py`; the SQLite crash points and I/O faults "
        "need `strace` and are skipped, saying why, where it cannot attach)",
        "- model-based test: `tests/test_store_model.py` (one state machine per backend)",
        "- hostile pickles: `tests/hostile_corpus.py` (the corpus), `tests/test_hostile_pickles.py`; inside a "
        "SQLite store (records, trained entries, agent keys): `tests/test_sqlite.py`",
        "- fuzzing and huge lengths: `tests/test_fuzz_loader.py` (pickle files and SQLite databases); optional "
        "coverage-guided fuzzing: `scripts/fuzz_atheris.py`",
        "- permissions of backups and audit logs: `tests/test_backups.py`, `tests/test_audit.py`",
        "- beside a real CrewAI (readers during `crew.train()`, CrewAI appending beside `append`/`batch()`, "
        "CrewAI's own handler tests): `tests/test_crewai_interop.py`, `tests/crewai_script.py`",
        "",
        "What is not injected for SQLite: an EIO or ENOSPC from the kernel is real as SQLite sees it (strace "
        "returns it from the system call), but no real disk is filled and no real device fails; a power cut "
        "(data in the page cache lost) is not simulated for either backend: both fsync before they acknowledge.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "RELIABILITY.md")
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--fuzz", type=int, default=25_000)
    parser.add_argument("--sqlite-fuzz", type=int, default=10_000)
    parser.add_argument("--model-examples", type=int, default=600)
    parser.add_argument("--sqlite-model-examples", type=int, default=300)
    parser.add_argument("--crewai-python", default=sys.executable, help="a Python with crewai installed")
    args = parser.parse_args()
    rows, problems, seconds = run_checks(args)
    args.output.write_text(render(rows, problems, seconds))
    print(f"wrote {args.output} ({len(problems)} problems)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
