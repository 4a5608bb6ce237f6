"""What safe loading makes of given pickles, as plain JSON the same on every Python and numpy version.

Run as ``python -m tests.outcomes INPUT``: ``INPUT`` is a JSON list of
pickles in hex; one outcome per pickle is printed as a JSON list, either
``["loaded", fingerprint]`` or ``["refused", error class]``. Used by
``tests/test_unpickle_versions.py`` in each interpreter's venv.
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["fingerprint", "outcomes"]


def fingerprint(value: Any, _path: tuple[int, ...] = ()) -> Any:
    """``value`` as JSON: containers by type and items, numpy objects by type, dtype, shape and bytes, the rest by repr.

    A container inside itself (a crafted pickle can build one) is ``["cycle", levels up]``.
    """
    import numpy as np

    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if id(value) in _path:
            return ["cycle", len(_path) - _path.index(id(value))]
        path = (*_path, id(value))
        if isinstance(value, dict):
            items = [[fingerprint(key, path), fingerprint(item, path)] for key, item in value.items()]
        else:
            items = [fingerprint(item, path) for item in value]
            if isinstance(value, (set, frozenset)):
                items.sort(key=json.dumps)
        return [type(value).__name__, items]
    if isinstance(value, np.dtype):
        return ["dtype", value.str, str(value.descr)]
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.hasobject:
            content: Any = [fingerprint(item, _path) for item in array.ravel().tolist()]
        else:
            content = array.tobytes().hex()
        # "scalar", not the class's name: numpy 2 renamed numpy 1's bool_ class to bool (the dtype says the type).
        kind = "ndarray" if isinstance(value, np.ndarray) else "scalar"
        return [kind, array.dtype.str, str(array.dtype.descr), list(array.shape), content]
    return [type(value).__name__, repr(value)]


def outcomes(blobs: list[bytes]) -> list[Any]:
    """What :func:`crewtrain_nb.store.safe_loads` makes of each pickle: a fingerprint, or the error's class."""
    from crewtrain_nb.errors import StoreError
    from crewtrain_nb.store import safe_loads

    from .hostile_corpus import register_extension_codes

    register_extension_codes()  # as the corpus assumes: EXT opcodes name dangerous globals
    result: list[Any] = []
    for data in blobs:
        try:
            result.append(["loaded", fingerprint(safe_loads(data, path="v.pkl"))])
        except StoreError as exc:
            result.append(["refused", type(exc).__name__])
    return result


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as file:
        inputs = [bytes.fromhex(blob) for blob in json.load(file)]
    json.dump(outcomes(inputs), sys.stdout)
