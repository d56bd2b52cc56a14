"""Reading a collection's vectors from Milvus in bounded batches, with an optional filter, and sampling them.

Jobs that work on what a collection holds (clustering, deduplication) never load the collection at once:
``scan_collection`` pages through it with pymilvus' query iterator, and ``Reservoir`` keeps a uniform
sample of a stream of any length in fixed memory (Algorithm R, seeded), so a collection far larger than a
worker's RAM can be trained on and then assigned batch by batch.

The filter is the client's text: ``check_filter`` bounds it, and ``count_rows`` runs it once at submission,
so an expression Milvus cannot parse is INVALID_ARGUMENT before any job exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus

T = TypeVar("T")
# Milvus error codes that mean the server (not the request) is the problem.
_SERVER_SIDE_CODES = frozenset({1, 2, 90, 100, 101})


@dataclass(frozen=True)
class ScanBatch:
    """Rows of one read: primary keys, vectors (float32, as stored: normalized) and the other fields asked for."""

    pks: np.ndarray
    vectors: np.ndarray
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pks)


def check_filter(expr: str, max_bytes: int, where: str = "config.filter") -> str:
    """The client's filter expression if it is within the size limit and free of NUL bytes."""
    if "\x00" in expr:
        raise errors.InvalidArgument("the filter contains a NUL byte", where)
    if len(expr.encode()) > max_bytes:
        raise errors.InvalidArgument(f"the filter is longer than {max_bytes} bytes", where)
    return expr


def _milvus_call(call: Callable[[], T], what: str, where: str = "config.filter") -> T:
    """A Milvus read: server-side failures are UNAVAILABLE, anything else (a bad filter) INVALID_ARGUMENT."""
    try:
        return call()
    except MilvusException as exc:
        if exc.code in _SERVER_SIDE_CODES:
            raise errors.Unavailable(f"Milvus could not {what}: {exc.message}") from None
        raise errors.InvalidArgument(f"Milvus refused the filter: {exc.message}", where) from None


def count_rows(client: MilvusClient, collection: str, filter_expr: str) -> int:
    """Rows the filter selects (every row for ""); a filter Milvus cannot parse is INVALID_ARGUMENT."""
    rows = _milvus_call(
        lambda: client.query(collection, filter=filter_expr, output_fields=["count(*)"]), "count the rows"
    )
    return int(rows[0]["count(*)"])


def scan_collection(
    client: MilvusClient, collection: str, filter_expr: str, batch_size: int, fields: Sequence[str] = ()
) -> Iterator[ScanBatch]:
    """Every row the filter selects, ``batch_size`` at a time, with its vector and ``fields``."""
    output = [milvus.PK_FIELD, milvus.VECTOR_FIELD, *fields]
    iterator = _milvus_call(
        lambda: client.query_iterator(collection, batch_size=batch_size, filter=filter_expr, output_fields=output),
        "read the collection",
    )
    try:
        while rows := _milvus_call(iterator.next, "read the collection"):
            yield ScanBatch(
                pks=np.fromiter((int(r[milvus.PK_FIELD]) for r in rows), dtype=np.int64, count=len(rows)),
                vectors=np.asarray([r[milvus.VECTOR_FIELD] for r in rows], dtype=np.float32),
                rows=[{f: r.get(f) for f in fields} for r in rows],
            )
    finally:
        iterator.close()


class Reservoir:
    """A uniform sample of at most ``size`` vectors (and a payload per vector) of a stream of batches.

    Algorithm R, vectorized per batch: item ``i`` of the stream replaces slot ``j ~ U[0, i]`` when
    ``j < size``; with a fixed seed the same stream gives the same sample."""

    def __init__(self, size: int, dimensions: int, seed: int) -> None:
        self.size = size
        self.seen = 0
        self.vectors = np.empty((size, dimensions), dtype=np.float32)
        self.payloads: list[Any] = [None] * size
        self._rng = np.random.default_rng(seed)

    def add(self, vectors: np.ndarray, payload: Callable[[int], Any] | None = None) -> None:
        """Offer a batch; ``payload(i)`` is asked only for the rows that are kept."""
        n = len(vectors)
        positions = np.arange(self.seen, self.seen + n)
        slots = positions.copy()
        late = positions >= self.size
        slots[late] = self._rng.integers(0, positions[late] + 1)
        offered = np.flatnonzero(slots < self.size)
        # Two rows of one batch drawn for the same slot: the later one wins, as in a row-by-row pass.
        _, last = np.unique(slots[offered][::-1], return_index=True)
        kept = offered[::-1][last]
        self.vectors[slots[kept]] = vectors[kept]
        if payload is not None:
            for row in kept.tolist():
                self.payloads[slots[row]] = payload(row)
        self.seen += n

    def sample(self) -> tuple[np.ndarray, list[Any]]:
        """The sampled vectors and their payloads (fewer than ``size`` when the stream was shorter)."""
        kept = min(self.seen, self.size)
        return self.vectors[:kept], self.payloads[:kept]
