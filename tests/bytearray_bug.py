"""Trip CPython's ``bytearray`` allocation bug the way a crafted store can, and say whether it printed.

Run as ``python -m tests.bytearray_bug MODE`` with MODE ``bare`` (``pickle.loads``),
``safe`` or ``trusted`` (crewtrain_nb's loaders). Before each load the
allocator's free blocks of ``bytearray``'s size are left holding ``0xff``
bytes (freed ``bytes`` objects), so a ``BYTEARRAY8`` whose allocation fails
reads a non-zero export count on CPython 3.10-3.13. Prints one JSON object:
how many loads ran, how many ``sys.last_value`` was left set by. What CPython
printed goes to stderr, which the caller reads.
"""

from __future__ import annotations

import json
import pickle
import sys

from crewtrain_nb.errors import CorruptStoreError
from crewtrain_nb.store._unpickle import safe_loads, trusted_loads

LOADS = 20


def huge_bytearray(index: int) -> bytes:
    """A pickle whose ``BYTEARRAY8`` declares ~1 TiB: the allocation fails with ``MemoryError``."""
    return b"\x80\x05" + pickle.BYTEARRAY8 + (2**40 + index).to_bytes(8, "little") + b"x" * 16 + pickle.STOP


def main(mode: str) -> None:
    left_set = 0
    for index in range(LOADS):
        for length in (16, 19, 22):  # bytes objects of bytearray's allocation size on 64-bit CPython
            junk = [b"\xff" * length + bytes([index]) for _ in range(50)]
            del junk
            data = huge_bytearray(index)
            try:
                if mode == "bare":
                    pickle.loads(data)
                elif mode == "safe":
                    safe_loads(data, path="crafted.pkl")
                else:
                    trusted_loads(data, path="crafted.pkl")
            except (MemoryError, CorruptStoreError):
                pass
            if hasattr(sys, "last_value"):
                left_set += 1
                del sys.last_value
    print(json.dumps({"loads": LOADS * 3, "last_value_set": left_set}))


if __name__ == "__main__":
    main(sys.argv[1])
