"""Write the example notebooks in ``notebooks/`` and execute them, so they are committed with outputs.

Run: ``.venv/bin/python scripts/build_notebooks.py [NAME ...]``

The test suite runs them again with nbval and compares the stored text
outputs, so every cell prints only deterministic things: seeded demo data, no
temporary paths, no timings without a sanitizer pattern.

No cell runs ``%matplotlib inline``: the figures crewtrain_nb returns show
themselves, and a notebook that needs no magic is what a new user's is.
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
    ("code", "import tempfile\nfrom pathlib import Path\n\nimport pandas as pd\n\n"
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
     "The uuids belong to a copy of the crew, so roles are linked by hand with `agent_names`, or matched to the "
     "trained file's suggestions with `trained=` (labelled \"(inferred)\")."),
    ("code", "import tempfile\nfrom pathlib import Path\n\n"
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
    ("md", "## Feedback per iteration\n\nA CrewAI 1.x record without `improved_output` comes from an interrupted "
     "run: feedback was given, the agent's second answer was never recorded (CrewAI 0.86 never records it). "
     "`crewtrain_nb.crewai.explain_status` says what each status means."),
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
    ("code", "plot_feedback(training, trained=trained)  # rows headed with the roles matched to the trained file"),
    ("md", "## Quality of the trained agents"),
    ("code", "trained_agents_frame(trained)[[\"agent\", \"quality\", \"n_suggestions\"]]"),
    ("code", "plot_quality(trained)"),
    ("md", "## Browse with role names and word diffs"),
    ("code", "browser = TrainingBrowser(training, trained=trained, agent_names=names)\n"
     "browser.wait_for_curves()  # curves are drawn in the background; wait, so the saved notebook has them\n"
     "browser"),
]

CURVES: list[Cell] = [
    ("md", "# Training curves from records logged with `append`\n\nThe way people log per-iteration metrics: "
     "one `append` per step. `batch()` makes it one write."),
    ("code", "import math\nimport random\nimport tempfile\nfrom pathlib import Path\n\n"
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
    ("code", "import math\nimport random\nimport tempfile\nimport time\n"
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

TRAINING: list[Cell] = [
    ("md", "# Training with CrewAI, nothing lost\n\n`crewtrain_nb.crewai.train(crew, n)` runs CrewAI's own "
     "`crew.train()` with crewtrain_nb's store in every place CrewAI uses its handler, journals every feedback "
     "line the moment it is typed, keeps each run's files before CrewAI wipes them, and records which agent is "
     "which.\n\n**The model here is scripted** (a `BaseLLM` subclass with canned answers, so the notebook runs "
     "offline and prints the same every time); with your crew, its own LLM answers. The feedback comes from a "
     "function here; `feedback=None` asks in the terminal as `crewai train` does."),
    ("code", "import os\nimport tempfile\nfrom pathlib import Path\n\n"
     "# Keep CrewAI offline and out of the real home folder (set before crewai is imported).\n"
     "home = tempfile.mkdtemp()\n"
     "os.environ.update(CREWAI_DISABLE_TELEMETRY=\"true\", OTEL_SDK_DISABLED=\"true\", "
     "CREWAI_TRACING_ENABLED=\"false\",\n"
     "                  CREWAI_DISABLE_VERSION_CHECK=\"true\", OPENAI_API_KEY=\"sk-offline\", HOME=home,\n"
     "                  CREWAI_STORAGE_DIR=os.path.join(home, \"storage\"))\n"
     "workdir = Path(tempfile.mkdtemp())"),
    ("md", "## A scripted model and a small crew\n\nThree agents; the Researcher owns two tasks (CrewAI's file "
     "keeps only one record per agent and iteration; the journal keeps both)."),
    ("code", "import json\nimport re\n\nfrom crewai import Agent, Crew, Task\n"
     "from crewai.llms.base_llm import BaseLLM\n\n\n"
     "class ScriptedLLM(BaseLLM):\n"
     "    \"\"\"A stand-in for a real LLM: canned ReAct answers, and the evaluator's JSON.\"\"\"\n\n"
     "    fail_evaluation: bool = False\n\n"
     "    def call(self, messages, tools=None, callbacks=None, available_functions=None, from_task=None,\n"
     "             from_agent=None, response_model=None):\n"
     "        text = messages if isinstance(messages, str) else \"\\n\".join(str(m.get(\"content\", \"\")) "
     "for m in messages)\n"
     "        if \"Assess the quality of the training data\" in text:\n"
     "            if self.fail_evaluation:\n"
     "                raise TimeoutError(\"the evaluator's LLM timed out\")\n"
     "            feedback = re.findall(r\"Human Feedback:\\n(.*)\\n\", text)\n"
     "            return json.dumps({\"suggestions\": feedback, \"quality\": 8.0, \"final_summary\": \"applied\"})\n"
     "        return f\"Thought: done\\nFinal Answer: {from_agent.role} draft\"\n\n"
     "    def get_input_tokens_count(self, messages, tools=None, response_model=None):\n"
     "        return len(str(messages)) // 4\n\n"
     "    def supports_function_calling(self):\n        return False\n\n"
     "    def supports_stop_words(self):\n        return True\n\n"
     "    def get_context_window_size(self):\n        return 8192\n\n\n"
     "def make_crew(**llm_options):\n"
     "    llm = ScriptedLLM(model=\"scripted\", **llm_options)\n"
     "    roles = {role: Agent(role=role, goal=f\"{role} goal\", backstory=\"...\", llm=llm)\n"
     "             for role in (\"Researcher\", \"Writer\", \"Reviewer\")}\n"
     "    tasks = [\n"
     "        Task(description=\"Research {topic}.\", expected_output=\"Notes.\", agent=roles[\"Researcher\"]),\n"
     "        Task(description=\"Write about {topic}.\", expected_output=\"Text.\", agent=roles[\"Writer\"]),\n"
     "        Task(description=\"Find sources on {topic}.\", expected_output=\"Links.\",\n"
     "             agent=roles[\"Researcher\"]),\n"
     "        Task(description=\"Review the text on {topic}.\", expected_output=\"Review.\",\n"
     "             agent=roles[\"Reviewer\"]),\n"
     "    ]\n"
     "    return Crew(agents=list(roles.values()), tasks=tasks, verbose=False)\n\n\n"
     "def person(role, task, output):\n"
     "    \"\"\"What a person would type: scripted here.\"\"\"\n"
     "    return f\"{role}: cite one source for '{task}'\""),
    ("md", "## Train\n\nThe one line that replaces `crew.train(n_iterations=2, filename=...)`:"),
    ("code", "from crewtrain_nb.crewai import evaluate, restore_run, runs, train\n\n"
     "run = train(make_crew(), 2, inputs={\"topic\": \"lock files\"}, directory=workdir, feedback=person)\n"
     "run.outcome, len(run.feedback())"),
    ("md", "Eight lines were typed (4 tasks x 2 iterations); CrewAI's own file keeps six. The frame labels each "
     "training-copy id with the role recorded when the run started:"),
    ("code", "run.frame()[[\"role\", \"iteration\", \"human_feedback\"]]"),
    ("md", "## When evaluation fails\n\nCrewAI wipes both files on any exception, here a timeout of the "
     "evaluator's LLM after all feedback was given. The journal and the kept run still hold everything:"),
    ("code", "try:\n    train(make_crew(fail_evaluation=True), 2, inputs={\"topic\": \"lock files\"},\n"
     "          directory=workdir, feedback=person)\n"
     "except TimeoutError as error:\n    print(\"train() failed:\", error)\n\n"
     "from crewtrain_nb import CrewTrainingHandler\n\n"
     "CrewTrainingHandler(workdir / \"training_data.pkl\").load()  # what CrewAI left"),
    ("code", "runs(workdir)[[\"run\", \"outcome\", \"n_iterations\", \"agents\", \"records\", \"error\"]]"),
    ("md", "Put the failed run's files back and run CrewAI's own evaluator again, without training again:"),
    ("code", "failed = runs(workdir).query(\"outcome == 'failed'\").run.iloc[-1]\n"
     "restore_run(failed, workdir)\n"
     "trained = evaluate(make_crew(), directory=workdir)\n"
     "{role: entry[\"suggestions\"][0] for role, entry in trained.items()}"),
]

ALL: dict[str, list[Cell]] = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_crewai_feedback.ipynb": CREWAI,
    "03_training_curves.ipynb": CURVES,
    "04_large_stores.ipynb": LARGE,
    "05_training_with_crewai.ipynb": TRAINING,
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
