"""Plain, transport-free types of the job domain.

The gateway converts protobuf messages into these and back; the worker and both queue backends
only ever see these. Keeping them here (and not the generated messages) is what lets the job logic
stay independent of gRPC, Celery and Ray.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobKind(StrEnum):
    INDEX = "index"
    EMBED = "embed"
    DISTILL = "distill"
    EVALUATE = "evaluate"


class InputType(StrEnum):
    QUERY = "query"
    DOCUMENT = "document"


class Precision(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    BINARY = "binary"


class EmbeddingOptions(BaseModel):
    """How text becomes a vector; resolved against the registry before a job is stored."""

    model_config = ConfigDict(frozen=True)

    model: str = ""
    dimensions: int = 0
    precision: Precision = Precision.FLOAT32
    input_type: InputType = InputType.DOCUMENT
    normalize: bool = True


class VectorField(BaseModel):
    """An extra representation an index job writes next to the main vector (see IndexJobConfig)."""

    model_config = ConfigDict(frozen=True)

    name: str
    dimensions: int = 0
    precision: Precision = Precision.FLOAT32


class Document(BaseModel):
    """One corpus record. ``metadata`` is kept as JSON text end to end so numbers survive intact."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    metadata_json: str = ""

    def metadata(self) -> dict[str, Any]:
        return json.loads(self.metadata_json) if self.metadata_json else {}


class DistillParams(BaseModel):
    """A distillation job's settings, resolved at submission (model names, not roles)."""

    teacher: str
    student_name: str
    keep_layers: int
    init_model: str = ""
    steps: int
    batch_size: int
    learning_rate: float
    matryoshka_dimensions: tuple[int, ...] = ()
    min_quality_fraction: float
    eval_limit: int


class EvaluateParams(BaseModel):
    """An evaluation job's settings, resolved at submission."""

    model: str
    dimensions: tuple[int, ...] = ()
    teacher: str = ""
    eval_limit: int


class JobSpec(BaseModel):
    """What a job does, fixed at submission. ``embedding.model`` is the resolved registry name."""

    kind: JobKind
    embedding: EmbeddingOptions
    collection: str = ""
    chunk_size: int
    display_name: str = ""
    extra_fields: tuple[VectorField, ...] = ()
    distill: DistillParams | None = None
    evaluate: EvaluateParams | None = None


class ChunkFailure(BaseModel):
    chunk_index: int
    first_document: int
    document_count: int
    message: str


class JobSnapshot(BaseModel):
    """A job as read from the store at one moment; rates are derived, never stored."""

    id: str
    spec: JobSpec
    state: JobState
    total: int = 0
    done: int = 0
    failed: int = 0
    truncated: int = 0
    chunks_total: int = 0
    chunks_finished: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    failed_chunks: list[ChunkFailure] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)

    def docs_per_second(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        elapsed = max(end - self.started_at, 1e-6)
        return self.done / elapsed

    def eta_seconds(self, now: float | None = None) -> float:
        if self.state.terminal:
            return 0.0
        rate = self.docs_per_second(now)
        remaining = self.total - self.done - self.failed
        return remaining / rate if rate > 0 else 0.0

    def chunk_bounds(self, chunk_index: int) -> tuple[int, int]:
        """(first document, document count) of a chunk: chunks are fixed-size slices of the corpus."""
        first = chunk_index * self.spec.chunk_size
        return first, min(self.spec.chunk_size, self.total - first)
