"""User classes without trust: instances of classes outside the allow-list load as ``OpaqueObject`` placeholders.

The user's classes live in a module written to ``tmp_path`` and importable only
in child processes (as CrewAI's process has the user's code and the notebook
does not). They mimic what pydantic v2 pickles (``__getstate__`` with
``__dict__``, ``__pydantic_extra__``, ``__pydantic_fields_set__`` and
``__pydantic_private__``; ``NEWOBJ`` + ``BUILD``), and their ``__new__`` and
``__setstate__`` create a marker file, so a test sees any code of theirs run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from crewtrain_nb import CrewTrainingHandler, OpaqueObject, UnsafePickleError, convert, export_json, import_json
from crewtrain_nb.store import dumps, safe_loads

MODELS = '''
import os

MARKER = os.environ.get("CREW_MODELS_MARKER", "")


def _ran(what):
    if MARKER:
        with open(MARKER, "a") as file:
            file.write(what + "\\n")


class Model:
    """Pickles as pydantic v2 does."""

    __slots__ = ("__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__")

    def __init__(self, **fields):
        object.__setattr__(self, "__dict__", dict(fields))
        object.__setattr__(self, "__pydantic_extra__", None)
        object.__setattr__(self, "__pydantic_fields_set__", set(fields))
        object.__setattr__(self, "__pydantic_private__", None)

    def __new__(cls, *args, **kwargs):
        _ran("new " + cls.__qualname__)
        return super().__new__(cls)

    def __getstate__(self):
        return {
            "__dict__": self.__dict__,
            "__pydantic_extra__": self.__pydantic_extra__,
            "__pydantic_fields_set__": self.__pydantic_fields_set__,
            "__pydantic_private__": self.__pydantic_private__,
        }

    def __setstate__(self, state):
        _ran("setstate " + type(self).__qualname__)
        object.__setattr__(self, "__dict__", state["__dict__"])
        for name in ("__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__"):
            object.__setattr__(self, name, state[name])

    def __eq__(self, other):
        return type(other) is type(self) and self.__getstate__() == other.__getstate__()


class Source(Model):
    pass


class ResearchFacts(Model):
    class Verdict(Model):
        pass
'''

#: Builds the store in a child that has the user's module: records with a model, a nested model and a nested class.
BUILD = '''
import pickle, sys
from crew_models import ResearchFacts, Source

def facts(n):
    return ResearchFacts(
        title=f"finding {n}", facts=["a", "b"], sources=[Source(url=f"https://x/{n}")],
        verdict=ResearchFacts.Verdict(ok=True), score=0.5 * n,
    )

store = {
    "agent-1": {n: {"initial_output": f"draft {n}", "human_feedback": "more sources", "improved_output": facts(n)}
                for n in range(3)},
    "agent-2": {0: {"initial_output": "plain", "human_feedback": "", "improved_output": "text"}},
}
with open(sys.argv[1], "wb") as file:
    pickle.dump(store, file, protocol=int(sys.argv[2]))
states = {n: store["agent-1"][n]["improved_output"].__getstate__() for n in range(3)}
print(repr({n: (s["__dict__"]["title"], sorted(s["__pydantic_fields_set__"])) for n, s in states.items()}))
'''

#: Reads files with plain pickle.load in a child that has the classes: prints what it found.
READ = '''
import json, pickle, sys
from crew_models import ResearchFacts, Source
out = []
for path in sys.argv[1:]:
    with open(path, "rb") as file:
        data = pickle.load(file)
    model = data["agent-1"][0]["improved_output"]
    out.append({
        "type": type(model).__qualname__,
        "source": type(model.sources[0]).__qualname__,
        "verdict": type(model.verdict).__qualname__,
        "title": model.title,
        "fields_set": sorted(model.__pydantic_fields_set__),
        "agents": list(data),
        "equal": model == ResearchFacts(title="finding 0", facts=["a", "b"], sources=[Source(url="https://x/0")],
                                        verdict=ResearchFacts.Verdict(ok=True), score=0.0),
    })
print(json.dumps(out))
'''


@pytest.fixture
def user_code(tmp_path: Path) -> dict[str, Any]:
    """The user's module in its own folder (never on this process's path) and a child environment that has it."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "crew_models.py").write_text(MODELS)
    marker = tmp_path / "ran.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}
    return {"folder": folder, "marker": marker, "env": env}


