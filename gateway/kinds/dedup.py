"""Dedup jobs, gateway side: validate the request against the collection, count the rows it selects and
plan one part per group of partitions (one part in exact mode).

The collection must exist (NOT_FOUND), and when the request names a model, be filled by it
(FAILED_PRECONDITION): a threshold means something only in the vector space it was chosen for. The
partitions are trained by the job's first part on a worker (``worker/kinds/dedup.py``), not here: a
submission reads no vectors, whatever the collection's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from embedfleet import collection_scan, errors, partitions
from embedfleet.dedup_store import DedupStore, StoredGroup
from embedfleet.domain import (
    DedupAction,
    DedupMode,
    DedupParams,
    EmbeddingOptions,
    JobSnapshot,
    JobState,
    KeepPolicy,
    ProgressUnit,
    ResultsRef,
)
from embedfleet.gateway import paging
from embedfleet.gateway.kinds.base import JobPlan, Submission, job_spec

# Exact mode compares all pairs of rows in one part: beyond this, use partitioned mode.
MAX_EXACT_ROWS = 200_000
MAX_PARTITIONS = 65_536
MAX_PROBE = 32
# Home + 7 neighbours: >= 0.99 of exact mode's pairs at cosine 0.80 on the Bible verse pairs (3 kept 0.96).
DEFAULT_PROBE = 8
# Parts of a partitioned job unless the request says: each part reads the collection once.
DEFAULT_PARTS = 8
MAX_PARTS = 256


@dataclass(frozen=True)
class DedupRequest:
    collection: str
    threshold: float
    mode: DedupMode = DedupMode.PARTITIONED
    policy: KeepPolicy = KeepPolicy.FIRST
    filter: str = ""
    model: str = ""
    partitions: int = 0
    n_probe: int = 0
    parts: int = 0
    skip_text_pass: bool = False
    mutual: bool = False
    action: DedupAction = DedupAction.DRY_RUN
    display_name: str = ""


def check_threshold(threshold: float, field: str = "config.threshold") -> float:
    """A cosine threshold in (0, 1]; shared with dedup on ingest."""
    if not (math.isfinite(threshold) and 0 < threshold <= 1):
        raise errors.InvalidArgument(
            f"threshold {threshold} must be a cosine similarity in (0, 1]; near-duplicates of "
            "all-MiniLM-L6-v2 are typically 0.8-0.95",
            field,
        )
    return threshold


class DedupPlanner:
    def plan(self, request: DedupRequest, sub: Submission) -> JobPlan:
        ctx = sub.ctx
        check_threshold(request.threshold)
        if not 0 <= request.n_probe <= MAX_PROBE:
            raise errors.InvalidArgument(
                f"n_probe must be between 1 and {MAX_PROBE} (0 means {DEFAULT_PROBE})", "config.n_probe"
            )
        if not 0 <= request.partitions <= MAX_PARTITIONS:
            raise errors.InvalidArgument(
                f"partitions must be between 1 and {MAX_PARTITIONS} (0 chooses about sqrt(rows))", "config.partitions"
            )
        if not 0 <= request.parts <= MAX_PARTS:
            raise errors.InvalidArgument(
                f"parts must be between 1 and {MAX_PARTS} (0 means {DEFAULT_PARTS})", "config.parts"
            )
        expr = collection_scan.check_filter(request.filter, "config.filter", ctx.settings.max_filter_bytes)
        client = ctx.milvus_client()
        collection = ctx.collection(request.collection)  # the caller's tenant's collection of that name
        binding = ctx.binding(collection)
        if binding is None:
            raise errors.NotFound(
                f"collection {request.collection!r} does not exist; run an index job to create it, or check the name"
            )
        try:
            model = ctx.resolve(EmbeddingOptions(model=request.model or binding.model))
        except errors.NotFound:
            if request.model:
                raise
            raise errors.FailedPrecondition(
                f"collection {request.collection!r} was filled by model {binding.model!r}, which this gateway's "
                "registry does not have; configure that model, or deduplicate a collection of a configured one"
            ) from None
        binding.check_compatible(
            request.collection, model=model.spec.name, dimensions=model.output_dimensions, version=None
        )
        collection_scan.probe(client, collection, expr, "config.filter")
        rows = collection_scan.count(client, collection, expr)
        if rows == 0:
            raise errors.FailedPrecondition(
                f"the filter selects no rows of {request.collection!r}; nothing to deduplicate"
            )
        if request.mode == DedupMode.EXACT and rows > MAX_EXACT_ROWS:
            raise errors.FailedPrecondition(
                f"exact mode compares all pairs of {rows} rows in one part; above {MAX_EXACT_ROWS} rows use "
                "partitioned mode"
            )
        data = ctx.datastore
        output = ResultsRef(filesystem=data.uri, directory=f"{data.job_dir(sub.stager.job_id)}/dedup")
        k, parts = 1, 1
        if request.mode == DedupMode.PARTITIONED:
            k = min(request.partitions or partitions.default_k(rows), rows)
            parts = min(request.parts or DEFAULT_PARTS, k)
        params = DedupParams(
            collection=collection,
            filter=expr,
            mode=request.mode,
            threshold=request.threshold,
            policy=request.policy,
            partitions=k,
            n_probe=request.n_probe or DEFAULT_PROBE,
            text_pass=not request.skip_text_pass,
            mutual=request.mutual,
            action=request.action,
            rows=rows,
            output=output,
        )
        spec = job_spec(params, model, unit=ProgressUnit.DOCUMENTS, display_name=request.display_name)
        audit = None
        if params.action == DedupAction.DELETE:
            audit = (
                "dedup.delete",
                {"collection": params.collection, "filter": params.filter, "threshold": str(params.threshold)},
            )
        return JobPlan(spec, total=rows, parts=parts, audit=audit)


def read_groups(snapshot: JobSnapshot, page_size: int, page_token: str) -> tuple[list[StoredGroup], str, int]:
    """(a page of a dedup job's groups, the next page's token, the number of groups); the token is the
    offset of the next group, which only a finished job's fixed groups file makes stable."""
    params = snapshot.spec.params
    if not isinstance(params, DedupParams):
        raise errors.FailedPrecondition(f"job {snapshot.id} is a {snapshot.spec.kind.value} job, not a dedup job")
    if snapshot.state != JobState.SUCCEEDED:
        raise errors.FailedPrecondition(
            f"job {snapshot.id} is {snapshot.state.value}; its groups can be read once it has SUCCEEDED "
            f"(embedfleet wait {snapshot.id})"
        )
    size = paging.page_size(page_size)
    if page_token and not page_token.isdigit():
        raise errors.InvalidArgument(
            "page_token is not one this server issued; omit it for the first page", "page_token"
        )
    offset = int(page_token or 0)
    groups, total = DedupStore(params.output).read_groups(offset, size)
    end = offset + len(groups)
    return groups, (str(end) if end < total else ""), total
