"""Repeated ids found from digests: the earliest repeat in corpus order, as a dict of ids would find
it; a digest collision between different ids refuses nothing. Pure."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedfleet.gateway.kinds import unique_ids
from embedfleet.gateway.kinds.unique_ids import IdDigests


def _brute_force(ids: list[str]) -> tuple[int, int, str] | None:
    seen: dict[str, int] = {}
    for position, doc_id in enumerate(ids):
        if doc_id in seen:
            return seen[doc_id], position, doc_id
        seen[doc_id] = position
    return None


@given(ids=st.lists(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), max_size=40), chunk=st.integers(1, 7))
def test_the_earliest_repeat_like_a_dict_of_every_id(ids: list[str], chunk: int) -> None:
    digests = IdDigests()
    for start in range(0, len(ids), chunk):
        digests.add(ids[start : start + chunk])
    assert digests.first_repeat(ids.__getitem__) == _brute_force(ids)


def test_a_digest_collision_is_not_a_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unique_ids, "id_digests", lambda ids: np.full((len(ids), 2), 7, dtype=np.uint64))
    ids = ["x", "y", "z", "y"]
    digests = IdDigests()
    digests.add(ids)
    assert digests.first_repeat(ids.__getitem__) == (1, 3, "y")
    digests = IdDigests()
    digests.add(ids[:3])
    assert digests.first_repeat(ids.__getitem__) is None
