"""Write the example notebooks in ``notebooks/`` and execute them, so they are committed with outputs.

Run: ``.venv/bin/python scripts/build_notebooks.py [NAME ...]``

The test suite runs them again with nbval and compares the stored text
outputs, so every cell prints only deterministic things: seeded demo data, no
temporary paths, no timings without a sanitizer pattern.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

Cell = tuple[str, str]  # ("md" | "code", source)

QUICKSTART: list[Cell] = [
    ("md", "# crewtrain_nb in five minutes\n\nOpen a store, flatten it to a DataFrame, plot the training "
     "curves, export to CSV, and browse it. The demo store is made here, seeded, so the notebook runs anywhere."),
    ("code", "%matplotlib inline\nimport tempfile\nfrom pathlib import Path\n\nimport pandas as pd\n\n"
     "from crewtrain_nb import CrewTrainingHandler, TrainingBrowser, export_csv, plot_metrics, to_frame\n"
     "from crewtrain_nb.demo import write_demo\n\n"
     "workdir = Path(tempfile.mkdtemp())\npaths = write_demo(workdir)\nsorted(p.name for p in paths.values())"),
    ("md", "## Open a store\n\n`CrewTrainingHandler` is a drop-in for CrewAI's: same `load`/`append`/`save`, "
     "but atomic, locked, cached and safe to open."),
    ("code", "store = CrewTrainingHandler(paths[\"metrics\"])\ndata = store.load()\n"
     "{agent: len(records) for agent, records in data.items()}"),
    ("md", "## One row per agent and iteration"),
    ("code", "frame = to_frame(store)\nframe.head()"),
    ("code", "frame.attrs[\"kind\"], frame.attrs[\"agents\"], frame.attrs[\"records\"]"),
    ("md", "## Training curves\n\nOne panel per metric, one colour per agent; `smoothing` is TensorBoard's "
     "debiased EMA, with the raw curve kept faint behind it."),
    ("code", "figure = plot_metrics(store, [\"loss\", \"accuracy\", \"metrics.f1\"], smoothing=0.6)\nfigure"),
    ("md", "## Export to CSV"),
    ("code", "csv_path = workdir / \"metrics.csv\"\nexport_csv(store, csv_path)\n"
     "pd.read_csv(csv_path).shape"),
    ("md", "## Browse agents and iterations\n\nPick an agent, slide through iterations, filter by text. "
     "(The widget needs a live kernel; on a static page you see its text form.)"),
    ("code", "browser = TrainingBrowser(store)\nbrowser.select(\"coder\", 10)\n"
     "browser.wait_for_curves()  # curves are drawn in the background; wait, so the saved notebook has them\n"
     "browser"),
]

CREWAI: list[Cell] = [
    ("md", "# CrewAI feedback: what the trainer said, and what changed\n\n`crewai train` writes "
     "`training_data.pkl` (keyed by agent uuid, then iteration) and `trained_agents_data.pkl` (keyed by role). "
     "The uuids belong to a copy of the crew, so roles are linked by hand with `agent_names`."),
    ("code", "%matplotlib inline\nimport tempfile\nfrom pathlib import Path\n\n"
     "from crewtrain_nb import (\n"
     "    CrewTrainingHandler,\n"
     "    TrainingBrowser,\n"
     "    feedback_frame,\n"
     "    plot_feedback,\n"
     "    plot_quality,\n"
     "    trained_agents_frame,\n"
     ")\n"
     "from crewtrain_nb.demo import demo_agent_names, write_demo\n\n"
     "paths = write_demo(Path(tempfile.mkdtemp()))\ntraining = CrewTrainingHandler(paths[\"training\"])\n"
     "trained = CrewTrainingHandler(paths[\"trained\"])\nnames = demo_agent_names(training.load())\nnames"),
    ("md", "## Feedback per iteration\n\nRecords without `improved_output` are normal: feedback was given "
     "but the agent did not answer again."),
    ("code", "feedback = feedback_frame(training)\n"
     "feedback[[\"agent\", \"iteration\", \"status\", \"initial_chars\", \"improved_chars\", \"similarity\"]].head(8)"),
    ("code", "feedback[\"status\"].value_counts()"),
    ("md", "## What changed after the feedback\n\nA word-level diff of `initial_output` → `improved_output`: "
     "deletions struck through, insertions underlined. Record text is escaped, never run as markup."),
    ("code", "from IPython.display import HTML\n\nfrom crewtrain_nb.render import record_html\n\n"
     "complete = feedback[feedback[\"status\"] == \"complete\"].iloc[0]\n"
     "record = training.load()[complete[\"agent\"]][complete[\"iteration\"]]\n"
     "HTML(record_html(record, title=f\"{names[complete['agent']]} · iteration {complete['iteration']}\"))"),
    ("md", "## Output lengths and similarity"),
    ("code", "plot_feedback(training)"),
    ("md", "## Quality of the trained agents"),
    ("code", "trained_agents_frame(trained)[[\"agent\", \"quality\", \"n_suggestions\"]]"),
    ("code", "plot_quality(trained).figure"),
    ("md", "## Browse with role names and word diffs"),
    ("code", "browser = TrainingBrowser(training, trained=trained, agent_names=names)\n"
     "browser.wait_for_curves()  # curves are drawn in the background; wait, so the saved notebook has them\n"
     "browser"),
]

CURVES: list[Cell] = [
    ("md", "# Training curves from records logged with `append`\n\nThe way people log per-iteration metrics: "
     "one `append` per step. `batch()` makes it one write."),
    ("code", "%matplotlib inline\nimport math\nimport random\nimport tempfile\nfrom pathlib import Path\n\n"
     "from crewtrain_nb import CrewTrainingHandler, metrics_frame, plot_metrics, runs_frame\n\n"
     "workdir = Path(tempfile.mkdtemp())\n\n\n"
     "def train(path, *, rate, seed):\n"
     "    rng = random.Random(seed)\n"
     "    store = CrewTrainingHandler(path)\n"
     "    with store.batch():\n"
     "        for step in range(300):\n"
     "            # a decaying loss with multiplicative noise: always > 0, like a real one\n"
     "            loss = (2 * math.exp(-rate * step) + 0.05) * math.exp(rng.gauss(0, 0.15))\n"
     "            store.append(step, \"agent\", {\"loss\": loss, \"metrics\": {\"f1\": 1 / (1 + loss)}})\n"
     "    return store\n\n\n"
     "baseline = train(workdir / \"baseline.pkl\", rate=0.01, seed=1)\n"
     "tuned = train(workdir / \"tuned.pkl\", rate=0.03, seed=2)\n"
     "metrics_frame(tuned).groupby(\"metric\")[\"value\"].describe().round(3)"),
    ("md", "## Smoothing and best points\n\n`smoothing=0.9` is TensorBoard's slider; `best=\"min\"` marks "
     "each line's lowest point."),
    ("code", "plot_metrics(tuned, [\"loss\"], smoothing=0.9, best=\"min\")"),
    ("md", "## Comparing two runs"),
    ("code", "runs = runs_frame({\"baseline\": baseline, \"tuned\": tuned})\n"
     "runs.groupby(\"run\")[\"loss\"].agg([\"min\", \"last\"]).round(3)"),
    ("code", "import pandas as pd\n\n"
     "runs_by_name = {\"baseline\": baseline, \"tuned\": tuned}\n"
     "both = pd.concat({run: metrics_frame(store) for run, store in runs_by_name.items()}, names=[\"run\"])\n"
     "both = both.reset_index(level=0)\n"
     "both[\"agent\"] = both[\"run\"]  # one line per run\n"
     "plot_metrics(both.drop(columns=\"run\"), [\"loss\", \"metrics.f1\"], smoothing=0.8)"),
]

LARGE: list[Cell] = [
    ("md", "# Large stores: SQLite, lazy access, timings\n\nA pickle store is read and rewritten whole. Name "
     "the store `.db` and the same handler keeps it in SQLite: an append costs the same at any size, and one "
     "agent or one record is read without loading the rest."),
    ("code", "%matplotlib inline\nimport math\nimport random\nimport tempfile\nimport time\n"
     "from pathlib import Path\n\n"
     "from crewtrain_nb import CrewTrainingHandler, TrainingBrowser, convert, plot_metrics, to_frame\n\n"
     "workdir = Path(tempfile.mkdtemp())\nstore = CrewTrainingHandler(workdir / \"run.db\")\n"
     "type(store).__name__, isinstance(store, CrewTrainingHandler)"),
    ("md", "## 100,000 records: 20 agents × 5,000 iterations\n\n`batch()` makes the whole loop one transaction."),
    ("code", "rng = random.Random(0)\nagents = [f\"agent-{n:02d}\" for n in range(20)]\n"
     "with store.batch():\n"
     "    for n, agent in enumerate(agents):\n"
     "        rate = 0.0005 * (n + 1)\n"
     "        for step in range(5_000):\n"
     "            loss = (2 * math.exp(-rate * step) + 0.05) * math.exp(rng.gauss(0, 0.1))\n"
     "            store.append(step, agent, {\"loss\": loss, \"metrics\": {\"f1\": 1 / (1 + loss)}})\n"
     "stats = store.stats()\nlen(store), stats.records, stats.agents"),
    ("md", "## Lazy access: only what you ask for is read"),
    ("code", "store.agents()[:3], store.iterations(\"agent-07\")[-3:]"),
    ("code", "record = store.get(\"agent-07\", 4_321)  # one indexed lookup, one record unpickled\n"
     "round(record[\"loss\"], 4), round(record[\"metrics\"][\"f1\"], 4)"),
    ("code", "# NBVAL_IGNORE_OUTPUT\n"
     "def timed(call, repeat=5):\n"
     "    best = math.inf\n"
     "    for _ in range(repeat):\n"
     "        start = time.perf_counter()\n"
     "        call()\n"
     "        best = min(best, time.perf_counter() - start)\n"
     "    return f\"{best * 1000:.2f} ms\"\n\n\n"
     "print(\"get one record:  \", timed(lambda: store.get(\"agent-07\", 4_321)))\n"
     "print(\"one agent frame: \", timed(lambda: to_frame(store, agents=\"agent-07\")))\n"
     "new_steps = iter(range(5_000, 6_000))\n"
     "print(\"append one:      \", timed(lambda: store.append(next(new_steps), \"agent-07\", {\"loss\": 0.06})))\n"
     "print(\"whole store load:\", timed(store.load, repeat=1))"),
    ("md", "## One agent as a DataFrame, its curves, and the browser\n\n`to_frame(..., agents=...)` reads only that "
     "agent's rows; the browser reads the agent list, then each agent you pick, once."),
    ("code", "frame = to_frame(store, agents=\"agent-07\")\nframe.shape, frame.attrs[\"records\"]"),
    ("code", "plot_metrics(store, agents=[\"agent-00\", \"agent-07\", \"agent-19\"], smoothing=0.9, best=\"min\")"),
    ("code", "browser = TrainingBrowser(store)\nbrowser.select(\"agent-07\", 4_321)\n"
     "browser.wait_for_curves()  # curves are drawn in the background; wait, so the saved notebook has them\n"
     "browser"),
    ("md", "## Back to a pickle CrewAI can read\n\n`convert` is lossless both ways."),
    ("code", "convert(workdir / \"run.db\", workdir / \"run.pkl\")\n"
     "CrewTrainingHandler(workdir / \"run.pkl\").load() == store.load()"),
]

ALL: dict[str, list[Cell]] = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_crewai_feedback.ipynb": CREWAI,
    "03_training_curves.ipynb": CURVES,
    "04_large_stores.ipynb": LARGE,
}


def build(name: str, cells: list[Cell]) -> Path:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        notebook.cells.append(cell)
    # Stable ids so rebuilding gives a small diff.
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"{Path(name).stem.split('_')[0]}-{index:02d}"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    resources = {"metadata": {"path": str(NOTEBOOKS)}}
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources=resources)
    client.execute()
    path = NOTEBOOKS / name
    nbformat.write(notebook, path)
    return path


def main(names: list[str]) -> None:
    NOTEBOOKS.mkdir(exist_ok=True)
    for name, cells in ALL.items():
        if names and name not in names:
            continue
        print(f"built {build(name, cells)}")


if __name__ == "__main__":
    main(sys.argv[1:])
