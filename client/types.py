"""What the SDK returns: plain dataclasses built from the v1 messages (no protobuf in user code)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embedfleet import domain, wire
from embedfleet.apikeys import ApiKey
from embedfleet.domain import JobState
from embedfleet.v1 import collections_pb2, embed_pb2, jobs_pb2, keys_pb2, models_pb2, search_pb2, status_pb2


@dataclass(frozen=True)
class FailedChunk:
    chunk_index: int
    first_document: int
    document_count: int
    message: str


@dataclass(frozen=True)
class FailedDocument:
    id: str
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
    failed_documents: list[FailedDocument] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    # Embed jobs: the directory of the vectors' Parquet files (one per chunk) in the dataset store.
    results_uri: str = ""

    @property
    def finished(self) -> bool:
        return self.state.terminal

    @classmethod
    def from_pb(cls, pb: jobs_pb2.Job) -> Job:
        return cls(
            id=pb.id,
            kind=wire.JOB_KIND.from_pb(pb.kind, "kind").value,
            state=wire.JOB_STATE.from_pb(pb.state, "state"),
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
            failed_documents=[FailedDocument(f.id, f.message) for f in pb.failed_documents],
            metrics=dict(pb.metrics),
            outputs=dict(pb.outputs),
            results_uri=pb.results_uri,
        )


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray
    model: str
    model_version: str
    truncated: int

    @classmethod
    def from_pb(cls, pb: embed_pb2.EmbedResponse) -> EmbedResult:
        return cls(wire.batch_vectors(pb.embeddings), pb.model, pb.model_version, pb.truncated)


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
            role=wire.MODEL_ROLE.from_pb(pb.role, "role").value,
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
class SearchHit(domain.SearchHit):
    @classmethod
    def from_pb(cls, pb: search_pb2.SearchHit) -> SearchHit:
        return cls(pb.id, pb.score, pb.text, pb.metadata_json)


@dataclass(frozen=True)
class WorkerStatus:
    worker_id: str
    device: str
    models: dict[str, str]  # name -> version
    metrics_address: str

    @classmethod
    def from_pb(cls, pb: status_pb2.WorkerStatus) -> WorkerStatus:
        return cls(pb.worker_id, pb.device, dict(pb.models), pb.metrics_address)


@dataclass(frozen=True)
class DeploymentStatus:
    """The deployment now: live workers, the queue depth (parts not started), running parts, active jobs."""

    workers: list[WorkerStatus]
    parts_queued: int
    parts_running: int
    jobs: list[Job]
    active_jobs: int

    @classmethod
    def from_pb(cls, pb: status_pb2.GetStatusResponse) -> DeploymentStatus:
        return cls(
            workers=[WorkerStatus.from_pb(w) for w in pb.workers],
            parts_queued=pb.parts_queued,
            parts_running=pb.parts_running,
            jobs=[Job.from_pb(j) for j in pb.jobs],
            active_jobs=pb.active_jobs,
        )


@dataclass(frozen=True)
class DedupGroup:
    """One group of near-duplicates a dedup job found: the kept row's id, the removed rows' ids and
    each one's cosine similarity to the kept row."""

    kept_id: str
    removed_ids: list[str]
    similarity: list[float]

    @classmethod
    def from_pb(cls, pb: jobs_pb2.DedupGroup) -> DedupGroup:
        return cls(pb.kept_id, list(pb.removed_ids), [round(s, 6) for s in pb.similarity])


@dataclass(frozen=True)
class Collection:
    """A collection index jobs filled: the model that owns its vector space, the representations its rows
    carry beside ``vector``, its index, its row count and the caller's jobs working on it now."""

    name: str
    model: str
    model_version: str
    dimensions: int
    fields: list[domain.StoredField]
    index: domain.IndexSpec
    row_count: int
    active_job_ids: list[str]

    @classmethod
    def from_pb(cls, pb: collections_pb2.Collection) -> Collection:
        return cls(
            name=pb.name,
            model=pb.model,
            model_version=pb.model_version,
            dimensions=pb.dimensions,
            fields=[
                domain.StoredField(
                    name=f.name,
                    dimensions=f.dimensions,
                    precision=wire.PRECISION.from_pb(f.precision, "precision"),
                    bits=wire.BIT_BASIS.optional_from_pb(f.bits, "bits") or domain.BitBasis.AXES,  # older gateways
                )
                for f in pb.fields
            ],
            index=domain.IndexSpec(type=pb.index.type, params=dict(pb.index.params)),
            row_count=pb.row_count,
            active_job_ids=list(pb.active_job_ids),
        )


@dataclass(frozen=True)
class CreatedKey:
    """A new API key: its record and the full key, shown this once (only a hash is kept)."""

    key: ApiKey
    secret: str


def api_key_from_pb(pb: keys_pb2.ApiKey) -> ApiKey:
    role = wire.ROLE.from_pb(pb.role, "role")
    return ApiKey(pb.key_id, pb.tenant, role, pb.name, pb.created_at.ToNanoseconds() / 1e9)
