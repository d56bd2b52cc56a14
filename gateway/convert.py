"""Conversions between the v1 protobuf messages and the domain types: nothing else."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from embedfleet.domain import (
    Document,
    EmbeddingOptions,
    InputType,
    JobKind,
    JobSnapshot,
    JobState,
    Precision,
    VectorField,
)
from embedfleet.gateway.service import (
    DistillRequest,
    EmbedResult,
    EvaluateRequest,
    ModelStatus,
    SearchHit,
)
from embedfleet.jobstore import ChunkResultVectors, pack_vectors
from embedfleet.registry import ModelRole
from embedfleet.v1 import common_pb2, embed_pb2, jobs_pb2, models_pb2, search_pb2

_PRECISION_TO_PB = {
    Precision.FLOAT32: common_pb2.PRECISION_FLOAT32,
    Precision.FLOAT16: common_pb2.PRECISION_FLOAT16,
    Precision.INT8: common_pb2.PRECISION_INT8,
    Precision.BINARY: common_pb2.PRECISION_BINARY,
}
_PRECISION_FROM_PB = {v: k for k, v in _PRECISION_TO_PB.items()} | {common_pb2.PRECISION_UNSPECIFIED: Precision.FLOAT32}
_INPUT_TO_PB = {InputType.QUERY: common_pb2.INPUT_TYPE_QUERY, InputType.DOCUMENT: common_pb2.INPUT_TYPE_DOCUMENT}
_INPUT_FROM_PB = {v: k for k, v in _INPUT_TO_PB.items()} | {common_pb2.INPUT_TYPE_UNSPECIFIED: InputType.DOCUMENT}
_STATE_TO_PB = {
    JobState.QUEUED: jobs_pb2.JOB_STATE_QUEUED,
    JobState.RUNNING: jobs_pb2.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: jobs_pb2.JOB_STATE_SUCCEEDED,
    JobState.FAILED: jobs_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: jobs_pb2.JOB_STATE_CANCELLED,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}
_KIND_TO_PB = {
    JobKind.INDEX: jobs_pb2.JOB_KIND_INDEX,
    JobKind.EMBED: jobs_pb2.JOB_KIND_EMBED,
    JobKind.DISTILL: jobs_pb2.JOB_KIND_DISTILL,
    JobKind.EVALUATE: jobs_pb2.JOB_KIND_EVALUATE,
}
_ROLE_TO_PB = {
    ModelRole.TEACHER: models_pb2.MODEL_ROLE_TEACHER,
    ModelRole.STUDENT: models_pb2.MODEL_ROLE_STUDENT,
    ModelRole.MRL: models_pb2.MODEL_ROLE_MRL,
}


def options_from_pb(pb: common_pb2.EmbeddingOptions) -> EmbeddingOptions:
    return EmbeddingOptions(
        model=pb.model,
        dimensions=pb.dimensions,
        precision=_PRECISION_FROM_PB.get(pb.precision, Precision.FLOAT32),
        input_type=_INPUT_FROM_PB.get(pb.input_type, InputType.DOCUMENT),
        normalize=pb.normalize if pb.HasField("normalize") else True,
    )


def options_to_pb(options: EmbeddingOptions) -> common_pb2.EmbeddingOptions:
    return common_pb2.EmbeddingOptions(
        model=options.model,
        dimensions=options.dimensions,
        precision=_PRECISION_TO_PB[options.precision],
        input_type=_INPUT_TO_PB[options.input_type],
        normalize=options.normalize,
    )


def field_from_pb(pb: jobs_pb2.VectorField) -> VectorField:
    return VectorField(
        name=pb.name, dimensions=pb.dimensions, precision=_PRECISION_FROM_PB.get(pb.precision, Precision.FLOAT32)
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


def state_from_pb(state: int) -> JobState | None:
    return _STATE_FROM_PB.get(state)  # type: ignore[call-overload]


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
        kind=_KIND_TO_PB[snap.spec.kind],
        state=_STATE_TO_PB[snap.state],
        display_name=snap.spec.display_name,
        model=snap.spec.embedding.model,
        collection=snap.spec.collection,
        embedding=options_to_pb(snap.spec.embedding),
        progress=jobs_pb2.JobProgress(
            total=snap.total,
            done=snap.done,
            failed=snap.failed,
            truncated=snap.truncated,
            chunks_total=snap.chunks_total,
            chunks_finished=snap.chunks_finished,
        ),
        docs_per_second=snap.docs_per_second(),
        eta_seconds=snap.eta_seconds(),
        created_at=_timestamp(snap.created_at),
        started_at=_timestamp(snap.started_at),
        finished_at=_timestamp(snap.finished_at),
        error=snap.error,
        failed_chunks=[
            jobs_pb2.ChunkFailure(
                chunk_index=f.chunk_index,
                first_document=f.first_document,
                document_count=f.document_count,
                message=f.message,
            )
            for f in snap.failed_chunks
        ],
        metrics=snap.metrics,
        outputs=snap.outputs,
    )


def chunk_result_to_pb(chunk: int, first: int, result: ChunkResultVectors) -> jobs_pb2.StreamJobResultsResponse:
    return jobs_pb2.StreamJobResultsResponse(
        chunk_index=chunk,
        first_document=first,
        embeddings=common_pb2.EmbeddingBatch(
            ids=result.ids,
            dimensions=result.dimensions,
            precision=_PRECISION_TO_PB[Precision(result.precision)],
            data=result.data,
        ),
    )


def embed_result_to_pb(result: EmbedResult) -> embed_pb2.EmbedResponse:
    return embed_pb2.EmbedResponse(
        embeddings=common_pb2.EmbeddingBatch(
            ids=[str(i) for i in range(result.vectors.shape[0])],
            dimensions=result.dimensions,
            precision=_PRECISION_TO_PB[result.precision],
            data=pack_vectors(result.vectors),
        ),
        model=result.model,
        model_version=result.version,
        truncated=result.truncated,
    )


def model_to_pb(status: ModelStatus) -> models_pb2.ModelInfo:
    spec = status.spec
    return models_pb2.ModelInfo(
        name=spec.name,
        role=_ROLE_TO_PB[spec.role],
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


def hit_to_pb(hit: SearchHit) -> search_pb2.SearchHit:
    return search_pb2.SearchHit(id=hit.id, score=hit.score, text=hit.text, metadata_json=hit.metadata_json)
