"""Safe loading gives the same outcome on every supported CPython: the hostile corpus and a fixed sample of mutations.

The main interpreter pickles the inputs once (numpy versions pickle the same
values to different bytes) and every interpreter's venv loads the very same
bytes in a child, ``python -m tests.outcomes``; the outcomes (a fingerprint of
the loaded value, or the refusal's class) must agree with the main one's, and
no child may print anything to stderr (a ``SystemError`` CPython prints and
swallows would show there). ``make test`` builds the venvs (``.venv-3.X``).
"""

from __future__ import annotations

import json
import pickle
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.hostile_corpus import hostile_payloads
from tests.pythons import MAIN, OLDEST_NUMPY, ROOT, find_interpreters, installed, oldest_numpy_python, venv_python
from tests.test_unpickle import numpy_scalar_records, plain_array_layouts

MUTATIONS_PER_BASE = 300


def mutation_sample() -> list[bytes]:
    """Each base pickle with 1-3 bytes changed in place (after the protocol and frame headers), from a fixed seed."""
    bases = [pickle.dumps(numpy_scalar_records(2), protocol=4), pickle.dumps(plain_array_layouts(), protocol=4)]
    rng = random.Random(19)
    sample = []
    for base in bases:
        for _ in range(MUTATIONS_PER_BASE):
            data = bytearray(base)
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(11, len(data))] = rng.randrange(256)
            sample.append(bytes(data))
    return sample


def load_in(python: Path, inputs: Path) -> list[Any]:
    child = subprocess.run(
        [str(python), "-m", "tests.outcomes", str(inputs)], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert child.returncode == 0, f"{python}: {child.stderr[-2000:]}"
    assert child.stderr == "", f"{python} printed: {child.stderr[-2000:]}"
    return json.loads(child.stdout)


def test_every_python_loads_the_corpus_and_mutations_alike(tmp_path: Path) -> None:
    found = find_interpreters()
    others = sorted(version for version in found if version != MAIN)
    if not others:
        only = ", ".join(found) or sys.version.split()[0]
        pytest.skip(f"only one CPython on this machine ({only}): no other version's outcomes to compare")
    missing = [version for version in others if not installed(venv_python(version))]
    assert not missing, f"CPython {', '.join(missing)} found but no venv for it: run `make test`, which builds them"
    corpus = [payload.data for payload in hostile_payloads("/nonexistent/marker")]
    inputs = corpus + mutation_sample()
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps([blob.hex() for blob in inputs]), encoding="utf-8")

    main = load_in(Path(sys.executable), path)
    assert len(main) == len(inputs)
    assert all(outcome[0] == "refused" for outcome in main[: len(corpus)])  # the corpus is refused whole
    kinds = {outcome[0] for outcome in main[len(corpus) :]}
    assert kinds == {"loaded", "refused"}  # the mutations reach both outcomes
    venvs = {f"CPython {version}": venv_python(version) for version in others}
    oldest = min(found, key=lambda version: int(version.split(".")[1]))
    if installed(oldest_numpy_python(oldest)):  # make test builds it where numpy 1.24 has wheels (3.10, 3.11)
        venvs[f"CPython {oldest} with numpy {OLDEST_NUMPY}"] = oldest_numpy_python(oldest)
    for version, python in venvs.items():
        theirs = load_in(python, path)
        differ = [index for index, (a, b) in enumerate(zip(main, theirs, strict=False)) if a != b]
        assert len(theirs) == len(main) and not differ, (
            f"{version} differs from {MAIN} on {len(differ)} inputs, first {inputs[differ[0]].hex()}"
            if differ
            else f"{version} gave {len(theirs)} outcomes for {len(main)} inputs"
        )
