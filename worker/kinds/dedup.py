"""Dedup parts: find the near-duplicate pairs of one group of partitions (or of the whole collection in
exact mode), write them to the dataset store, and let the part that completes the set merge them.

A part reads the collection in batches (``collection_scan``) and keeps only the rows its partitions
need: those at home in them and those that probe them from a neighbouring one. Identical texts
(``dedup.text_key``) pair at similarity 1.0 and only one of them takes part in vector comparisons.

In partitioned mode every part assigns rows to the same centroids. The first part to need them trains
them on a sample of the collection and writes them to the dataset store; the others wait for that file
(a claim in the job store says who trains, and lapses should its part die, so another takes over).
Training here rather than at submission keeps ``SubmitDedupJob`` quick on a large collection. The sample
is a reservoir of the first rows the scan yields (``SAMPLE_SCAN_FACTOR`` times its size), which bounds
the cost on a large collection.

No part knows it is last, so each one, once its own files are in place, counts the parts' files; the
one that sees them all merges (``dedup_merge``). Two parts that finish together may both merge: the
merge is deterministic and deleting a row twice removes it once, so that costs time, not correctness.
A killed part is redone by the runner, and redoing it rewrites the same files.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
from pymilvus import MilvusClient

from embedfleet import collection_scan, dedup, partitions
from embedfleet.collection_scan import RowBatch
from embedfleet.dedup_store import DedupStore, PartFindings
from embedfleet.domain import DedupMode, DedupParams, KeepPolicy
from embedfleet.heartbeat import Heartbeat
from embedfleet.partitions import Partitioner
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext, check_cancelled
from embedfleet.worker.kinds.dedup_merge import merge

# Cancellation is checked every this many partitions.
_CANCEL_CHECK_PARTITIONS = 16
# Training points per centroid (faiss uses at most 256 per centroid anyway).
SAMPLE_PER_PARTITION = 64
SAMPLE_SCAN_FACTOR = 4
# The training claim's lease (renewed a third of it at a time while training runs), and how often a part
# waiting for another part's centroids looks for them.
TRAIN_LEASE_S = 30.0
TRAIN_POLL_S = 0.5
CENTROIDS_TASK = "centroids"


class DedupPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        params = part.spec.params
        assert isinstance(params, DedupParams)
        store = DedupStore(params.output)
        client = ctx.sink().client
        with_text = params.text_pass or params.policy == KeepPolicy.LONGEST
        batches = collection_scan.scan(client, params.collection, expr=params.filter, with_text=with_text)
        dims = part.spec.output_dimensions
        if params.mode == DedupMode.EXACT:
            rows = RowBatch.concat(list(batches), dims)
            probes = np.zeros((len(rows), 1), np.int64)
            mine = [0]
        else:
            partitioner = Partitioner(shared_centroids(part, ctx, store, client))
            mine = [p for p in range(partitioner.k) if p % part.parts_total == part.index]
            rows, probes = _rows_of(batches, partitioner, params.n_probe, mine, dims)
        found = find_pairs(rows, probes, mine, params, lambda: check_cancelled(ctx, part))
        store.write_part(part.index, findings(rows, found))
        if store.parts_written() >= part.parts_total:
            merge(params, store, part.parts_total, client, ctx.store, part.job_id)
        return PartResult(done=part.units[1])


def shared_centroids(part: Part, ctx: WorkerContext, store: DedupStore, client: MilvusClient) -> np.ndarray:
    """The job's centroids: trained by the first part that needs them, read by every other one."""
    token = uuid.uuid4().hex
    while (centroids := store.read_centroids()) is None:
        if ctx.store.claim_task(part.job_id, CENTROIDS_TASK, token, TRAIN_LEASE_S):
            try:
                # Trained and released by another part between the read above and this claim: use those.
                centroids = store.read_centroids()
                if centroids is None:
                    renew = functools.partial(ctx.store.renew_task, part.job_id, CENTROIDS_TASK, token, TRAIN_LEASE_S)
                    with Heartbeat(renew, TRAIN_LEASE_S / 3, f"dedup-train-{part.job_id}"):
                        centroids = train_centroids(client, part)
                    store.write_centroids(centroids)
            finally:
                ctx.store.release_task(part.job_id, CENTROIDS_TASK, token)
            return centroids
        check_cancelled(ctx, part)
        time.sleep(TRAIN_POLL_S)
    return centroids


