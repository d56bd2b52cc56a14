"""Repeated ids in a streamed submission, found without keeping every id: 8-byte digests per
document (instead of a dict of every id string, ~75 times more), and one sort once the stream ends.

A repeated id within one job is an error in the corpus (ids are the keys of the job's Milvus rows and
result rows), so the submission is refused, naming both documents. A digest match is confirmed on the
ids themselves, read back from the spilled shards, so a 64-bit collision never refuses a valid corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from embedfleet.ids import id_digests


class IdDigests:
    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []

    def add(self, ids: Sequence[str]) -> None:
        self._chunks.append(id_digests(ids)[:, 0].copy())

    def _runs(self) -> Iterator[list[int]]:
        """Corpus positions sharing one digest, ascending, for every digest seen more than once."""
        if not self._chunks:
            return
        digests = np.concatenate(self._chunks)
        order = np.argsort(digests, kind="stable")
        same = np.flatnonzero(digests[order][1:] == digests[order][:-1])
        start = 0
        for end in range(1, len(same) + 1):
            if end == len(same) or same[end] != same[end - 1] + 1:
                yield sorted(int(p) for p in order[same[start] : same[end - 1] + 2])
                start = end

    def first_repeat(self, id_at: Callable[[int], str]) -> tuple[int, int, str] | None:
        """(first position, repeating position, id) of the earliest repeat in corpus order, or None."""
        best: tuple[int, int, str] | None = None
        for positions in self._runs():
            seen: dict[str, int] = {}
            for position in positions:
                doc_id = id_at(position)
                if doc_id in seen:
                    if best is None or position < best[1]:
                        best = (seen[doc_id], position, doc_id)
                    break
                seen[doc_id] = position
        return best