def run_child(user_code: dict[str, Any], source: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *args],
        env=user_code["env"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def crewai_store(user_code: dict[str, Any], path: Path, protocol: int = 4) -> str:
    """What CrewAI writes for an ``output_pydantic`` task, made in a process that has the user's classes."""
    return run_child(user_code, BUILD, str(path), str(protocol))


def assert_no_user_code_ran(user_code: dict[str, Any]) -> None:
    assert "crew_models" not in sys.modules
    assert not user_code["marker"].exists()


@pytest.mark.parametrize("protocol", range(6))
def test_an_instance_of_a_user_class_loads_as_a_placeholder_with_its_name_and_state(
    tmp_path: Path, user_code: dict[str, Any], protocol: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREW_MODELS_MARKER", str(user_code["marker"]))
    path = tmp_path / "training_data.pkl"
    crewai_store(user_code, path, protocol)
    loaded = CrewTrainingHandler(path).load()
    assert_no_user_code_ran(user_code)
    facts = loaded["agent-1"][1]["improved_output"]
    assert type(facts) is OpaqueObject
    assert facts.class_name == "crew_models.ResearchFacts"
    assert (facts.module, facts.qualname) == ("crew_models", "ResearchFacts")
    # The state pydantic v2 pickles, as it was built: every key, the fields set, nested models as placeholders.
    assert set(facts.state) == {"__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__"}
    assert facts.state["__pydantic_fields_set__"] == {"title", "facts", "sources", "verdict", "score"}
    assert facts.state["__pydantic_extra__"] is None and facts.state["__pydantic_private__"] is None
    assert list(facts.fields) == ["title", "facts", "sources", "verdict", "score"]
    assert facts.fields["title"] == "finding 1" and facts.fields["score"] == 0.5
    source, verdict = facts.fields["sources"][0], facts.fields["verdict"]
    assert source.class_name == "crew_models.Source" and source.fields == {"url": "https://x/1"}
    assert verdict.class_name == "crew_models.ResearchFacts.Verdict"  # a nested class keeps its qualname
    assert facts.to_dict() == {
        "title": "finding 1", "facts": ["a", "b"], "sources": [{"url": "https://x/1"}], "verdict": {"ok": True},
        "score": 0.5,
    }  # fmt: skip
    assert loaded["agent-2"] == {0: {"initial_output": "plain", "human_feedback": "", "improved_output": "text"}}
    assert "crew_models.ResearchFacts(title='finding 1'" in repr(facts)


def test_placeholders_are_written_back_as_the_class_and_state_they_came_from(
    tmp_path: Path, user_code: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREW_MODELS_MARKER", str(user_code["marker"]))
    original = tmp_path / "training_data.pkl"
    crewai_store(user_code, original)
    outputs: list[Path] = []

    appended = CrewTrainingHandler(original, backups=2)  # an append beside the placeholders, cached pieces after
    appended.load()
    appended.append(0, "agent-3", {"initial_output": "new", "human_feedback": "ok", "improved_output": "done"})
    appended.append(1, "agent-3", {"initial_output": "newer"})
    outputs.append(original)

    saved = CrewTrainingHandler(tmp_path / "saved.pkl")
    saved.save(appended.load())
    outputs.append(Path(saved.file_path))

    copied = CrewTrainingHandler(tmp_path / "copied.pkl")  # load() copies; the copy saves the same
    with copied.batch():
        for agent, iterations in appended.load().items():
            for iteration, record in iterations.items():
                copied.append(iteration, agent, record)
    outputs.append(Path(copied.file_path))

    database = convert(original, tmp_path / "training_data.db")  # SQLite keeps each record pickled
    assert CrewTrainingHandler(database).get("agent-1", 2)["improved_output"].fields["title"] == "finding 2"
    outputs.append(Path(convert(database, tmp_path / "back.pkl")))

    appended.append(2, "agent-3", {"initial_output": "to be undone"})
    appended.restore(appended.versions()[0])  # the version before that append
    restored = tmp_path / "restored.pkl"
    restored.write_bytes(original.read_bytes())
    outputs.append(restored)

    exported = export_json(original, tmp_path / "training_data.json")
    outputs.append(Path(CrewTrainingHandler(tmp_path / "imported.pkl").file_path))
    CrewTrainingHandler(outputs[-1]).save(import_json(exported))

    for path in outputs:
        payload = path.read_bytes()
        pickletools.dis(payload, out=io.StringIO())  # strictly valid, too
        assert safe_loads(payload, path=str(path)) == appended.load(), path
    assert_no_user_code_ran(user_code)

    # A process that has the classes (CrewAI) loads the real objects, with plain pickle.load.
    found = json.loads(run_child(user_code, READ, *map(str, outputs)))
    for path, seen in zip(outputs, found, strict=True):
        assert seen == {
            "type": "ResearchFacts", "source": "Source", "verdict": "ResearchFacts.Verdict", "title": "finding 0",
            "fields_set": ["facts", "score", "sources", "title", "verdict"],
            "agents": ["agent-1", "agent-2", "agent-3"], "equal": True,
        }, path  # fmt: skip


def test_allowed_classes_load_the_real_objects(
    tmp_path: Path, user_code: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "training_data.pkl"
    crewai_store(user_code, path)
    monkeypatch.syspath_prepend(str(user_code["folder"]))
    import crew_models

    try:
        allowed = [crew_models.ResearchFacts, crew_models.Source, crew_models.ResearchFacts.Verdict]
        loaded = CrewTrainingHandler(path, allowed_classes=allowed).load()
        facts = loaded["agent-1"][0]["improved_output"]
        assert type(facts) is crew_models.ResearchFacts and type(facts.sources[0]) is crew_models.Source
        partly = CrewTrainingHandler(path, allowed_classes=[crew_models.ResearchFacts]).load()
        assert type(partly["agent-1"][0]["improved_output"].sources[0]) is OpaqueObject  # not listed: a placeholder
        with pytest.raises(TypeError, match="allowed_classes must"):
            CrewTrainingHandler(path, allowed_classes=crew_models.ResearchFacts)
        with pytest.raises(TypeError, match="allowed_classes must hold classes"):
            CrewTrainingHandler(path, allowed_classes=["crew_models.ResearchFacts"])
    finally:
        del sys.modules["crew_models"]


def test_shapes_other_than_create_and_fill_stay_refused() -> None:
    from tests.hostile_corpus import hostile_payloads

    placeholder_payloads = [p for p in hostile_payloads("/nonexistent") if p.name.startswith("placeholder:")]
    assert len(placeholder_payloads) >= 15
    for payload in placeholder_payloads:
        with pytest.raises(UnsafePickleError) as caught:
            safe_loads(payload.data, path="hostile.pkl")
        assert caught.value.global_name, payload.name
    # The shape CrewAI writes for a pydantic model loads, from the same assembler.
    good = pickle.PROTO + b"\x04" + _user_instance() + pickle.STOP
    assert safe_loads(good, path="ok.pkl").fields == {"title": "t"}


def _user_instance() -> bytes:
    from tests.hostile_corpus import Asm

    asm = Asm(4)
    fields = asm.dict((asm.text("__dict__"), asm.dict((asm.text("title"), asm.text("t")))))
    return asm.build(asm.glob("crew_models", "ResearchFacts") + asm.tuple() + pickle.NEWOBJ, fields)


def test_standard_library_and_numpy_classes_never_become_placeholders() -> None:
    from tests.hostile_corpus import Asm

    asm = Asm(4)
    for module, name in (("subprocess", "Popen"), ("argparse", "Namespace"), ("numpy", "ndarray"), ("os", "system")):
        body = asm.build(asm.glob(module, name) + asm.tuple() + pickle.NEWOBJ, asm.dict())
        with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
            safe_loads(asm.program(body), path="p.pkl")


def test_a_placeholder_is_a_value_object() -> None:
    facts = OpaqueObject("app.models", "Facts", state={"__dict__": {"a": 1}, "__pydantic_extra__": {"x": 2}})
    assert facts.fields == {"a": 1, "x": 2}  # extra fields are fields too
    assert facts == OpaqueObject("app.models", "Facts", state=dict(facts.state))
    assert facts != OpaqueObject("app.models", "Other", state=dict(facts.state))
    with pytest.raises(TypeError, match="unhashable"):
        hash(facts)
    with pytest.raises(pickle.PicklingError, match="crewtrain_nb"):
        pickle.dumps(facts)
    assert OpaqueObject("m", "Slots", state=(None, {"a": 1})).fields == {"a": 1}
    assert OpaqueObject("m", "Odd", state=[1, 2]).fields == {"state": [1, 2]}
    assert OpaqueObject("m", "Empty").fields == {}
    cyclic = OpaqueObject("m", "Node", state={"children": []})
    cyclic.state["children"].append(cyclic)
    again = safe_loads(dumps({"n": cyclic}), path="c.pkl")["n"]
    assert again.state["children"][0] is again  # a state that refers back to the object keeps doing so


def test_json_export_tags_a_placeholder_as_an_object_and_version_1_files_still_import(tmp_path: Path) -> None:
    facts = OpaqueObject("app.models", "Facts.Inner", state={"__dict__": {"title": "t"}}, args=(1,), kwargs={"k": 2})
    handler = CrewTrainingHandler(tmp_path / "t.pkl")
    handler.append(0, "agent", {"improved_output": facts})
    exported = export_json(handler, tmp_path / "t.json")
    envelope = json.loads(exported.read_text(encoding="utf-8"))
    assert envelope["version"] == 2
    assert envelope["data"]["agent"]["0"]["improved_output"] == {
        "$type": "object", "class": "app.models.Facts.Inner", "module": "app.models",
        "state": {"__dict__": {"title": "t"}}, "args": [1], "kwargs": {"k": 2},
    }  # fmt: skip
    assert import_json(exported) == {"agent": {0: {"improved_output": facts}}}
    old = tmp_path / "old.json"
    old.write_text(
        '{"format": "crewtrain_nb.store", "version": 1, "kind": "iterations",'
        ' "data": {"a": {"0": {"s": {"$type": "set", "items": [1]}}}}}',
        encoding="utf-8",
    )
    assert import_json(old) == {"a": {0: {"s": {1}}}}


def test_frames_and_html_show_a_placeholder_as_its_fields(tmp_path: Path, user_code: dict[str, Any]) -> None:
    from crewtrain_nb import to_frame
    from crewtrain_nb.render import flatten_record, record_html

    path = tmp_path / "training_data.pkl"
    crewai_store(user_code, path)
    frame = to_frame(path, agents="agent-1")
    assert {"improved_output.title", "improved_output.score", "improved_output.verdict.ok"} <= set(frame.columns)
    assert list(frame["improved_output.title"]) == ["finding 0", "finding 1", "finding 2"]
    assert list(frame["improved_output.score"]) == [0.0, 0.5, 1.0]
    assert "improved_output.__pydantic_fields_set__" not in frame.columns  # the fields, not pydantic's bookkeeping
    record = CrewTrainingHandler(path).load()["agent-1"][1]
    assert ("out.title", "finding 1") in flatten_record({"out": record["improved_output"]})
    page = record_html(record, title="agent-1 · iteration 1")
    assert "finding 1" in page and "https://x/1" in page
    assert "OpaqueObject" not in page and "__pydantic" not in page
    assert str(record["improved_output"]).startswith('ResearchFacts {"title": "finding 1"')


def test_the_show_command_prints_a_placeholder_as_its_fields(tmp_path: Path, user_code: dict[str, Any]) -> None:
    path = tmp_path / "training_data.pkl"
    crewai_store(user_code, path)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and "user_code" not in p)
    shown = subprocess.run(
        [sys.executable, "-m", "crewtrain_nb", "show", str(path), "--agent", "agent-1", "--iteration", "1"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert '[improved_output]\nResearchFacts {"title": "finding 1", "facts": ["a", "b"]' in shown.stdout
    assert "OpaqueObject" not in shown.stdout
