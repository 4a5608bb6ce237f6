"""The ``crewtrain-nb`` command, run as a real subprocess on real files."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from crewtrain_nb import CrewTrainingHandler, import_json
from crewtrain_nb.demo import make_training_data, write_demo


class Exploit:
    """Unpickles as ``os.system("true")``: safe loading must refuse it."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, ("true",)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crewtrain_nb", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
        timeout=300,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_demo(tmp_path_factory.mktemp("demo"))


def assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_every_command_has_help() -> None:
    top = run("--help")
    assert top.returncode == 0
    for command in ("info", "show", "export", "plot", "report", "convert", "demo", "quickstart", "runs", "restore-run"):
        assert command in top.stdout
        result = run(command, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: crewtrain-nb " + command in result.stdout


def test_info_lists_kind_agents_and_iterations(demo: dict[str, Path]) -> None:
    result = run("info", str(demo["metrics"]))
    assert result.returncode == 0, result.stderr
    assert "kind:         iterations" in result.stdout
    data = CrewTrainingHandler(demo["metrics"]).load()
    for agent, records in data.items():
        assert f"{len(records):>6} iterations  (0..{max(records)})" in result.stdout
        assert agent in result.stdout
    assert f"{demo['metrics'].stat().st_size:,} bytes" in result.stdout
    trained = run("info", str(demo["trained"]))
    assert "kind:         trained_agents" in trained.stdout


def test_info_describes_a_sqlite_store_without_loading_it(
    demo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    from crewtrain_nb import convert
    from crewtrain_nb.cli import main

    database = tmp_path / "metrics.db"
    convert(demo["metrics"], database)
    assert main(["info", str(demo["metrics"])]) == 0
    from_pickle = capsys.readouterr().out.splitlines()
    request.getfixturevalue("sqlite_reads")  # from here on, reading the whole database fails the test
    assert main(["info", str(database)]) == 0
    from_database = capsys.readouterr().out.splitlines()
    # The same description but for the file's own lines (path, size, last change).
    assert from_database[1] == "kind:         iterations"
    assert from_database[4:] == from_pickle[4:]


def test_show_prints_one_record(demo: dict[str, Path]) -> None:
    data = CrewTrainingHandler(demo["training"]).load()
    agent = list(data)[1]
    result = run("show", str(demo["training"]), "--agent", agent, "--iteration", "2")
    assert result.returncode == 0, result.stderr
    record = data[agent][2]
    assert record["human_feedback"] in result.stdout
    assert record["initial_output"] in result.stdout
    metrics = run("show", str(demo["metrics"]), "--agent", "coder", "--iteration", "3")
    assert "metrics.f1:" in metrics.stdout and "weights: shape (8,)" in metrics.stdout


def test_show_takes_the_short_id_the_browser_and_report_print(demo: dict[str, Path]) -> None:
    data = CrewTrainingHandler(demo["training"]).load()
    agent = list(data)[2]
    result = run("show", str(demo["training"]), "--agent", agent[:8], "--iteration", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"agent {agent} · iteration 1")
    assert data[agent][1]["human_feedback"] in result.stdout


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_export_csv_reads_back(demo: dict[str, Path], tmp_path: Path, layout: str) -> None:
    out = tmp_path / f"metrics-{layout}.csv"
    result = run("export", str(demo["metrics"]), "-o", str(out), "--layout", layout)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    frame = pd.read_csv(out)
    records = sum(len(r) for r in CrewTrainingHandler(demo["metrics"]).load().values())
    if layout == "wide":
        assert len(frame) == records and "metrics.f1" in frame.columns
    else:
        assert list(frame.columns) == ["agent", "iteration", "key", "value"]


def test_export_json_and_parquet(demo: dict[str, Path], tmp_path: Path) -> None:
    assert run("export", str(demo["training"]), "-o", str(tmp_path / "t.json")).returncode == 0
    assert import_json(tmp_path / "t.json") == CrewTrainingHandler(demo["training"]).load()
    assert run("export", str(demo["metrics"]), "-o", str(tmp_path / "m.parquet")).returncode == 0
    parquet = pd.read_parquet(tmp_path / "m.parquet")
    data = CrewTrainingHandler(demo["metrics"]).load()
    assert len(parquet) == sum(len(records) for records in data.values())
    row = parquet[(parquet["agent"] == "coder") & (parquet["iteration"] == 4)]
    assert row["loss"].item() == data["coder"][4]["loss"]


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_plot_writes_an_image(demo: dict[str, Path], tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"curves{suffix}"
    result = run("plot", str(demo["metrics"]), "-o", str(out), "--metric", "loss", "--smoothing", "0.5", "--logy")
    assert result.returncode == 0, result.stderr
    head = out.read_bytes()[:8]
    assert {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}[suffix] in head


def test_report_is_self_contained(demo: dict[str, Path], tmp_path: Path) -> None:
    names = tmp_path / "names.json"
    training = CrewTrainingHandler(demo["training"]).load()
    names.write_text(json.dumps({agent: f"Role {n}" for n, agent in enumerate(training)}))
    out = tmp_path / "report.html"
    result = run(
        "report", str(demo["training"]), "--trained", str(demo["trained"]), "--agent-names", str(names), "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    for section in ("id='summary'", "id='curves'", "id='feedback'", "id='trained'"):
        assert section in text
    assert "Role 1 · " in text
    assert "<svg" in text and "src='http" not in text and 'src="http' not in text


def test_demo_writes_the_stores(tmp_path: Path) -> None:
    result = run("demo", str(tmp_path / "d"))
    assert result.returncode == 0
    for name in ("training_data.pkl", "trained_agents_data.pkl", "metrics.pkl"):
        assert (tmp_path / "d" / name).exists()
        assert f"wrote {tmp_path / 'd' / name}" in result.stdout


def test_quickstart_is_the_main_job(tmp_path: Path) -> None:
    result = run("quickstart", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    for name in ("metrics.csv", "training_curves.png", "report.html", "feedback.png", "quality.png"):
        path = tmp_path / "out" / name
        assert path.stat().st_size > 1000, name
        assert name in result.stdout
    assert len(pd.read_csv(tmp_path / "out" / "metrics.csv")) == 180


@pytest.mark.parametrize(
    ("arguments", "needles"),
    [
        (["info", "missing.pkl"], ["missing.pkl", "no such file"]),
        (["show", "{dir}"], ["is a directory"]),
        (["show", "{corrupt}"], ["corrupt.pkl", "not a readable pickle"]),
        (["info", "{unsafe}"], ["unsafe.pkl", "refused to load global posix.system", "--trusted"]),
        (["show", "{metrics}", "--agent", "ghost"], ["no agent 'ghost' in", "its agents are", "planner"]),
        (["show", "{metrics}", "--agent", "coder", "--iteration", "999"], ["no iteration 999"]),
        (["plot", "{metrics}", "-o", "{dir}/x.png", "--metric", "nope"], ["nope", "loss"]),
        (["plot", "{metrics}", "-o", "{dir}/x.gif"], ["unknown image type .gif"]),
        (["export", "{metrics}", "-o", "{dir}/x.xlsx"], ["unknown output type .xlsx"]),
        (["info", "{notastore}"], ["notastore.pkl"]),
        (["convert", "missing.pkl", "{dir}/x.db"], ["missing.pkl", "no such file"]),
        (["convert", "{metrics}", "{metrics}"], ["same file"]),
        (["convert", "{notastore}", "{dir}/x.db"], ["x.db", "not a list", ".pkl"]),
        (["convert", "{unsafe}", "{dir}/x.db"], ["unsafe.pkl", "refused to load global posix.system"]),
        (["convert", "{corrupt}", "{dir}/x.db"], ["corrupt.pkl", "not a readable pickle"]),
        (["convert", "{notadb}", "{dir}/x.pkl"], ["notadb.db", "not a readable SQLite store"]),
        (["convert", "{metrics}", "{existing}"], ["existing.db: already exists", "pass --overwrite to replace"]),
        (["show", "{notadb}"], ["notadb.db", "not a readable SQLite store"]),
    ],
)
def test_bad_input_is_one_clear_line(
    demo: dict[str, Path], tmp_path: Path, arguments: list[str], needles: list[str]
) -> None:
    (tmp_path / "corrupt.pkl").write_bytes(pickle.dumps({"a": {0: {}}})[:-3])
    (tmp_path / "unsafe.pkl").write_bytes(pickle.dumps({"agent": {0: Exploit()}}, protocol=4))
    (tmp_path / "notastore.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    (tmp_path / "notadb.db").write_bytes(b"plain text, not SQLite" * 10)
    CrewTrainingHandler(tmp_path / "existing.db").append(0, "keep", {"x": 1})
    values: dict[str, Any] = {
        "dir": tmp_path,
        "corrupt": tmp_path / "corrupt.pkl",
        "unsafe": tmp_path / "unsafe.pkl",
        "metrics": demo["metrics"],
        "notastore": tmp_path / "notastore.pkl",
        "notadb": tmp_path / "notadb.db",
        "existing": tmp_path / "existing.db",
    }
    result = run(*[argument.format(**values) for argument in arguments], cwd=tmp_path)
    assert_clean_error(result, *needles)
    assert CrewTrainingHandler(tmp_path / "existing.db").load() == {"keep": {0: {"x": 1}}}
    assert not (tmp_path / "x.db").exists() or CrewTrainingHandler(tmp_path / "x.db").load() == {}


def test_convert_round_trip_and_the_other_commands_read_sqlite(demo: dict[str, Path], tmp_path: Path) -> None:
    database = tmp_path / "training_data.db"
    result = run("convert", str(demo["training"]), str(database))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {database}"
    assert run("convert", str(database), str(tmp_path / "back.pkl")).returncode == 0
    with open(demo["training"], "rb") as original, open(tmp_path / "back.pkl", "rb") as back:
        assert pickle.load(back) == pickle.load(original)
    again = run("convert", str(demo["metrics"]), str(database), "--overwrite")
    assert again.returncode == 0, again.stderr
    assert CrewTrainingHandler(database).load() == CrewTrainingHandler(demo["metrics"]).load()
    info = run("info", str(database))
    assert info.returncode == 0, info.stderr
    assert "kind:         iterations" in info.stdout and "60 iterations  (0..59)" in info.stdout
    show = run("show", str(database), "--agent", "coder", "--iteration", "7")
    assert show.returncode == 0, show.stderr
    assert "agent coder · iteration 7" in show.stdout and "loss:" in show.stdout


def test_runs_and_restore_run(tmp_path: Path) -> None:
    from crewtrain_nb.store import RunArchive

    assert "no training runs kept" in run("runs", str(tmp_path)).stdout
    live = tmp_path / "training_data.pkl"
    CrewTrainingHandler(live).save(make_training_data(agents=2, iterations=2, seed=3))
    archive = RunArchive(tmp_path)
    first = archive.start({"outcome": "failed", "n_iterations": 2, "error": "ValueError: evaluator"})
    archive.keep(first, [live])
    CrewTrainingHandler(live).save({})  # what CrewAI's clear() leaves

    listing = run("runs", str(tmp_path))
    assert listing.returncode == 0
    assert "failed" in listing.stdout and "ValueError: evaluator" in listing.stdout

    restored = run("restore-run", "1", str(tmp_path))
    assert restored.returncode == 0, restored.stderr
    assert "restored run 1 (training_data.pkl)" in restored.stdout and "kept as run 2" in restored.stdout
    assert CrewTrainingHandler(live).load() == make_training_data(agents=2, iterations=2, seed=3)
    assert_clean_error(run("restore-run", "9", str(tmp_path)), "no run 9", "crewtrain-nb runs")
    assert_clean_error(run("runs", str(tmp_path / "nowhere")), "no such directory")


# -- CrewAI insight: check, prompt, diff -------------------------------------------------------------


@pytest.fixture(scope="module")
def crewai_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    from crewtrain_nb.demo import write_crewai_run

    root = tmp_path_factory.mktemp("crewai")
    return {scenario: write_crewai_run(root / scenario, scenario) for scenario in ("paraphrased", "interrupted")}


def test_insight_commands_have_help() -> None:
    for command in ("check", "prompt", "diff"):
        assert command in run("--help").stdout
        result = run(command, "--help")
        assert result.returncode == 0 and "usage: crewtrain-nb " + command in result.stdout


def test_check_exit_status_says_clean_findings_or_unreadable(
    crewai_runs: dict[str, dict[str, Path]], tmp_path: Path
) -> None:
    from crewtrain_nb import check_training

    clean = crewai_runs["paraphrased"]
    result = run("check", str(clean["training"]), "--trained", str(clean["trained"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{clean['training']}: no findings (3 agents, 9 records checked)"

    broken = crewai_runs["interrupted"]
    result = run("check", str(broken["training"]), "--trained", str(broken["trained"]))
    assert result.returncode == 1, result.stderr
    findings = check_training(broken["training"], broken["trained"])
    assert f"{broken['training']}: {len(findings)} findings" in result.stdout
    for finding in findings:
        head = finding.code + (f"  agent {finding.agent}" if finding.agent else "")
        head += f"  iteration {finding.iteration}" if finding.iteration is not None else ""
        assert f"\n{head}\n  {finding.message}\n  what to do: {finding.what_to_do}\n" in result.stdout + "\n"

    garbage = tmp_path / "training_data.pkl"
    garbage.write_bytes(b"\x80\x04\x95 truncated")
    assert_clean_error(run("check", str(garbage)), str(garbage))
    assert_clean_error(run("check", str(tmp_path / "none.pkl")), "no such file")
    assert_clean_error(run("check", str(clean["trained"])), "this is a trained-agents file")


def test_prompt_prints_what_crewai_appends(crewai_runs: dict[str, dict[str, Path]], tmp_path: Path) -> None:
    from crewtrain_nb import prompt_preview

    trained = crewai_runs["paraphrased"]["trained"]
    preview = prompt_preview(trained)
    result = run("prompt", str(trained))
    assert result.returncode == 0, result.stderr
    for role, text in preview.items():
        assert f"\n--- {role} ---\n{text.lstrip()}\n" in result.stdout
    exact = run("prompt", str(trained), "--role", "Fact Checker")
    assert exact.returncode == 0 and exact.stdout == preview["Fact Checker"] + "\n"
    assert_clean_error(run("prompt", str(trained), "--role", "Checker"), "no role 'Checker'", "'Fact Checker'")

    # Without TRAINED: the file a crew here would read, by CrewAI's rule.
    shutil.copy(trained, tmp_path / "trained_agents_data.pkl")
    here = run("prompt", "--role", "Report Writer", cwd=tmp_path)
    assert here.returncode == 0 and here.stdout == preview["Report Writer"] + "\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run("prompt", cwd=empty), str(empty / "trained_agents_data.pkl"), "--explain")
    explained = run("prompt", "--explain", cwd=empty)
    assert explained.returncode == 0, explained.stderr
    assert "$CREWAI_TRAINED_AGENTS_FILE  (CrewAI 1.14.4+): not set" in explained.stdout
    assert f"Here a crew would read: {empty / 'trained_agents_data.pkl'}  (rule 3, missing" in explained.stdout
    assert "Before CrewAI 1.14.4 only rule 3 applies" in explained.stdout


def test_prompt_follows_the_environment_variable(crewai_runs: dict[str, dict[str, Path]], tmp_path: Path) -> None:
    shutil.copy(crewai_runs["paraphrased"]["trained"], tmp_path / "best.pkl")
    result = subprocess.run(
        [sys.executable, "-m", "crewtrain_nb", "prompt", "--explain"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "CREWAI_TRAINED_AGENTS_FILE": "best"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"Here a crew would read: {tmp_path / 'best.pkl'}  (rule 2, exists)" in result.stdout
    assert "--- Market Researcher ---" in result.stdout


def test_diff_two_trained_files(crewai_runs: dict[str, dict[str, Path]], tmp_path: Path) -> None:
    from crewtrain_nb import edit_suggestions

    before = crewai_runs["paraphrased"]["trained"]
    after = tmp_path / "after.pkl"
    shutil.copy(before, after)
    entry = CrewTrainingHandler(before).load()["Fact Checker"]
    old, quality = entry["suggestions"], f"{entry['quality']:.1f}"
    edit_suggestions(after, "Fact Checker", [*old[1:], "Say which source settled each check."])
    result = run("diff", str(before), str(after))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["role", "in", "before", "after", "delta", "added", "removed", "kept"]
    checker = next(line for line in lines if line.startswith("Fact Checker "))
    assert checker.split() == ["Fact", "Checker", "both", quality, quality, "+0.0", "1", "1", "2"]
    assert f"Fact Checker:\n  - {old[0]}\n  + Say which source settled each check." in result.stdout
    assert_clean_error(run("diff", str(before), str(crewai_runs["paraphrased"]["training"])), "this is training data")


# -- CrewAI files explained ---------------------------------------------------------------------


def kind_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if line.startswith("kind:")).split(None, 1)[1]


def test_info_explains_empty_and_truncated_files(tmp_path: Path) -> None:
    failed = CrewTrainingHandler(tmp_path / "training_data.pkl")
    failed.save({})  # CrewAI writes {} to both files when train() fails (clear() of a missing file creates nothing)
    truncated = tmp_path / "trained_agents_data.pkl"
    with open(truncated, "wb"):  # CrewAI's save() opens with "wb", then writes: a reader can see 0 bytes
        pass
    assert kind_line(run("info", str(failed.file_path))) == (
        "empty ({}: CrewAI writes {} to both files when train() fails, and when it starts before the first feedback)"
    )
    assert kind_line(run("info", str(truncated))) == (
        "empty (0 bytes: CrewAI truncates the file while it writes; if no training is running, the file is damaged)"
    )


def test_info_counts_statuses_per_agent_and_explains_them(tmp_path: Path) -> None:
    from crewtrain_nb.crewai import explain_statuses, feedback_status

    data = make_training_data(agents=3, iterations=6, seed=1, empty_feedback=0.3)
    handler = CrewTrainingHandler(tmp_path / "training_data.pkl")
    handler.save(data)
    result = run("info", str(handler.file_path))
    assert result.returncode == 0, result.stderr
    labels = {"complete": "complete", "no_improved_output": "no improved output", "no_feedback": "empty feedback"}
    seen = set()
    for agent, records in data.items():
        statuses = [feedback_status(record) for record in records.values()]
        seen.update(statuses)
        counts = " · ".join(f"{statuses.count(s)} {label}" for s, label in labels.items() if s in statuses)
        assert f"{agent}       6 iterations  (0..5)  {counts}" in result.stdout
    assert seen == set(labels)  # the store has every outcome
    lines = explain_statuses(record for records in data.values() for record in records.values())
    assert [line for line in result.stdout.splitlines() if line.startswith("  * ")] == [f"  * {x}" for x in lines]
    assert "the run was interrupted" in result.stdout and "CrewAI's evaluator rejects this record" in result.stdout
    one = CrewTrainingHandler(tmp_path / "one.pkl")
    one.save(make_training_data(agents=2, iterations=1, seed=4))
    single = run("info", str(one.file_path))
    assert single.stdout.count("     1 iteration  (0..0)") == 2 and "1 iterations" not in single.stdout


def test_info_and_show_on_a_crewai_086_file(training_store_086: CrewTrainingHandler) -> None:
    data = training_store_086.load()
    info = run("info", training_store_086.file_path)
    assert info.returncode == 0, info.stderr
    for agent, records in data.items():
        assert f"{agent} ({records[0]['agent_role']})" in info.stdout
    assert "  * no improved output: CrewAI 0.86 does not record the improved output" in info.stdout
    assert "interrupted" not in info.stdout
    agent = next(iter(data))
    empty = next(i for i, record in data[agent].items() if record["human_feedback"] == "")
    show = run("show", training_store_086.file_path, "--agent", agent, "--iteration", str(empty))
    assert show.returncode == 0, show.stderr
    blocks = show.stdout.split("\n[")
    assert blocks[2] == "human_feedback]\n(empty) CrewAI's evaluator rejects this record\n"
    assert blocks[3].startswith("improved_output]\n(missing) CrewAI 0.86 does not record the improved output")
    assert f"agent_role: {data[agent][empty]['agent_role']}" in show.stdout


def test_show_prints_every_suggestion_of_a_trained_agent(demo: dict[str, Path]) -> None:
    trained = CrewTrainingHandler(demo["trained"]).load()
    role = list(trained)[1]
    result = run("show", str(demo["trained"]), "--agent", role)
    assert result.returncode == 0, result.stderr
    assert "not numeric" not in result.stdout
    suggestions = trained[role]["suggestions"]
    assert f"  suggestions ({len(suggestions)}):\n" + "".join(f"    - {s}\n" for s in suggestions) in result.stdout
    assert f"  quality: {trained[role]['quality']}" in result.stdout
    assert f"  final_summary: {trained[role]['final_summary']}" in result.stdout


@pytest.mark.parametrize(("store", "needle"), [("training", "<!-- initial output -->"), ("trained", "<!-- quality")])
def test_plot_draws_crewai_files(demo: dict[str, Path], tmp_path: Path, store: str, needle: str) -> None:
    out = tmp_path / f"{store}.svg"
    result = run("plot", str(demo[store]), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}"
    assert needle in out.read_text(encoding="utf-8")  # the feedback plot's legend, the quality plot's axis


def test_plot_metric_options_on_a_crewai_file_and_an_empty_file(demo: dict[str, Path], tmp_path: Path) -> None:
    result = run("plot", str(demo["training"]), "-o", str(tmp_path / "x.png"), "--metric", "loss", "--logy")
    assert_clean_error(result, "--metric and --logy: for metric logs only", "holds CrewAI feedback")
    failed = CrewTrainingHandler(tmp_path / "training_data.pkl")
    failed.save({})
    result = run("plot", failed.file_path, "-o", str(tmp_path / "x.png"))
    assert_clean_error(result, "the store is empty ({}: CrewAI writes {}", "nothing to plot")
    assert not (tmp_path / "x.png").exists()


def test_report_refuses_swapped_files_saying_which_is_which(demo: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    swapped = run("report", str(demo["trained"]), "--trained", str(demo["training"]), "-o", str(out))
    assert_clean_error(
        swapped,
        "the two files are swapped",
        f"give {demo['training']} as the source and {demo['trained']} as --trained",
    )
    alone = run("report", str(demo["trained"]), "-o", str(out))
    assert_clean_error(alone, f"{demo['trained']} holds trained agents", "this file as --trained")
    wrong = run("report", str(demo["training"]), "--trained", str(demo["metrics"]), "-o", str(out))
    assert_clean_error(wrong, f"{demo['metrics']}, given as --trained, holds agent -> iteration records")
    assert not out.exists()


# -- bad input: keys beyond int64, CLI words, errno text, --trusted, agents by role ----------------------

#: A module of the user's own, beside the pickle that names its class. Its objects pickle as a call of the
#: class (REDUCE), which safe loading refuses (a plain instance would load as a placeholder).
USER_MODULE = (
    "class Thing:\n"
    "    def __init__(self, size=3):\n        self.size = size\n"
    "    def __reduce__(self):\n        return (Thing, (self.size,))\n"
)


def run_installed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The command as its console script runs it: the current directory is not on ``sys.path``."""
    script = cwd.parent / f"{cwd.name}-bin" / "crewtrain-nb"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import sys\nfrom crewtrain_nb.cli import main\nsys.exit(main())\n")
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
        timeout=300,
    )


@pytest.fixture
def user_class_store(tmp_path: Path) -> Path:
    """``project/objects.pkl``, whose records hold an instance of ``ctn_user_things.Thing`` from ``project/``."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "ctn_user_things.py").write_text(USER_MODULE)
    writer = (
        "import pickle, ctn_user_things\n"
        "pickle.dump({'a': {0: {'loss': 1.0, 'thing': ctn_user_things.Thing()}}}, open('objects.pkl', 'wb'))"
    )
    subprocess.run([sys.executable, "-c", writer], cwd=project, check=True, timeout=120)
    return project / "objects.pkl"


def test_trusted_imports_classes_from_the_current_directory_as_python_m_does(user_class_store: Path) -> None:
    project = user_class_store.parent
    result = run_installed("info", user_class_store.name, "--trusted", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "kind:         iterations" in result.stdout
    refused = run_installed("info", user_class_store.name, cwd=project)
    assert_clean_error(refused, "refused to load", "ctn_user_things.Thing", "open it with --trusted")
    assert "trusted=True" not in refused.stderr


def test_trusted_says_which_module_to_install_when_a_class_cannot_be_imported(
    user_class_store: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = run_installed("info", str(user_class_store), "--trusted", cwd=elsewhere)
    assert_clean_error(
        missing,
        str(user_class_store),
        "needs ctn_user_things.Thing, but the module ctn_user_things cannot be imported",
        "Install the package that provides 'ctn_user_things'",
        "run from the folder that holds ctn_user_things.py",
    )
    (elsewhere / "ctn_user_things.py").write_text("class Other:\n    pass\n")  # another version of the module
    renamed = run_installed("info", str(user_class_store), "--trusted", cwd=elsewhere)
    module = elsewhere / "ctn_user_things.py"
    assert_clean_error(renamed, f"the module ctn_user_things (from {module}) defines no Thing")


@pytest.mark.parametrize("command", ["info", "show", "export", "plot", "report", "convert", "check", "prompt", "diff"])
def test_every_command_that_opens_a_store_has_trusted_and_says_what_it_imports(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert "--trusted" in help_text and "modules in the current directory (as python -m does)" in help_text


@pytest.mark.parametrize(
    ("arguments", "needles"),
    [
        (["report", "{metrics}", "-o", "{dir}"], ["{dir}: is a directory; give a file name"]),
        (["plot", "{metrics}", "-o", "{dir}/nowhere/x.png"], ["{dir}/nowhere/x.png: no such file or directory"]),
        (["report", "{metrics}", "-o", "{dir}/nowhere/r.html"], ["{dir}/nowhere/r.html: no such file or directory"]),
    ],
)
def test_errno_text_becomes_a_sentence_naming_the_path(
    demo: dict[str, Path], tmp_path: Path, arguments: list[str], needles: list[str]
) -> None:
    values = {"dir": tmp_path, "metrics": demo["metrics"]}
    result = run(*[argument.format(**values) for argument in arguments], cwd=tmp_path)
    assert_clean_error(result, *[needle.format(**values) for needle in needles])
    assert "[Errno" not in result.stderr


@pytest.mark.parametrize(
    "arguments",
    [["info"], ["export", "-o", "{dir}/x.csv"], ["plot", "-o", "{dir}/x.png"], ["report", "-o", "{dir}/x.html"]],
    ids=["info", "export", "plot", "report"],
)
def test_an_iteration_key_beyond_int64_is_one_clear_line(
    beyond_int64_stores: dict[str, Path], tmp_path: Path, arguments: list[str]
) -> None:
    path = beyond_int64_stores["metrics"]
    agent = next(iter(pickle.loads(path.read_bytes())))
    command, *options = (argument.format(dir=tmp_path) for argument in arguments)
    result = run(command, str(path), *options, cwd=tmp_path)
    assert_clean_error(result, str(path), f"agent '{agent}', iteration {10**30}", "beyond what an int64 holds")
    assert not list(tmp_path.glob("x.*"))


def test_show_takes_a_role_or_an_id_prefix_and_prints_the_full_id(
    tmp_path: Path, crewai_086_data: dict[str, Any]
) -> None:
    researcher, writer, other_writer = crewai_086_data
    path = tmp_path / "training_data.pkl"
    CrewTrainingHandler(path).save(crewai_086_data)
    by_role = run("show", str(path), "--agent", "Researcher")
    assert by_role.returncode == 0, by_role.stderr
    assert by_role.stdout.startswith(f"agent {researcher} · iteration 0")
    by_prefix = run("show", str(path), "--agent", writer[:6], "--iteration", "2")
    assert by_prefix.stdout.startswith(f"agent {writer} · iteration 2"), by_prefix.stderr
    ambiguous = run("show", str(path), "--agent", "Writer")
    assert_clean_error(ambiguous, "'Writer' is ambiguous", writer, other_writer)


def test_commands_label_agents_with_roles_from_the_trained_file_beside_or_given(tmp_path: Path) -> None:
    from crewtrain_nb.demo import make_crewai_run, write_crewai_run

    run_ = make_crewai_run("paraphrased")
    paths = write_crewai_run(tmp_path / "run", "paraphrased")
    agents = {agent: info["role"] for agent, info in run_["agents"].items()}
    info = run("info", str(paths["training"]))  # trained_agents_data.pkl beside it is used
    assert info.returncode == 0, info.stderr
    assert f"trained:      {paths['trained']}" in info.stdout
    for agent, role in agents.items():
        assert f"{agent} ({role}, inferred)" in info.stdout
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(paths["training"], alone / "training_data.pkl")
    bare = run("info", str(alone / "training_data.pkl"))
    assert bare.returncode == 0 and "trained:" not in bare.stdout and "inferred" not in bare.stdout
    given = run("info", str(alone / "training_data.pkl"), "--trained", str(paths["trained"]))
    assert all(f"{agent} ({role}, inferred)" in given.stdout for agent, role in agents.items()), given.stdout
    writer = next(agent for agent, role in agents.items() if role == "Report Writer")
    show = run("show", str(paths["training"]), "--agent", "Report Writer", "--iteration", "1")
    assert show.returncode == 0, show.stderr
    assert show.stdout.startswith(f"agent {writer} · iteration 1\nlabel: Report Writer · {writer[:8]} (inferred)")
    image = tmp_path / "f.png"
    plot = run("plot", str(alone / "training_data.pkl"), "--trained", str(paths["trained"]), "-o", str(image))
    assert plot.returncode == 0 and image.stat().st_size > 10_000, plot.stderr
    out = tmp_path / "report.html"
    report = run("report", str(paths["training"]), "-o", str(out))
    assert report.returncode == 0, report.stderr
    page = out.read_text(encoding="utf-8")
    assert f"Report Writer · {writer[:8]} (inferred)" in page and "id='findings'" in page
    write_demo(tmp_path / "demo")  # metrics.pkl beside trained_agents_data.pkl: that file is not the log's
    metrics = run("report", str(tmp_path / "demo" / "metrics.pkl"), "-o", str(out))
    assert metrics.returncode == 0, metrics.stderr
    assert "id='trained'" not in out.read_text(encoding="utf-8")


def test_report_compare_adds_the_comparison(tmp_path: Path) -> None:
    from crewtrain_nb.demo import write_crewai_run

    paths = write_crewai_run(tmp_path / "run", "paraphrased")
    stale = write_crewai_run(tmp_path / "stale", "stale_trained")
    out = tmp_path / "report.html"
    result = run("report", str(paths["training"]), "--compare", str(stale["trained"]), "-o", str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    assert "<section id='compare'>" in page and "Data Analyst" in page and f"{stale['trained']} only" in page
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(paths["training"], alone / "training_data.pkl")
    refused = run("report", str(alone / "training_data.pkl"), "--compare", str(stale["trained"]), "-o", str(out))
    assert refused.returncode == 2 and "give --trained too" in refused.stderr and "Traceback" not in refused.stderr


def test_agent_names_matching_no_agent_warn_in_one_line(demo: dict[str, Path], tmp_path: Path) -> None:
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"my-own-agent-id": "Writer"}), encoding="utf-8")
    first = next(iter(CrewTrainingHandler(demo["training"]).load()))
    result = run("report", str(demo["training"]), "--agent-names", str(names), "-o", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("crewtrain-nb report: warning: agent_names matches no agent id")
    assert f"'{first}'" in result.stderr and len(result.stderr.splitlines()) == 1 and ".py:" not in result.stderr
