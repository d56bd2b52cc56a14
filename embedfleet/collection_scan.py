"""Reading a collection's rows back out of Milvus in bounded batches: the input of dedup and clustering.

Both jobs need every row of a collection (or of the subset a filter expression selects): its primary
key, document id, vector and, when asked, its text. ``scan`` walks the collection with pymilvus'
``query_iterator``, so a worker holds one batch at a time whatever the collection's size. ``Reservoir``
keeps a uniform sample of a stream of batches in fixed memory (Algorithm R, seeded), with a payload per
kept row when the caller wants one (clustering's map keeps each point's cluster); ``sample`` is the
reservoir over a whole scan, for training k-means without holding the rest.

Filters come from clients: ``check_filter`` bounds them and refuses what is not an expression before
they reach Milvus, and ``probe`` runs them once (limit 1) so a syntax error is INVALID_ARGUMENT at
submission, not a failed job later (``count`` reports a bad filter the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus

# Rows per iterator batch: 2,000 384-d vectors are ~3 MB, well under gRPC's message limit.
DEFAULT_BATCH_ROWS = 2000
# The filter limit when the caller has no setting of its own (the gateways pass ``max_filter_bytes``).
MAX_FILTER_BYTES = 4096
# Milvus error codes that mean the server (not the request) is the problem.
_SERVER_SIDE_CODES = frozenset({1, 2, 90, 100, 101})
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

    def split(self, batch_rows: int) -> Iterator[RowBatch]:
        """The rows again, ``batch_rows`` at a time, in order (as ``scan`` would yield them)."""
        for start in range(0, len(self), batch_rows):
            yield self.take(np.arange(start, min(start + batch_rows, len(self))))


def check_filter(expr: str, field: str = "filter", max_bytes: int = MAX_FILTER_BYTES) -> str:
    """A client's filter expression, at most ``max_bytes``, stripped and free of control characters (NUL
    included); "" selects every row."""
    expr = expr.strip()
    if len(expr.encode()) > max_bytes:
        raise errors.InvalidArgument(f"filter is longer than {max_bytes} bytes; shorten it", field)
    if any(ord(c) < 32 for c in expr):
        raise errors.InvalidArgument("filter contains control characters; write it on one line", field)
    return expr


def probe(client: MilvusClient, collection: str, expr: str, field: str = "filter") -> None:
    """Run the filter once (limit 1) so that Milvus' verdict on its syntax comes back at submission."""
    if expr:
        _call(lambda: client.query(collection, filter=expr, limit=1, output_fields=[milvus.PK_FIELD]), field)


def count(client: MilvusClient, collection: str, expr: str = "", field: str = "filter") -> int:
    """Rows the filter selects (all rows when empty); a filter Milvus cannot parse is INVALID_ARGUMENT."""
    rows = _call(lambda: client.query(collection, filter=expr, output_fields=["count(*)"]), field)
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


class Reservoir:
    """A uniform sample of at most ``size`` rows of a stream of batches, and a payload per kept row.

    Algorithm R, vectorised per batch: row ``t`` (0-based) of the stream takes slot ``t`` while the
    reservoir fills, then replaces slot ``j ~ U[0, t]`` when ``j < size``. With a fixed seed the same
    stream gives the same sample; memory is ``size`` rows whatever the stream's length. Texts are kept
    when the batches carry them."""

    def __init__(self, size: int, dimensions: int, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self._dimensions = dimensions
        self._rows: RowBatch | None = None  # allocated on the first batch (texts or not)
        self._payloads: list[Any] = [None] * size
        self._rng = np.random.default_rng(seed)

    def add(self, batch: RowBatch, payload: Callable[[int], Any] | None = None) -> None:
        """Offer ``batch``; ``payload(i)`` is asked only for its rows ``i`` that are kept."""
        if self._rows is None:
            self._rows = RowBatch(
                pks=np.zeros(self.size, np.int64),
                ids=[""] * self.size,
                vectors=np.zeros((self.size, self._dimensions), np.float32),
                texts=[""] * self.size if batch.texts else [],
            )
        rows, n = self._rows, len(batch)
        slots = np.arange(self.seen, self.seen + n)
        late = slots >= self.size
        slots[late] = self._rng.integers(0, slots[late] + 1)
        offered = np.flatnonzero(slots < self.size)
        # Two rows of one batch drawn for the same slot: the later one wins, as in a row-by-row pass.
        _, last = np.unique(slots[offered][::-1], return_index=True)
        kept = offered[::-1][last]
        rows.pks[slots[kept]] = batch.pks[kept]
        rows.vectors[slots[kept]] = batch.vectors[kept]
        for row in kept.tolist():
            slot = int(slots[row])
            rows.ids[slot] = batch.ids[row]
            if rows.texts:
                rows.texts[slot] = batch.texts[row]
            if payload is not None:
                self._payloads[slot] = payload(row)
        self.seen += n

    def rows(self) -> RowBatch:
        """The sampled rows (fewer than ``size`` when the stream was shorter)."""
        if self._rows is None:
            return RowBatch.concat([], self._dimensions)
        return self._rows.take(np.arange(min(self.seen, self.size)))

    def payloads(self) -> list[Any]:
        """The payloads of ``rows()``, in its order (None where ``add`` was given no ``payload``)."""
        return self._payloads[: min(self.seen, self.size)]


def sample(batches: Iterable[RowBatch], size: int, dimensions: int, seed: int = 0) -> RowBatch:
    """A uniform sample of ``size`` rows of ``batches`` (all of them when fewer): a ``Reservoir`` over the
    stream, so memory is ``size`` rows plus one batch, whatever the number of rows read."""
    reservoir = Reservoir(size, dimensions, seed)
    for batch in batches:
        reservoir.add(batch)
    return reservoir.rows()


def _call(call: Callable[[], T], field: str) -> T:
    """A Milvus read; server-side failures are UNAVAILABLE, anything else (a bad filter) INVALID_ARGUMENT."""
    try:
        return call()
    except MilvusException as exc:
        if exc.code in _SERVER_SIDE_CODES:
            raise errors.Unavailable(f"Milvus could not read the collection: {exc.message}") from None
        raise errors.InvalidArgument(f"Milvus refused the filter: {exc.message}; fix the expression", field) from None
