"""Cluster parts: read the collection's vectors from Milvus, cluster them, and write the row assignments
and the cluster summaries as Parquet tables beside the collection (``embedfleet/cluster_store.py``).

One part per job. k-means trains on a sample, so its cost is one pass over the collection to sample and
one to assign (a selection that fits the sample is read once and kept); every step runs in batches, so
memory is bounded by the sample, not the collection. A worker killed mid-way leaves no table half
written (each is moved into place whole) and the part is redone from the start by the runner.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
from pymilvus import MilvusClient

from embedfleet import milvus
from embedfleet.cluster import Summarizer, assign_all, fit, term_stride
from embedfleet.cluster_store import assignments, write_summaries
from embedfleet.collection_scan import DEFAULT_BATCH_ROWS, RowBatch, sample, scan
from embedfleet.datastore import location_uri
from embedfleet.domain import ClusterMethod, ClusterParams, JobSpec
from embedfleet.errors import FailedPrecondition
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext, check_cancelled

log = logging.getLogger(__name__)

# Cancellation is checked (one job read) every this many batches.
_CANCEL_CHECK_BATCHES = 10


class ClusterPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        params = part.spec.params
        assert isinstance(params, ClusterParams)
        client = ctx.sink().client
        _check_binding(client, part.spec, params.collection)
        metrics: dict[str, float] = {}
        in_memory = params.method == ClusterMethod.HDBSCAN or params.rows <= params.sample_size
        dimensions = part.spec.output_dimensions

        def rows() -> Iterator[RowBatch]:
            return scan(client, params.collection, expr=params.filter, with_text=True)

        if in_memory:  # read once, keep the rows: the sample is the whole selection
            held = RowBatch.concat(list(rows()), dimensions)
            vectors = held.vectors
        else:
            vectors = _sample(client, params, dimensions)
        assigner = fit(params, vectors, metrics)
        batches = held.split(DEFAULT_BATCH_ROWS) if in_memory else rows()
        summarizer = Summarizer(
            params.top_terms, params.representatives, params.seed, dimensions, term_stride(params.rows)
        )

        def progress(done: int, batches_done: int) -> None:
            ctx.store.report(part.job_id, done=done)
            if batches_done % _CANCEL_CHECK_BATCHES == 0:
                check_cancelled(ctx, part)

        with assignments(params.results) as table:
            done = assign_all(assigner, batches, summarizer, table, progress)
        summaries = summarizer.summaries()
        write_summaries(params.results, summaries, summarizer.map_points())
        noise = summarizer.sizes.get(-1, 0)
        metrics.update(clusters=float(sum(1 for s in summaries if s.cluster >= 0)), rows=float(done))
        ctx.store.report(
            part.job_id,
            metrics=metrics,
            outputs={
                "results_uri": location_uri(params.results.filesystem, params.results.directory),
                "method": params.method.value,
                "k": str(assigner.k),
                "noise": str(noise),
            },
        )
        log.info("job %s: %d rows in %d clusters (%d noise)", part.job_id, done, assigner.k, noise)
        return PartResult(done=0)  # the rows were reported as they were assigned


def _check_binding(client: MilvusClient, spec: JobSpec, collection: str) -> None:
    """The collection must still hold the vectors it held at submission (not dropped and refilled by another model)."""
    binding = milvus.require_binding(client, collection)
    if binding.model != spec.embedding.model or binding.dimensions != spec.output_dimensions:
        raise FailedPrecondition(
            f"collection {collection!r} now holds {binding.dimensions}-d vectors of {binding.model!r}; the job was "
            f"submitted for {spec.output_dimensions}-d vectors of {spec.embedding.model!r}. Submit it again."
        )


def _sample(client: MilvusClient, params: ClusterParams, dimensions: int) -> np.ndarray:
    """A uniform sample of ``sample_size`` vectors of the selection (one pass, without the texts)."""
    rows = sample(scan(client, params.collection, expr=params.filter), params.sample_size, dimensions, params.seed)
    if len(rows) == 0:
        raise FailedPrecondition(f"the filter selects no rows of {params.collection!r} any more")
    return rows.vectors
