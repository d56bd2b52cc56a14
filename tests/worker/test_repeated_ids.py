"""Ids repeated across the parts of a corpus by reference, found from per-part digest files one digest
range at a time: the count and the earliest repeat are what a dict of every id would give, however
the corpus is cut into parts and however many ranges the check reads. Pure (local files)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedfleet.domain import ResultsRef
from embedfleet.worker.kinds import repeated_ids


def _brute_force(ids: list[str]) -> repeated_ids.Repeats:
    seen: dict[str, int] = {}
    count, first = 0, None
    for row, doc_id in enumerate(ids):
        if doc_id in seen:
            count += 1
            first = first or (seen[doc_id], row)
        else:
            seen[doc_id] = row
    return repeated_ids.Repeats(count, first)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.sampled_from([f"doc-{i}" for i in range(30)]), min_size=1, max_size=80),
    part=st.integers(1, 9),
    bucket_rows=st.integers(1, 50),
)
def test_repeats_across_parts_like_a_dict_of_every_id(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    ids: list[str],
    part: int,
    bucket_rows: int,
) -> None:
    monkeypatch.setattr(repeated_ids, "BUCKET_ROWS", bucket_rows)  # many digest ranges, not one
    where = ResultsRef(filesystem="file:///", directory=str(tmp_path_factory.mktemp("ids")))
    starts = range(0, len(ids), part)
    for index, start in enumerate(starts):
        repeated_ids.write_part(where, index, ids[start : start + part], start)
    assert repeated_ids.parts_written(where) == len(starts)
    assert repeated_ids.find_repeats(where, len(ids)) == _brute_force(ids)


def test_a_retried_part_replaces_its_own_file(tmp_path: Path) -> None:
    where = ResultsRef(filesystem="file:///", directory=str(tmp_path))
    for _ in range(2):
        repeated_ids.write_part(where, 0, ["a", "b"], 0)
    repeated_ids.write_part(where, 1, ["c", "a"], 2)
    assert repeated_ids.parts_written(where) == 2
    assert repeated_ids.find_repeats(where, 4) == repeated_ids.Repeats(1, (0, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