def train_centroids(client: MilvusClient, part: Part) -> np.ndarray:
    """Spherical k-means (``params.partitions`` centroids) on a sample of the selected rows."""
    params = part.spec.params
    assert isinstance(params, DedupParams)
    size = min(params.rows, params.partitions * SAMPLE_PER_PARTITION)
    scan = collection_scan.scan(client, params.collection, expr=params.filter, limit=size * SAMPLE_SCAN_FACTOR)
    sample = collection_scan.sample(scan, size, part.spec.output_dimensions)
    return partitions.train(sample.vectors, params.partitions).centroids


def _rows_of(
    batches: Iterator[RowBatch], partitioner: Partitioner, n_probe: int, mine: list[int], dims: int
) -> tuple[RowBatch, np.ndarray]:
    """The rows (and their probe lists) that the partitions ``mine`` need, one batch in memory at a time."""
    kept: list[RowBatch] = []
    kept_probes: list[np.ndarray] = []
    wanted = np.asarray(mine, dtype=np.int64)
    for batch in batches:
        probes = partitioner.assign(batch.vectors, n_probe)
        keep = np.nonzero(np.isin(probes, wanted).any(axis=1))[0]
        kept.append(batch.take(keep))
        kept_probes.append(probes[keep])
    probes = np.concatenate(kept_probes) if kept_probes else np.zeros((0, max(1, n_probe)), np.int64)
    return RowBatch.concat(kept, dims), probes


def find_pairs(
    rows: RowBatch,
    probes: np.ndarray,
    partitions: list[int],
    params: DedupParams,
    check: Callable[[], None] | None = None,
) -> dedup.Pairs:
    """Pairs (as positions in ``rows``) within ``partitions``: identical texts first, then vectors of
    one row per text. Exact mode passes a single partition that every row is at home in."""
    if params.text_pass and rows.texts:
        keys = np.fromiter((dedup.text_key(t) for t in rows.texts), dtype=np.int64, count=len(rows))
        text_pairs, reps = dedup.text_pairs(keys)
    else:
        text_pairs, reps = dedup.Pairs.concat([]), np.arange(len(rows))
    vectors = np.ascontiguousarray(rows.vectors[reps])
    rep_probes = probes[reps]
    found = [text_pairs]
    if params.mode == DedupMode.EXACT:
        found.append(dedup.exact_pairs(vectors, params.threshold).remap(reps))
    else:
        for n, (_, members, guests) in enumerate(dedup.partition_members(rep_probes, partitions)):
            if check is not None and n % _CANCEL_CHECK_PARTITIONS == 0:
                check()
            found.append(dedup.pairs_in_partition(vectors, members, guests, params.threshold).remap(reps))
    return dedup.Pairs.concat(found)


def findings(rows: RowBatch, pairs: dedup.Pairs) -> PartFindings:
    """A part's pairs by primary key, with the rows they touch."""
    touched = np.unique(np.concatenate([pairs.left, pairs.right]))
    sub = rows.take(touched)
    return PartFindings(
        left=rows.pks[pairs.left],
        right=rows.pks[pairs.right],
        similarity=pairs.similarity.astype(np.float32),
        pks=sub.pks,
        ids=sub.ids,
        text_bytes=np.asarray([len(t.encode()) for t in sub.texts] if sub.texts else [0] * len(sub), np.int64),
        vectors=sub.vectors,
    )
