"""Timing helpers the benchmark scripts share."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(repeats: int, call: Callable[[], object]) -> float:
    """The shortest of ``repeats`` timed calls, in seconds (the least disturbed by a shared machine)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)
