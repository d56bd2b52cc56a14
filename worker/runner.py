"""The job logic of a worker, free of any queue: run one chunk, answer one interactive request.

Celery tasks and Ray actors call these methods and do nothing else but translate ``RetryChunk``
into their own retry mechanism. Every rule about exactly-once counting, cancellation and failure
reporting is here (with the atomic steps in the job store), so both backends behave the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from embedfleet import milvus
from embedfleet.domain import Document, EmbeddingOptions, JobKind, JobSnapshot, JobSpec, Precision
from embedfleet.errors import EmbedfleetError, FailedPrecondition, Retryable
from embedfleet.jobstore import ChunkResultVectors, ChunkStart, JobStore, pack_vectors
from embedfleet.registry import ModelRegistry
from embedfleet.worker.encoders import Encoder, ModelHost
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.model_jobs import JobCancelled, ModelJobs
from embedfleet.worker.postprocess import postprocess

log = logging.getLogger(__name__)

REQUEST_REPLY_TTL_S = 60


class ChunkStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class ChunkOutcome:
    status: ChunkStatus
    documents: int = 0
    reason: str = ""


class RetryChunk(Exception):
    """The adapter must run this chunk again later (a transient failure, attempts left)."""


@dataclass(frozen=True)
class EmbedOutput:
    vectors: np.ndarray
    raw: np.ndarray  # the model's output before post-processing, for further representations
    truncated: int
    model: str
    version: str


def represent(encoder: Encoder, raw: np.ndarray, options: EmbeddingOptions) -> np.ndarray:
    """Model output -> the representation ``options`` ask for (the one post-processing path)."""
    return postprocess(
        raw,
        dimensions=encoder.spec.output_dimensions(options.dimensions),
        normalize=options.normalize,
        precision=options.precision,
        int8_ranges=int8_ranges(encoder, options),
    )


def embed_texts(encoder: Encoder, texts: list[str], options: EmbeddingOptions) -> EmbedOutput:
    """Encode and post-process: the one path from text to the vectors a user gets or stores."""
    encoded = encoder.encode(texts, options.input_type)
    return EmbedOutput(
        vectors=represent(encoder, encoded.vectors, options),
        raw=encoded.vectors,
        truncated=encoded.truncated,
        model=encoder.spec.name,
        version=encoder.version,
    )


def int8_ranges(encoder: Encoder, options: EmbeddingOptions) -> np.ndarray | None:
    """Per-dimension [min, max] of the model's fixed calibration texts, post-processed exactly like
    the request (same prefix, same normalization), so every int8 vector of a model is on one scale."""
    if options.precision != Precision.INT8:
        return None
    calibration = postprocess(
        encoder.calibration_vectors(),
        dimensions=encoder.spec.output_dimensions(options.dimensions),
        normalize=options.normalize,
        precision=Precision.FLOAT32,
    )
    return np.stack([calibration.min(axis=0), calibration.max(axis=0)])


class ChunkRunner:
    def __init__(
        self,
        store: JobStore,
        registry: Callable[[], ModelRegistry],
        host: ModelHost,
        milvus_factory: Callable[[], MilvusSink],
        max_attempts: int,
        model_jobs: ModelJobs | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.host = host
        self._milvus_factory = milvus_factory
        self._milvus: MilvusSink | None = None
        self.max_attempts = max_attempts
        self.model_jobs = model_jobs

    def _sink(self) -> MilvusSink:
        if self._milvus is None:
            self._milvus = self._milvus_factory()
        return self._milvus

    def run_chunk(self, job_id: str, chunk: int, attempt: int = 1) -> ChunkOutcome:
        """Process one chunk exactly once as far as anyone can observe.

        ``attempt`` counts from 1; on a transient failure with attempts left this raises
        ``RetryChunk`` and changes nothing, otherwise the failure is recorded on the job.
        """
        start = self.store.start_chunk(job_id, chunk)
        if start in (ChunkStart.FINISHED, ChunkStart.CANCELLED, ChunkStart.MISSING):
            log.info("job %s chunk %d skipped: %s", job_id, chunk, start.value)
            return ChunkOutcome(ChunkStatus.SKIPPED, reason=start.value)
        if start == ChunkStart.RETRY:
            log.warning("job %s chunk %d: running again after an unfinished attempt", job_id, chunk)
        snap = self.store.get(job_id)
        _, count = snap.chunk_bounds(chunk)
        try:
            docs = self.store.get_chunk_input(job_id, chunk)
            if snap.spec.kind in (JobKind.DISTILL, JobKind.EVALUATE):
                return self._run_model_job(snap, chunk, docs)
            encoder = self.host.get(self.registry().resolve(snap.spec.embedding.model))
            out = embed_texts(encoder, [d.text for d in docs], snap.spec.embedding)
            if snap.spec.kind == JobKind.INDEX:
                self._write_index(snap.spec, encoder, docs, out)
            else:
                self.store.put_chunk_output(
                    job_id,
                    chunk,
                    ChunkResultVectors(
                        ids=[d.id for d in docs],
                        dimensions=encoder.spec.output_dimensions(snap.spec.embedding.dimensions),
                        precision=snap.spec.embedding.precision.value,
                        data=pack_vectors(out.vectors),
                    ),
                )
        except EmbedfleetError as exc:
            if isinstance(exc, Retryable) and attempt < self.max_attempts:
                log.warning("job %s chunk %d attempt %d: %s; will retry", job_id, chunk, attempt, exc)
                raise RetryChunk(str(exc)) from exc
            return self._fail(job_id, chunk, count, str(exc))
        except Exception as exc:  # a bug or an environment fault: retry, then report it on the job
            log.exception("job %s chunk %d attempt %d failed", job_id, chunk, attempt)
            if attempt < self.max_attempts:
                raise RetryChunk(repr(exc)) from exc
            return self._fail(job_id, chunk, count, f"{type(exc).__name__}: {exc}")
        self.store.finish_chunk(job_id, chunk, done=len(docs), failed=0, truncated=out.truncated)
        return ChunkOutcome(ChunkStatus.DONE, documents=len(docs))

    def _run_model_job(self, snap: JobSnapshot, chunk: int, docs: list[Document]) -> ChunkOutcome:
        if self.model_jobs is None:
            raise FailedPrecondition("this worker does not run distillation or evaluation jobs")
        try:
            self.model_jobs.run(snap, [d.text for d in docs])
        except JobCancelled as exc:
            log.info("%s", exc)
            return ChunkOutcome(ChunkStatus.SKIPPED, reason="cancelled")
        self.store.finish_chunk(snap.id, chunk, done=0, failed=0, truncated=0)  # done was reported as it ran
        return ChunkOutcome(ChunkStatus.DONE, documents=len(docs))

    def _write_index(self, spec: JobSpec, encoder: Encoder, docs: list[Document], out: EmbedOutput) -> None:
        """Upsert the main vectors and every extra representation of the same forward pass."""
        fields = milvus.stored_fields(encoder.spec, spec.extra_fields)
        extra: dict[str, np.ndarray] = {}
        ranges: dict[str, np.ndarray] = {}
        for field in fields:
            options = spec.embedding.model_copy(update={"dimensions": field.dimensions, "precision": field.precision})
            extra[field.name] = represent(encoder, out.raw, options)
            if field.precision == Precision.INT8:
                ranges[field.name] = int8_ranges(encoder, options)  # type: ignore[assignment]
        binding = milvus.CollectionBinding(out.model, out.version, int(out.vectors.shape[1]), fields)
        self._sink().write(spec.collection, binding, docs, out.vectors, extra, ranges)

    def _fail(self, job_id: str, chunk: int, count: int, message: str) -> ChunkOutcome:
        self.store.finish_chunk(job_id, chunk, done=0, failed=count, truncated=0, error=message)
        return ChunkOutcome(ChunkStatus.FAILED, documents=count, reason=message)

    def fail_chunk(self, job_id: str, chunk: int, message: str) -> None:
        """Record a chunk as failed when the adapter gives up on it (e.g. its worker kept dying)."""
        snap = self.store.get(job_id)
        self._fail(job_id, chunk, snap.chunk_bounds(chunk)[1], message)

    def embed_request(self, request_id: str) -> None:
        """Answer an interactive Embed; errors go back to the waiting gateway, never raised."""
        payload = self.store.take_request(request_id)
        if payload is None:
            return  # the caller timed out and withdrew the request
        try:
            options = EmbeddingOptions.model_validate(payload["options"])
            encoder = self.host.get(self.registry().resolve(options.model))
            texts = payload["texts"]
            assert isinstance(texts, list)
            out = embed_texts(encoder, texts, options)
        except EmbedfleetError as exc:
            self.store.reply(request_id, {"error": type(exc).__name__, "message": str(exc)}, b"", REQUEST_REPLY_TTL_S)
            return
        except Exception as exc:
            log.exception("embed request %s failed", request_id)
            self.store.reply(request_id, {"error": "Internal", "message": repr(exc)}, b"", REQUEST_REPLY_TTL_S)
            return
        header = {
            "model": out.model,
            "version": out.version,
            "dimensions": encoder.spec.output_dimensions(options.dimensions),
            "precision": options.precision.value,
            "truncated": out.truncated,
        }
        self.store.reply(request_id, header, pack_vectors(out.vectors), REQUEST_REPLY_TTL_S)
