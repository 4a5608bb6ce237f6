"""compare_trained: two trained files, role by role."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd

from crewtrain_nb import CrewTrainingHandler, compare_trained
from crewtrain_nb.crewai import compare_entries
from crewtrain_nb.demo import make_crewai_run, write_crewai_run


def test_two_runs_role_by_role() -> None:
    before = make_crewai_run("paraphrased", seed=0)["trained"]
    after = make_crewai_run("stale_trained", seed=0)["trained"]  # another run, with one more role
    frame = compare_trained(before, after)
    assert frame.role.tolist() == [*before, "Data Analyst"]
    assert frame.columns.tolist() == [
        "role", "presence", "quality_before", "quality_after", "quality_delta",
        "added", "removed", "kept", "n_added", "n_removed", "n_kept",
    ]  # fmt: skip
    for row in frame.itertuples():
        if row.role == "Data Analyst":
            assert row.presence == "only_b" and math.isnan(row.quality_before) and math.isnan(row.quality_delta)
            assert row.added == after["Data Analyst"]["suggestions"] and row.removed == [] and row.kept == []
            continue
        old, new = before[row.role]["suggestions"], after[row.role]["suggestions"]
        assert row.presence == "both"
        assert row.quality_delta == after[row.role]["quality"] - before[row.role]["quality"]
        assert set(row.added) == set(new) - set(old) and set(row.removed) == set(old) - set(new)
        assert set(row.kept) == set(old) & set(new)
        assert (row.n_added, row.n_removed, row.n_kept) == (len(row.added), len(row.removed), len(row.kept))


def test_roles_only_in_a_and_an_edit(tmp_path: Path) -> None:
    paths = write_crewai_run(tmp_path, "paraphrased")
    before = make_crewai_run("paraphrased")["trained"]
    after = copy.deepcopy(before)
    after.pop("Fact Checker")
    writer = after["Report Writer"]["suggestions"]
    writer[0] = writer[0] + " Always."
    frame = compare_trained(paths["trained"], after).set_index("role")
    assert frame.loc["Fact Checker", "presence"] == "only_a"
    assert frame.loc["Fact Checker", "removed"] == before["Fact Checker"]["suggestions"]
    assert math.isnan(frame.loc["Fact Checker", "quality_after"])
    assert frame.loc["Report Writer", "removed"] == [before["Report Writer"]["suggestions"][0]]
    assert frame.loc["Report Writer", "added"] == [writer[0]]
    assert frame.loc["Report Writer", "quality_delta"] == 0.0
    same = compare_trained(CrewTrainingHandler(paths["trained"]), paths["trained"])
    assert (same.n_added == 0).all() and (same.n_removed == 0).all() and (same.quality_delta == 0).all()


def test_empty_files_and_no_mutation() -> None:
    assert compare_entries({}, {}) == []
    frame = compare_trained({}, {})
    assert frame.empty and "quality_delta" in frame
    a = make_crewai_run("paraphrased")["trained"]
    kept = copy.deepcopy(a)
    result = compare_trained(a, {})
    result.loc[0, "removed"].append("mutated")
    assert a == kept
    assert isinstance(result, pd.DataFrame) and set(result.presence) == {"only_a"}
