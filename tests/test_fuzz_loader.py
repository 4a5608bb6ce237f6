"""Fuzzing the loader: mutated store files and random bytes never escape ``load()`` as anything but StoreError.

The bulk (a seeded, deterministic loop) runs in a child process under an
address-space limit with a watchdog, so a hang or a crash is reported with the
input's number rather than taking pytest down; hypothesis adds shrinking on
the same mutations in-process.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crewtrain_nb import CrewTrainingHandler, StoreError
from tests.reliability_lib import MEMO_INDEX_PAYLOAD, check_huge_lengths, mutate, run_fuzz, seed_stores

#: Inputs of the bulk run in CI (the issue asks for at least 20,000 per run).
BULK_INPUTS = 25_000
#: Mutated SQLite store files per run (each is a database opened, loaded and read lazily: about 0.6 ms).
SQLITE_BULK_INPUTS = 10_000
SEEDS = seed_stores()


@pytest.mark.slow
def test_bulk_fuzz_only_store_errors_escape_and_nothing_hangs() -> None:
    report = run_fuzz(BULK_INPUTS, seed=8)
    assert report.problems == []
    assert report.inputs == BULK_INPUTS
    assert sum(report.outcomes.values()) == BULK_INPUTS
    # The mutations reach every outcome: still loadable, corrupt, and refused globals.
    assert {"ok", "CorruptStoreError", "UnsafePickleError"} <= set(report.outcomes)


@pytest.mark.slow
def test_bulk_fuzz_of_sqlite_files_only_store_errors_escape_load_or_lazy_reads() -> None:
    # Byte flips (anywhere, in the header, in cells), truncation, pages zeroed, garbled or copied over others;
    # load(), agents(), iterations(), get() and len() on each. It found non-UTF-8 text, non-bytes values, records
    # of no agent and indexes missing rows escaping as UnicodeDecodeError, TypeError and KeyError.
    report = run_fuzz(SQLITE_BULK_INPUTS, seed=8, backend="sqlite")
    assert report.problems == []
    assert report.inputs == SQLITE_BULK_INPUTS
    assert sum(report.outcomes.values()) == SQLITE_BULK_INPUTS
    assert {"ok", "CorruptStoreError"} <= set(report.outcomes)


def load_in_process(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.pkl"
    path.write_bytes(data)
    try:
        CrewTrainingHandler(path, read_retry_timeout=0).load()  # the loader is fuzzed, not the retry
    except StoreError:
        pass


@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.sampled_from(SEEDS), mutation_seeds=st.lists(st.integers(0, 2**32), min_size=1, max_size=3))
def test_mutated_store_files_only_raise_store_errors(tmp_path: Path, seed: bytes, mutation_seeds: list[int]) -> None:
    data = seed
    for mutation_seed in mutation_seeds:
        data = mutate(data, random.Random(mutation_seed))
    load_in_process(tmp_path, data)


@settings(
    max_examples=200, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(head=st.sampled_from([b"", b"\x80\x02", b"\x80\x04\x95", b"\x80\x05"]), body=st.binary(max_size=200))
def test_random_bytes_only_raise_store_errors(tmp_path: Path, head: bytes, body: bytes) -> None:
    load_in_process(tmp_path, head + body)


@pytest.fixture(scope="module")
def huge() -> dict[str, dict[str, object]]:
    return {finding["name"]: finding for finding in check_huge_lengths()}


def test_huge_declared_lengths_fail_without_using_the_memory(huge: dict[str, dict[str, object]]) -> None:
    # Each ran under RLIMIT_AS (1 GiB above the child's size): an allocation the loader really made would either
    # fail inside the limit or show in the peak resident size.
    assert len(huge) >= 8
    for name, finding in huge.items():
        if name == MEMO_INDEX_PAYLOAD:
            continue  # the known gap below
        assert finding["outcome"] in {"CorruptStoreError", "UnsafePickleError"}, (name, finding)
        assert finding["rss_growth_mb"] < 64, (name, finding)


def test_a_size_taking_constructor_is_refused_before_it_allocates(huge: dict[str, dict[str, object]]) -> None:
    finding = huge["bytearray(2**29) via REDUCE"]  # 512 MiB would fit the limit: refused, not failed
    assert finding["outcome"] == "UnsafePickleError" and finding["cause"] != "MemoryError"


@pytest.mark.xfail(
    strict=True,
    reason="known gap: CPython's C unpickler sizes its memo table by the largest PUT/LONG_BINPUT index (16 bytes "
    "per slot, zeroed), so a 12-byte pickle naming index 2**25 touches 512 MiB; telling that opcode from text "
    "bytes needs a full opcode walk, which costs what the pure-Python unpickler does (about 10x the C one)",
)
def test_a_huge_memo_index_does_not_use_the_memory(huge: dict[str, dict[str, object]]) -> None:
    finding = huge[MEMO_INDEX_PAYLOAD]
    assert finding["outcome"] in {"CorruptStoreError", "UnsafePickleError"}
    assert finding["rss_growth_mb"] < 64, finding
