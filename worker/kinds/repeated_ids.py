"""Ids repeated in a corpus by reference, found on the workers without holding every id in one process.

Nothing of such a corpus passes through the gateway, so a repeated id cannot be refused at submission
as a streamed one is (that would mean reading every file's ids in the submit call). Instead each part
writes the 128-bit digests of the ids it read, sorted, with their corpus rows, as one Parquet file in
the job's ``id_digests`` directory. No part knows it is last (as in dedup), so each one, once its own
file is in place, counts the files; one that sees them all reads them back a digest range at a time
(at most about ``BUCKET_ROWS`` rows in memory, whatever the corpus size: the files are sorted, so
Parquet's row-group statistics skip what lies outside the range) and reports the job's
``repeated_ids`` metric, the rows whose id an earlier row already had, with the first repeat named in
the job's outputs. Two parts that finish together both report the same figures.

A repeat is not an error of the part: index jobs upsert by id, so the collection holds one row per id
(the one written last), and an embed job's results hold every row. 128-bit digests make a false
repeat vanishingly unlikely (about 1e-21 among a billion ids); the repeat named is read back from the
corpus, so its message is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from embedfleet.corpus_refs import read_rows
from embedfleet.datastore import count_parts, open_filesystem, replacing
from embedfleet.domain import CorpusRef, Document, ResultsRef
from embedfleet.errors import echo
from embedfleet.ids import id_digests
from embedfleet.worker.kinds.base import Part, WorkerContext

# Digest rows per range read back by the check: 24 bytes each, so ranges of about 100 MB.
BUCKET_ROWS = 4_000_000
_ROW_GROUP = 65_536
_SPAN = 1 << 64


@dataclass(frozen=True)
class Repeats:
    """Rows whose id an earlier row had, and the earliest such (first row, repeating row) in corpus order."""

    count: int
    first: tuple[int, int] | None


def record(part: Part, ctx: WorkerContext, corpus: CorpusRef, where: ResultsRef, docs: list[Document]) -> None:
    """Write this part's digests and, if every part's are in place, check the job's ids and report."""
    first, _ = part.units
    write_part(where, part.index, [d.id for d in docs], first)
    if parts_written(where) < part.parts_total:
        return
    found = find_repeats(where, part.total)
    outputs = {"repeated_ids": str(found.count)}
    if found.first is not None:
        outputs["first_repeated_id"] = describe(corpus, *found.first)
    ctx.store.report(part.job_id, metrics={"repeated_ids": float(found.count)}, outputs=outputs)


def describe(corpus: CorpusRef, first: int, second: int) -> str:
    doc_id = read_rows(corpus, second, 1)[0].id
    return f"document {second}: id {echo(doc_id)} was already used by document {first}"


def write_part(where: ResultsRef, part: int, ids: Sequence[str], first_row: int) -> None:
    """One part's digests sorted by value, under a temporary name moved into place (a retried part
    replaces its own file; the check never reads half of one)."""
    fs, _ = open_filesystem(where.filesystem)
    values = id_digests(ids)
    order = np.lexsort((values[:, 1], values[:, 0]))
    table = pa.table(
        {
            "hi": pa.array(values[order, 0], pa.uint64()),
            "lo": pa.array(values[order, 1], pa.uint64()),
            "row": pa.array(first_row + order.astype(np.int64), pa.int64()),
        }
    )
    with replacing(fs, f"{where.directory}/part-{part:05d}.parquet") as out:
        pq.write_table(table, out, row_group_size=_ROW_GROUP)


def parts_written(where: ResultsRef) -> int:
    fs, _ = open_filesystem(where.filesystem)
    return count_parts(fs, where.directory)


def find_repeats(where: ResultsRef, rows: int) -> Repeats:
    """Every part's digests, one range of digest values at a time."""
    fs, _ = open_filesystem(where.filesystem)
    dataset = pads.dataset(where.directory, filesystem=fs, format="parquet")
    buckets = max(1, -(-rows // BUCKET_ROWS))
    step = _SPAN // buckets
    count = 0
    earliest: tuple[int, int] | None = None
    for bucket in range(buckets):
        hi = pc.field("hi")
        condition = hi >= pa.scalar(bucket * step, pa.uint64())
        if bucket < buckets - 1:
            condition = condition & (hi < pa.scalar((bucket + 1) * step, pa.uint64()))
        table = dataset.to_table(filter=condition)
        found = _repeats_in(
            table.column("hi").to_numpy(), table.column("lo").to_numpy(), table.column("row").to_numpy()
        )
        count += found.count
        if found.first is not None and (earliest is None or found.first[1] < earliest[1]):
            earliest = found.first
    return Repeats(count, earliest)


def _repeats_in(hi: np.ndarray, lo: np.ndarray, row: np.ndarray) -> Repeats:
    order = np.lexsort((row, lo, hi))
    hi, lo, row = hi[order], lo[order], row[order]
    repeat = np.zeros(len(row), dtype=bool)  # the same digest as the row before it (rows ascending)
    repeat[1:] = (hi[1:] == hi[:-1]) & (lo[1:] == lo[:-1])
    repeats = np.flatnonzero(repeat)
    if not len(repeats):
        return Repeats(0, None)
    group_first = row[np.flatnonzero(~repeat)][np.cumsum(~repeat) - 1]
    earliest = repeats[np.argmin(row[repeats])]
    return Repeats(len(repeats), (int(group_first[earliest]), int(row[earliest])))
