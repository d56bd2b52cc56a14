"""Reading a collection's rows back out of Milvus in bounded batches: the input of dedup and clustering.

Both jobs need every row of a collection (or of the subset a filter expression selects): its primary
key, document id, vector and, when asked, its text. ``scan`` walks the collection with pymilvus'
``query_iterator``, so a worker holds one batch at a time whatever the collection's size; ``sample``
keeps a uniform reservoir of rows for training k-means without holding the rest.

Filters come from clients: ``check_filter`` bounds them and refuses what is not an expression before
they reach Milvus, and ``probe`` runs them once (limit 1) so a syntax error is INVALID_ARGUMENT at
submission, not a failed job later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus

# Rows per iterator batch: 2,000 384-d vectors are ~3 MB, well under gRPC's message limit.
DEFAULT_BATCH_ROWS = 2000
MAX_FILTER_BYTES = 4096
# Milvus error codes that mean the server (not the request) is the problem.
_SERVER_SIDE_CODES = frozenset({1, 2, 90, 100})
T = TypeVar("T")


@dataclass(frozen=True)
class RowBatch:
    """Rows of a collection: ``pks`` int64 (n,), ``ids`` the document ids, ``vectors`` float32 (n, d),
    ``texts`` the stored texts (empty when the scan did not ask for them)."""

    pks: np.ndarray
    ids: list[str]
    vectors: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> RowBatch:
        """The rows at ``index`` (positions), in that order."""
        idx = [int(i) for i in index]
        return RowBatch(
            pks=self.pks[index],
            ids=[self.ids[i] for i in idx],
            vectors=self.vectors[index],
            texts=[self.texts[i] for i in idx] if self.texts else [],
        )

    @staticmethod
    def concat(batches: list[RowBatch], dimensions: int) -> RowBatch:
        """One batch of all rows of ``batches`` (an empty one with ``dimensions`` columns when none)."""
        if not batches:
            return RowBatch(np.zeros(0, np.int64), [], np.zeros((0, dimensions), np.float32), [])
        return RowBatch(
            pks=np.concatenate([b.pks for b in batches]),
            ids=[i for b in batches for i in b.ids],
            vectors=np.concatenate([b.vectors for b in batches]),
            texts=[t for b in batches for t in b.texts],
        )


def check_filter(expr: str, field: str = "filter") -> str:
    """A client's filter expression, bounded and free of control characters ("" selects every row)."""
    expr = expr.strip()
    if len(expr.encode()) > MAX_FILTER_BYTES:
        raise errors.InvalidArgument(f"filter is longer than {MAX_FILTER_BYTES} bytes; shorten it", field)
    if any(ord(c) < 32 for c in expr):
        raise errors.InvalidArgument("filter contains control characters; write it on one line", field)
    return expr


def probe(client: MilvusClient, collection: str, expr: str, field: str = "filter") -> None:
    """Run the filter once (limit 1) so that Milvus' verdict on its syntax comes back at submission."""
    if expr:
        _call(lambda: client.query(collection, filter=expr, limit=1, output_fields=[milvus.PK_FIELD]), field)


def count(client: MilvusClient, collection: str, expr: str = "") -> int:
    """Rows the filter selects (all rows when empty)."""
    rows = _call(lambda: client.query(collection, filter=expr, output_fields=["count(*)"]), "filter")
    return int(rows[0]["count(*)"])


def scan(
    client: MilvusClient,
    collection: str,
    *,
    expr: str = "",
    with_text: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    limit: int = -1,
) -> Iterator[RowBatch]:
    """Every row the filter selects, ``batch_rows`` at a time (at most ``limit`` rows when >= 0).

    Vectors come back as Milvus stores them (normalized by the index job), in the iterator's order."""
    fields = [milvus.PK_FIELD, milvus.ID_FIELD, milvus.VECTOR_FIELD] + ([milvus.TEXT_FIELD] if with_text else [])
    iterator = _call(
        lambda: client.query_iterator(
            collection, batch_size=batch_rows, limit=limit, filter=expr, output_fields=fields
        ),
        "filter",
    )
    try:
        while True:
            rows = _call(iterator.next, "filter")
            if not rows:
                return
            yield RowBatch(
                pks=np.fromiter((r[milvus.PK_FIELD] for r in rows), dtype=np.int64, count=len(rows)),
                ids=[r[milvus.ID_FIELD] for r in rows],
                vectors=np.asarray([r[milvus.VECTOR_FIELD] for r in rows], dtype=np.float32),
                texts=[r[milvus.TEXT_FIELD] for r in rows] if with_text else [],
            )
    finally:
        iterator.close()


def sample(batches: Iterator[RowBatch], size: int, dimensions: int, seed: int = 0) -> RowBatch:
    """A uniform sample of ``size`` rows of ``batches`` (all of them when fewer), by reservoir
    sampling: memory is ``size`` rows plus one batch, whatever the number of rows read."""
    rng = np.random.default_rng(seed)
    kept: RowBatch | None = None
    seen = 0
    for batch in batches:
        if kept is None or len(kept) < size:
            room = size - (len(kept) if kept is not None else 0)
            head = batch.take(np.arange(min(room, len(batch))))
            kept = head if kept is None else RowBatch.concat([kept, head], dimensions)
            rest = batch.take(np.arange(len(head), len(batch)))
            seen += len(head)
        else:
            rest = batch
        if len(rest) == 0:
            continue
        # Algorithm R, vectorised: row number t (1-based) replaces a random slot with probability size/t.
        t = seen + 1 + np.arange(len(rest))
        slots = (rng.random(len(rest)) * t).astype(np.int64)
        hits = np.nonzero(slots < size)[0]
        seen += len(rest)
        assert kept is not None
        for pos in hits:  # later rows overwrite earlier ones in the same slot, as the sequential loop would
            slot = int(slots[pos])
            kept.pks[slot] = rest.pks[pos]
            kept.ids[slot] = rest.ids[pos]
            kept.vectors[slot] = rest.vectors[pos]
            if kept.texts:
                kept.texts[slot] = rest.texts[pos]
    return kept if kept is not None else RowBatch.concat([], dimensions)


def _call(call: Callable[[], T], field: str) -> T:
    """A Milvus read; server-side failures are UNAVAILABLE, anything else (a bad filter) INVALID_ARGUMENT."""
    try:
        return call()
    except MilvusException as exc:
        if exc.code in _SERVER_SIDE_CODES:
            raise errors.Unavailable(f"Milvus could not read the collection: {exc.message}") from None
        raise errors.InvalidArgument(f"Milvus refused the filter: {exc.message}; fix the expression", field) from None
