"""What the SDK returns: plain dataclasses built from the v1 messages (no protobuf in user code)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embedfleet.domain import JobState, Precision
from embedfleet.v1 import common_pb2, embed_pb2, jobs_pb2, models_pb2, search_pb2

_STATE = {
    jobs_pb2.JOB_STATE_QUEUED: JobState.QUEUED,
    jobs_pb2.JOB_STATE_RUNNING: JobState.RUNNING,
    jobs_pb2.JOB_STATE_SUCCEEDED: JobState.SUCCEEDED,
    jobs_pb2.JOB_STATE_FAILED: JobState.FAILED,
    jobs_pb2.JOB_STATE_CANCELLED: JobState.CANCELLED,
}
_PRECISION = {
    common_pb2.PRECISION_UNSPECIFIED: Precision.FLOAT32,
    common_pb2.PRECISION_FLOAT32: Precision.FLOAT32,
    common_pb2.PRECISION_FLOAT16: Precision.FLOAT16,
    common_pb2.PRECISION_INT8: Precision.INT8,
    common_pb2.PRECISION_BINARY: Precision.BINARY,
}
_DTYPE = {Precision.FLOAT32: "<f4", Precision.FLOAT16: "<f2", Precision.INT8: "i1", Precision.BINARY: "u1"}


@dataclass(frozen=True)
class FailedChunk:
    chunk_index: int
    first_document: int
    document_count: int
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: JobState
    display_name: str
    model: str
    collection: str
    total: int
    done: int
    failed: int
    truncated: int
    chunks_total: int
    chunks_finished: int
    docs_per_second: float
    eta_seconds: float
    error: str
    failed_chunks: list[FailedChunk] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state.terminal

    @classmethod
    def from_pb(cls, pb: jobs_pb2.Job) -> Job:
        return cls(
            id=pb.id,
            kind=jobs_pb2.JobKind.Name(pb.kind).removeprefix("JOB_KIND_").lower(),
            state=_STATE[pb.state],
            display_name=pb.display_name,
            model=pb.model,
            collection=pb.collection,
            total=pb.progress.total,
            done=pb.progress.done,
            failed=pb.progress.failed,
            truncated=pb.progress.truncated,
            chunks_total=pb.progress.chunks_total,
            chunks_finished=pb.progress.chunks_finished,
            docs_per_second=pb.docs_per_second,
            eta_seconds=pb.eta_seconds,
            error=pb.error,
            failed_chunks=[
                FailedChunk(f.chunk_index, f.first_document, f.document_count, f.message) for f in pb.failed_chunks
            ],
            metrics=dict(pb.metrics),
            outputs=dict(pb.outputs),
        )


def batch_to_array(batch: common_pb2.EmbeddingBatch) -> np.ndarray:
    """EmbeddingBatch -> (rows, width) array; BINARY rows are packed bits (np.unpackbits to expand)."""
    precision = _PRECISION[batch.precision]
    array = np.frombuffer(batch.data, dtype=np.dtype(_DTYPE[precision]))
    rows = len(batch.ids)
    width = (batch.dimensions + 7) // 8 if precision == Precision.BINARY else batch.dimensions
    return array.reshape(rows, width)


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray
    model: str
    model_version: str
    truncated: int

    @classmethod
    def from_pb(cls, pb: embed_pb2.EmbedResponse) -> EmbedResult:
        return cls(batch_to_array(pb.embeddings), pb.model, pb.model_version, pb.truncated)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    role: str
    dimensions: int
    matryoshka_dimensions: list[int]
    max_seq_length: int
    version: str
    backend: str
    is_default: bool
    workers: int
    origin: str = "config"
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_pb(cls, pb: models_pb2.ModelInfo) -> ModelInfo:
        return cls(
            name=pb.name,
            role=models_pb2.ModelRole.Name(pb.role).removeprefix("MODEL_ROLE_").lower(),
            dimensions=pb.dimensions,
            matryoshka_dimensions=list(pb.matryoshka_dimensions),
            max_seq_length=pb.max_seq_length,
            version=pb.version,
            backend=pb.backend,
            is_default=pb.is_default,
            workers=pb.workers,
            origin=pb.origin,
            metrics=dict(pb.metrics),
        )


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    text: str
    metadata_json: str

    @classmethod
    def from_pb(cls, pb: search_pb2.SearchHit) -> SearchHit:
        return cls(pb.id, pb.score, pb.text, pb.metadata_json)
