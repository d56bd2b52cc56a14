"""Conversions between the v1 protobuf messages and the domain types: nothing else.

Enum tables and the vector layout are ``embedfleet.wire``'s (shared with the client).
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from embedfleet import errors, wire
from embedfleet.apikeys import ApiKey, Role
from embedfleet.cluster_types import Assignment, ClusterSummary, MapPoint
from embedfleet.datastore import location_uri
from embedfleet.dedup_store import StoredGroup
from embedfleet.domain import (
    ClusterParams,
    DedupParams,
    Document,
    EmbeddingOptions,
    EmbedParams,
    IndexSpec,
    JobSnapshot,
    JobState,
    SearchHit,
    VectorField,
)
from embedfleet.gateway import tenancy
from embedfleet.gateway.collections import CollectionInfo
from embedfleet.gateway.embedding import EmbedResult
from embedfleet.gateway.kinds.cluster import ClusterRequest
from embedfleet.gateway.kinds.dedup import DedupRequest
from embedfleet.gateway.kinds.distill import DistillRequest
from embedfleet.gateway.kinds.embed import EmbedJobRequest
from embedfleet.gateway.kinds.evaluate import EvaluateRequest
from embedfleet.gateway.kinds.index import IndexRequest, IngestDedupRequest
from embedfleet.gateway.kinds.references import CorpusReference
from embedfleet.gateway.models import ModelStatus
from embedfleet.gateway.search import SearchRequest
from embedfleet.gateway.status import DeploymentStatus
from embedfleet.jobstore import PartVectors
from embedfleet.v1 import (
    collections_pb2,
    common_pb2,
    embed_pb2,
    jobs_pb2,
    keys_pb2,
    models_pb2,
    search_pb2,
    status_pb2,
)


def options_from_pb(pb: common_pb2.EmbeddingOptions, field: str = "options") -> EmbeddingOptions:
    return EmbeddingOptions(
        model=pb.model,
        dimensions=pb.dimensions,
        precision=wire.PRECISION.from_pb(pb.precision, f"{field}.precision"),
        input_type=wire.INPUT_TYPE.from_pb(pb.input_type, f"{field}.input_type"),
        normalize=pb.normalize if pb.HasField("normalize") else True,
    )


def options_to_pb(options: EmbeddingOptions) -> common_pb2.EmbeddingOptions:
    return common_pb2.EmbeddingOptions(
        model=options.model,
        dimensions=options.dimensions,
        precision=wire.PRECISION.to_pb(options.precision),  # type: ignore[arg-type]
        input_type=wire.INPUT_TYPE.to_pb(options.input_type),  # type: ignore[arg-type]
        normalize=options.normalize,
    )


def field_from_pb(pb: jobs_pb2.VectorField, where: str) -> VectorField:
    return VectorField(
        name=pb.name,
        dimensions=pb.dimensions,
        precision=wire.PRECISION.from_pb(pb.precision, f"{where}.precision"),
        bits=wire.BIT_BASIS.optional_from_pb(pb.bits, f"{where}.bits"),
    )


def reference_from_pb(source: jobs_pb2.CorpusSource) -> CorpusReference | None:
    """The corpus reference a source names; None when it names none (``uri`` empty)."""
    if not source.uri:
        return None
    return CorpusReference(
        uri=source.uri,
        format=wire.CORPUS_FORMAT.optional_from_pb(source.format, "config.source.format"),
        id_column=source.id_column,
        text_column=source.text_column,
        metadata_column=source.metadata_column,
    )


def index_from_pb(config: jobs_pb2.IndexJobConfig) -> IndexRequest:
    return IndexRequest(
        embedding=options_from_pb(config.embedding, "config.embedding"),
        collection=config.collection,
        source_path=config.source.path,
        reference=reference_from_pb(config.source),
        chunk_size=config.chunk_size,
        display_name=config.display_name,
        extra_fields=tuple(field_from_pb(f, f"config.extra_fields[{i}]") for i, f in enumerate(config.extra_fields)),
        index=IndexSpec(type=config.index.type, params=dict(config.index.params)),
        dedup=(
            IngestDedupRequest(
                threshold=config.dedup.threshold,
                action=wire.INGEST_DEDUP_ACTION.from_pb(config.dedup.action, "config.dedup.action"),
            )
            if config.HasField("dedup")
            else None
        ),
    )


def embed_job_from_pb(config: jobs_pb2.EmbedJobConfig) -> EmbedJobRequest:
    return EmbedJobRequest(
        embedding=options_from_pb(config.embedding, "config.embedding"),
        source_path=config.source.path,
        reference=reference_from_pb(config.source),
        output_uri=config.output_uri,
        chunk_size=config.chunk_size,
        display_name=config.display_name,
    )


def distill_from_pb(config: jobs_pb2.DistillJobConfig) -> DistillRequest:
    return DistillRequest(
        student_name=config.student_name,
        teacher=config.teacher,
        keep_layers=config.keep_layers,
        init_model=config.init_model,
        source_path=config.source.path,
        texts=tuple(config.texts),
        max_steps=config.max_steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        matryoshka_dimensions=tuple(config.matryoshka_dimensions),
        min_quality_fraction=config.min_quality_fraction,
        eval_limit=config.eval_limit,
        display_name=config.display_name,
    )


def evaluate_from_pb(config: jobs_pb2.EvaluateJobConfig) -> EvaluateRequest:
    return EvaluateRequest(
        model=config.model,
        dimensions=tuple(config.dimensions),
        teacher=config.teacher,
        eval_limit=config.eval_limit,
        display_name=config.display_name,
    )


def state_filter_from_pb(state: int) -> JobState | None:
    return wire.JOB_STATE.optional_from_pb(state, "state")


def documents_from_pb(batch: common_pb2.DocumentBatch) -> list[Document]:
    return [Document(id=d.id, text=d.text, metadata_json=d.metadata_json) for d in batch.documents]


def _timestamp(seconds: float | None) -> Timestamp | None:
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def job_to_pb(snap: JobSnapshot) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        id=snap.id,
        kind=wire.JOB_KIND.to_pb(snap.spec.kind),  # type: ignore[arg-type]
        state=wire.JOB_STATE.to_pb(snap.state),  # type: ignore[arg-type]
        display_name=snap.spec.display_name,
        model=snap.spec.embedding.model,
        collection=tenancy.display_collection(snap.spec.collection),
        embedding=options_to_pb(snap.spec.embedding),
        progress=jobs_pb2.JobProgress(
            total=snap.total,
            done=snap.done,
            failed=snap.failed,
            truncated=snap.truncated,
            chunks_total=snap.parts_total,
            chunks_finished=snap.parts_finished,
        ),
        docs_per_second=snap.docs_per_second(),
        eta_seconds=snap.eta_seconds(),
        created_at=_timestamp(snap.created_at),
        started_at=_timestamp(snap.started_at),
        finished_at=_timestamp(snap.finished_at),
        error=snap.error,
        failed_chunks=[
            jobs_pb2.ChunkFailure(
                chunk_index=f.part, first_document=f.first_unit, document_count=f.units, message=f.message
            )
            for f in snap.failed_parts
        ],
        failed_documents=[jobs_pb2.DocumentFailure(id=f.id, message=f.message) for f in snap.failed_documents],
        metrics=snap.metrics,
        outputs=snap.outputs,
        results_uri=_results_uri(snap),
    )


def _results_uri(snap: JobSnapshot) -> str:
    params = snap.spec.params
    results = params.results if isinstance(params, EmbedParams | ClusterParams) else None
    if isinstance(params, DedupParams):
        results = params.output
    return location_uri(results.filesystem, results.directory) if results is not None else ""


def part_result_to_pb(part: int, first: int, result: PartVectors) -> jobs_pb2.StreamJobResultsResponse:
    return jobs_pb2.StreamJobResultsResponse(
        chunk_index=part,
        first_document=first,
        embeddings=wire.embedding_batch(result.ids, result.data, result.dimensions, result.precision),
    )


def embed_result_to_pb(result: EmbedResult) -> embed_pb2.EmbedResponse:
    return embed_pb2.EmbedResponse(
        embeddings=wire.embedding_batch(
            [str(i) for i in range(result.rows)], result.data, result.dimensions, result.precision
        ),
        model=result.model,
        model_version=result.version,
        truncated=result.truncated,
    )


def model_to_pb(status: ModelStatus) -> models_pb2.ModelInfo:
    spec = status.spec
    return models_pb2.ModelInfo(
        name=spec.name,
        role=wire.MODEL_ROLE.to_pb(spec.role),  # type: ignore[arg-type]
        dimensions=spec.dimensions,
        matryoshka_dimensions=list(spec.matryoshka_dimensions),
        max_seq_length=spec.max_seq_length,
        version=status.version,
        backend=spec.backend,
        query_prompt=spec.query_prompt,
        document_prompt=spec.document_prompt,
        is_default=status.is_default,
        workers=status.workers,
        origin=status.origin,
        metrics=status.metrics,
    )


def search_from_pb(request: search_pb2.SearchRequest) -> SearchRequest:
    queries = ((request.query,) if request.query else ()) + tuple(request.queries)
    return SearchRequest(
        collection=request.collection,
        queries=queries,
        top_k=request.top_k,
        filter=request.filter,
        mode=wire.SEARCH_MODE.from_pb(request.mode, "mode"),
        candidates=request.candidates,
        ef=request.ef,
        nprobe=request.nprobe,
    )


def search_to_pb(queries: tuple[str, ...], results: list[list[SearchHit]], model: str) -> search_pb2.SearchResponse:
    per_query = [
        search_pb2.QueryHits(query=text, hits=[hit_to_pb(h) for h in hits])
        for text, hits in zip(queries, results, strict=True)
    ]
    return search_pb2.SearchResponse(hits=per_query[0].hits if per_query else [], model=model, results=per_query)


def hit_to_pb(hit: SearchHit) -> search_pb2.SearchHit:
    return search_pb2.SearchHit(id=hit.id, score=hit.score, text=hit.text, metadata_json=hit.metadata_json)


def status_to_pb(status: DeploymentStatus) -> status_pb2.GetStatusResponse:
    return status_pb2.GetStatusResponse(
        workers=[
            status_pb2.WorkerStatus(
                worker_id=w.get("worker_id", ""),
                device=w.get("device", ""),
                models=w.get("models", {}),
                metrics_address=w.get("metrics", ""),
            )
            for w in status.workers
        ],
        parts_queued=status.activity.parts_waiting,
        parts_running=status.activity.parts["running"],
        jobs=[job_to_pb(j) for j in status.jobs],
        active_jobs=status.active_jobs,
    )


def dedup_from_pb(config: jobs_pb2.DedupJobConfig) -> DedupRequest:
    return DedupRequest(
        collection=config.collection,
        threshold=config.threshold,
        mode=wire.DEDUP_MODE.from_pb(config.mode, "config.mode"),
        policy=wire.KEEP_POLICY.from_pb(config.policy, "config.policy"),
        filter=config.filter,
        model=config.model,
        partitions=config.partitions,
        n_probe=config.n_probe,
        parts=config.parts,
        skip_text_pass=config.skip_text_pass,
        mutual=config.mutual_best,
        action=wire.DEDUP_ACTION.from_pb(config.action, "config.action"),
        display_name=config.display_name,
    )


def dedup_groups_to_pb(groups: list[StoredGroup], token: str, total: int) -> jobs_pb2.GetDedupGroupsResponse:
    return jobs_pb2.GetDedupGroupsResponse(
        groups=[
            jobs_pb2.DedupGroup(kept_id=g.kept_id, removed_ids=g.removed_ids, similarity=g.similarity) for g in groups
        ],
        next_page_token=token,
        total_groups=total,
    )


def cluster_from_pb(config: jobs_pb2.ClusterJobConfig) -> ClusterRequest:
    return ClusterRequest(
        collection=config.collection,
        filter=config.filter,
        method=wire.CLUSTER_METHOD.from_pb(config.method, "config.method"),
        k=config.k,
        k_min=config.k_min,
        k_max=config.k_max,
        sample_size=config.sample_size,
        min_cluster_size=config.min_cluster_size,
        min_samples=config.min_samples,
        top_terms=config.top_terms,
        representatives=config.representatives,
        model=config.model,
        seed=config.seed,
        display_name=config.display_name,
    )


def cluster_to_pb(summary: ClusterSummary, with_documents: bool = True) -> jobs_pb2.ClusterSummary:
    return jobs_pb2.ClusterSummary(
        cluster_id=summary.cluster,
        size=summary.size,
        terms=[jobs_pb2.ClusterTerm(term=t, score=s) for t, s in summary.terms],
        representatives=[
            jobs_pb2.ClusterDocument(id=r.id, text=r.text, similarity=r.similarity)
            for r in (summary.representatives if with_documents else [])
        ],
    )


def assignment_to_pb(row: Assignment) -> jobs_pb2.ClusterAssignment:
    return jobs_pb2.ClusterAssignment(id=row.id, cluster_id=row.cluster, similarity=row.similarity)


def map_to_pb(points: list[MapPoint], summaries: list[ClusterSummary]) -> jobs_pb2.GetClusterMapResponse:
    return jobs_pb2.GetClusterMapResponse(
        points=[jobs_pb2.ClusterMapPoint(id=p.id, cluster_id=p.cluster, x=p.x, y=p.y, text=p.text) for p in points],
        clusters=[cluster_to_pb(s, with_documents=False) for s in summaries],
        projection="pca",
    )


# -- API keys -------------------------------------------------------------------------------------
def key_to_pb(key: ApiKey) -> keys_pb2.ApiKey:
    return keys_pb2.ApiKey(
        key_id=key.key_id,
        tenant=key.tenant,
        role=wire.ROLE.to_pb(key.role),  # type: ignore[arg-type]
        name=key.name,
        created_at=_timestamp(key.created_at),
    )


def role_from_pb(number: int) -> Role:
    if number == 0:
        raise errors.InvalidArgument("role is required: reader, writer or admin", "role")
    return wire.ROLE.from_pb(number, "role")


def collection_to_pb(info: CollectionInfo) -> collections_pb2.Collection:
    binding = info.binding
    return collections_pb2.Collection(
        name=info.name,
        model=binding.model,
        model_version=binding.model_version,
        dimensions=binding.dimensions,
        fields=[
            jobs_pb2.VectorField(
                name=f.name,
                dimensions=f.dimensions,
                precision=wire.PRECISION.to_pb(f.precision),  # type: ignore[arg-type]
                bits=wire.BIT_BASIS.to_pb(f.bits),  # type: ignore[arg-type]
            )
            for f in binding.fields
        ],
        index=jobs_pb2.IndexSpec(type=binding.index.type, params=dict(binding.index.params)),
        row_count=info.row_count,
        active_job_ids=info.active_job_ids,
    )
