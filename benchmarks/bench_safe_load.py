"""What safe loading costs over a bare ``pickle.loads``, by what the store holds, side by side in one run.

Run: ``.venv/bin/python benchmarks/bench_safe_load.py [--records 20000] [--repeats 5]``

Each store is ``--records`` ML-style records over ten agents, pickled with
protocol 4 as CrewAI does, and loaded from the same bytes in memory (no disk):

* **plain**: Python floats and a list of 8 floats per record;
* **numpy scalars**: the same metrics as numpy scalars (``np.float64``,
  ``np.int64``), what ``np.mean(...)`` or ``x.sum()`` return and people log;
* **numpy arrays**: plain metrics and an 8-float numpy array per record.

Columns: a bare ``pickle.loads`` (the C unpickler, no checks: what CrewAI
does, and unsafe), crewtrain_nb's ``safe_loads`` (allow-listed globals, numpy
construction checked before numpy sees it), and the pure-Python unpickler with
every call and ``BUILD`` checked (``_CheckedUnpickler``) for reference. Best of
``--repeats``.
"""

from __future__ import annotations

import argparse
import io
import pickle
from typing import Any

import numpy as np
from timing import best_of

from crewtrain_nb.store._unpickle import _CheckedUnpickler, safe_loads

AGENTS = 10


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
        else:
            record = {"loss": float(loss), "accuracy": float(accuracy), "step": index, "weights": weights}
        store[f"agent-{index % AGENTS}"][index // AGENTS] = record
    return store


def checked_loads(data: bytes) -> Any:
    return _CheckedUnpickler(io.BytesIO(data), path="<bench>", payload_size=len(data)).load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.records:,} records over {AGENTS} agents, protocol 4, best of {args.repeats}\n")
    print("| store holds | pickle MB | pickle.loads ms | safe_loads ms | checked pure-Python ms | safe / bare |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in ("plain", "numpy scalars", "numpy arrays"):
        data = pickle.dumps(make_store(args.records, kind), protocol=4)
        assert safe_loads(data, path="<bench>").keys() == pickle.loads(data).keys()
        bare = best_of(args.repeats, lambda data=data: pickle.loads(data))
        safe = best_of(args.repeats, lambda data=data: safe_loads(data, path="<bench>"))
        checked = best_of(max(2, args.repeats // 2), lambda data=data: checked_loads(data))
        print(
            f"| {kind} | {len(data) / 1e6:.1f} | {bare * 1e3:.1f} | {safe * 1e3:.1f} | {checked * 1e3:.1f} "
            f"| {safe / bare:.1f}x |"
        )


if __name__ == "__main__":
    main()
