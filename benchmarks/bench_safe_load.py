"""What safe loading costs over a bare ``pickle.loads``, by what the store holds, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_safe_load.py [--records 20000] [--repeats 5]``

It then runs itself in each other supported CPython's test venv that ``make test``
built (``.venv-3.X``, see ``tests/pythons.py``) and prints the fast path's ratio
(safe / bare) on each version side by side, with the numpy version each resolved.

Each store is ``--records`` ML-style records over ten agents, pickled with
protocol 4 as CrewAI does, and loaded from the same bytes in memory (no disk):

* **plain**: Python floats and a list of 8 floats per record;
* **numpy scalars**: the same metrics as numpy scalars (``np.float64``,
  ``np.int64``), what ``np.mean(...)`` or ``x.sum()`` return and people log;
* **numpy arrays**: plain metrics and an 8-float numpy array per record;
* **pydantic-style objects**: CrewAI records of an ``output_pydantic`` task,
  ``improved_output`` an instance of a user's model class (:class:`Facts`,
  pickled as pydantic v2 pickles: ``NEWOBJ`` + ``BUILD`` of ``__dict__``,
  ``__pydantic_fields_set__``, ...). ``pickle.loads`` has the class here and
  builds the real objects; ``safe_loads`` never imports it and builds
  :class:`~crewtrain_nb.store.OpaqueObject` placeholders instead.

Columns: a bare ``pickle.loads`` (the C unpickler, no checks: what CrewAI
does, and unsafe), crewtrain_nb's ``safe_loads`` (allow-listed globals, numpy
construction checked before numpy sees it), and the pure-Python unpickler with
every call and ``BUILD`` checked (``_CheckedUnpickler``) for reference. Best of
``--repeats``.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from timing import best_of

from crewtrain_nb.store._unpickle import _CheckedUnpickler, safe_loads

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.pythons import ROOT, SUPPORTED, installed, venv_python  # noqa: E402

AGENTS = 10
KINDS = ("plain", "numpy scalars", "numpy arrays", "pydantic-style objects")


class Facts:
    """A user's output model, pickled as pydantic v2 pickles a ``BaseModel`` (pydantic itself is not needed)."""

    __slots__ = ("__dict__", "__pydantic_extra__", "__pydantic_fields_set__", "__pydantic_private__")

    def __init__(self, **fields: Any) -> None:
        object.__setattr__(self, "__dict__", fields)
        object.__setattr__(self, "__pydantic_extra__", None)
        object.__setattr__(self, "__pydantic_fields_set__", set(fields))
        object.__setattr__(self, "__pydantic_private__", None)

    def __getstate__(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, state[name])


def make_store(records: int, kind: str, *, seed: int = 0) -> dict[str, dict[int, dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    store: dict[str, dict[int, dict[str, Any]]] = {f"agent-{a}": {} for a in range(AGENTS)}
    for index in range(records):
        loss, accuracy = rng.random(2)
        weights = rng.normal(size=8)
        record: dict[str, Any]
        if kind == "plain":
            record = {"loss": float(loss), "accuracy": float(accuracy), "step": index, "weights": weights.tolist()}
        elif kind == "numpy scalars":
            record = {"loss": np.float64(loss), "accuracy": np.float64(accuracy), "step": np.int64(index)}
            record["weights"] = weights.tolist()
        elif kind == "numpy arrays":
            record = {"loss": float(loss), "accuracy": float(accuracy), "step": index, "weights": weights}
        else:
            facts = Facts(title=f"finding {index}", facts=[f"fact {n}" for n in range(3)], score=float(loss))
            record = {"initial_output": f"draft {index}", "human_feedback": "cite sources", "improved_output": facts}
        store[f"agent-{index % AGENTS}"][index // AGENTS] = record
    return store


def checked_loads(data: bytes) -> Any:
    return _CheckedUnpickler(io.BytesIO(data), path="<bench>", payload_size=len(data)).load()


def measure(records: int, repeats: int) -> dict[str, dict[str, float]]:
    """Per kind of store: pickle size (MB) and the best times (s) of the three loaders."""
    results = {}
    for kind in KINDS:
        data = pickle.dumps(make_store(records, kind), protocol=4)
        assert safe_loads(data, path="<bench>").keys() == pickle.loads(data).keys()
        results[kind] = {
            "mb": len(data) / 1e6,
            "bare": best_of(repeats, lambda data=data: pickle.loads(data)),
            "safe": best_of(repeats, lambda data=data: safe_loads(data, path="<bench>")),
            "checked": best_of(max(2, repeats // 2), lambda data=data: checked_loads(data)),
        }
    return results


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor} (numpy {np.__version__})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print this interpreter's results as JSON, nothing else")
    args = parser.parse_args()
    if args.json:
        print(json.dumps({"python": this_python(), "results": measure(args.records, args.repeats)}))
        return
    print(f"{args.records:,} records over {AGENTS} agents, protocol 4, best of {args.repeats}", end=", ")
    print(f"CPython {this_python()}\n")
    print("| store holds | pickle MB | pickle.loads ms | safe_loads ms | checked pure-Python ms | safe / bare |")
    print("|---|---:|---:|---:|---:|---:|")
    results = measure(args.records, args.repeats)
    for kind, row in results.items():
        print(
            f"| {kind} | {row['mb']:.1f} | {row['bare'] * 1e3:.1f} | {row['safe'] * 1e3:.1f} "
            f"| {row['checked'] * 1e3:.1f} | {row['safe'] / row['bare']:.1f}x |"
        )
    columns = {this_python(): results}
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    for version in SUPPORTED:
        python = venv_python(version)
        if version == here or not installed(python):
            continue
        command = [str(python), __file__, "--json", "--records", str(args.records), "--repeats", str(args.repeats)]
        child = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
        columns[child["python"]] = child["results"]
    missing = [v for v in SUPPORTED if not any(name.startswith(f"{v} ") for name in columns)]
    print(f"\nsafe / bare on each CPython found (missing: {', '.join(missing) or 'none'}; run `make test` to build)\n")
    ordered = sorted(columns, key=lambda name: tuple(int(part) for part in name.split()[0].split(".")))
    print("| store holds | " + " | ".join(ordered) + " |")
    print("|---|" + "---:|" * len(ordered))
    for kind in KINDS:
        ratios = [columns[name][kind]["safe"] / columns[name][kind]["bare"] for name in ordered]
        print(f"| {kind} | " + " | ".join(f"{ratio:.1f}x" for ratio in ratios) + " |")


if __name__ == "__main__":
    main()
