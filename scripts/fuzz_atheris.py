"""Coverage-guided fuzzing of safe loading with atheris (optional; not part of CI).

    .venv/bin/python -m pip install -e ".[fuzz]"      # atheris ships manylinux wheels
    .venv/bin/python scripts/fuzz_atheris.py -runs=200000 -max_len=4096 [CORPUS_DIR]

The CI fuzzing (tests/test_fuzz_loader.py) is a seeded mutation loop; this
harness lets libFuzzer steer by coverage instead. Any exception other than a
StoreError, or a crash, is a finding: libFuzzer writes the input to
``crash-*``. The seed corpus is the same set of valid store files.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports():
    from crewtrain_nb import CrewTrainingHandler, StoreError
    from crewtrain_nb.store import _unpickle  # noqa: F401 - instrumented too

_DIRECTORY = tempfile.mkdtemp(prefix="crewtrain-atheris-")
_PATH = os.path.join(_DIRECTORY, "fuzz.pkl")


def test_one_input(data: bytes) -> None:
    """Write ``data`` as a store file and load it; only StoreError may escape."""
    with open(_PATH, "wb") as file:
        file.write(data)
    try:
        CrewTrainingHandler(_PATH).load()
    except StoreError:
        pass


def main() -> None:
    from tests.reliability_lib import seed_stores

    arguments = list(sys.argv)
    if not any(not argument.startswith("-") for argument in arguments[1:]):
        corpus = Path(tempfile.mkdtemp(prefix="crewtrain-corpus-"))
        for index, store in enumerate(seed_stores()):
            (corpus / f"seed-{index}.pkl").write_bytes(store)
        arguments.append(str(corpus))
    atheris.Setup(arguments, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
