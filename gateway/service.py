"""The gateway's transport-free core: every rule of accepting, tracking and answering work.

Servicers convert protobuf to the domain types and call this; nothing here knows gRPC. State is
in the job store (Redis), so any number of gateways can serve the same jobs, and a restarted one
continues where the last stopped.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus
from embedfleet.corpus import read_corpus, validate_document
from embedfleet.domain import (
    DistillParams,
    Document,
    EmbeddingOptions,
    EvaluateParams,
    InputType,
    JobKind,
    JobSnapshot,
    JobSpec,
    JobState,
    Precision,
    VectorField,
)
from embedfleet.gateway.queue import Dispatcher
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.ids import new_job_id
from embedfleet.jobstore import ChunkResultVectors, JobStore
from embedfleet.registry import ModelRegistry, ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRequest:
    """A submission as the servicer hands it over: what to do, and where the corpus is."""

    kind: JobKind
    embedding: EmbeddingOptions
    collection: str = ""
    source_path: str = ""
    chunk_size: int = 0
    display_name: str = ""
    extra_fields: tuple[VectorField, ...] = ()


@dataclass(frozen=True)
class DistillRequest:
    student_name: str
    teacher: str = ""
    keep_layers: int = 0
    init_model: str = ""
    source_path: str = ""
    texts: tuple[str, ...] = ()
    max_steps: int = 0
    batch_size: int = 0
    learning_rate: float = 0.0
    matryoshka_dimensions: tuple[int, ...] = ()
    min_quality_fraction: float = 0.0
    eval_limit: int = 0
    display_name: str = ""


@dataclass(frozen=True)
class EvaluateRequest:
    model: str
    dimensions: tuple[int, ...] = ()
    teacher: str = ""
    eval_limit: int = 0
    display_name: str = ""


# Milvus' code for "collection is released; call load() first" (after a server restart).
_COLLECTION_NOT_LOADED = 101
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray  # 2-D; uint8 rows of packed bits for BINARY
    dimensions: int
    precision: Precision
    model: str
    version: str
    truncated: int


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    version: str
    workers: int
    is_default: bool
    origin: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    text: str
    metadata_json: str


_DTYPES = {
    Precision.FLOAT32: np.float32,
    Precision.FLOAT16: np.float16,
    Precision.INT8: np.int8,
    Precision.BINARY: np.uint8,
}


def unpack_vectors(data: bytes, rows: int, dimensions: int, precision: Precision) -> np.ndarray:
    """The inverse of ``pack_vectors`` for the EmbeddingBatch layout."""
    array = np.frombuffer(data, dtype=np.dtype(_DTYPES[precision]).newbyteorder("<"))
    return array.reshape(rows, -1) if rows else array.reshape(0, dimensions)


class GatewayCore:
    def __init__(
        self,
        settings: GatewaySettings,
        store: JobStore,
        dispatcher: Dispatcher,
        milvus_client: Callable[[], MilvusClient],
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self._milvus_factory = milvus_client
        self._milvus: MilvusClient | None = None
        self._milvus_lock = threading.Lock()

    @property
    def registry(self) -> ModelRegistry:
        return self.settings.registry()

    # -- shared validation --------------------------------------------------------------------
    def _milvus_client(self) -> MilvusClient:
        with self._milvus_lock:
            if self._milvus is None:
                self._milvus = self._milvus_factory()
            return self._milvus

    def resolve_options(self, options: EmbeddingOptions) -> tuple[ModelSpec, EmbeddingOptions]:
        """Options with the model resolved to a registry name; unknown models and dimensions refused."""
        spec = self.registry.resolve(options.model)
        spec.output_dimensions(options.dimensions)
        return spec, options.model_copy(update={"model": spec.name})

    def _check_collection(self, request: JobRequest, spec: ModelSpec, options: EmbeddingOptions) -> None:
        collection = request.collection
        milvus.validate_collection_name(collection)
        if options.precision != Precision.FLOAT32:
            raise errors.InvalidArgument(
                "an index job's main vector field is float32: leave precision unset, and add binary or int8 "
                "representations as extra_fields"
            )
        fields = milvus.stored_fields(spec, request.extra_fields)
        try:
            binding = milvus.read_binding(self._milvus_client(), collection)
        except MilvusException as exc:
            raise errors.Unavailable(f"cannot reach Milvus at {self.settings.milvus_uri}: {exc.message}") from None
        if binding is not None:
            binding.check_compatible(
                collection,
                model=spec.name,
                dimensions=spec.output_dimensions(options.dimensions),
                version=None,
                fields=fields,
            )

    def _server_corpus(self, path: str) -> Iterator[Document]:
        if not self.settings.allowed_corpus_dirs:
            raise errors.FailedPrecondition(
                "this gateway does not read server-side corpus files (EMBEDFLEET_ALLOWED_CORPUS_DIRS is "
                "empty); stream the documents instead"
            )
        resolved = Path(path).resolve()
        if not any(resolved.is_relative_to(Path(d).resolve()) for d in self.settings.allowed_corpus_dirs):
            raise errors.FailedPrecondition(f"corpus path {path!r} is outside the gateway's allowed corpus dirs")
        return read_corpus(resolved)

    # -- jobs ---------------------------------------------------------------------------------
    def submit_job(self, request: JobRequest, documents: Iterable[Document]) -> JobSnapshot:
        """Validate everything, stage the chunks, then create and queue the job.

        The job exists only once every document is valid: a submission rejected part-way leaves
        nothing behind, and an accepted one is durable before this returns.
        """
        spec, options = self.resolve_options(request.embedding)
        if request.kind == JobKind.INDEX:
            self._check_collection(request, spec, options)
        chunk_size = request.chunk_size or self.settings.default_chunk_size
        if chunk_size > self.settings.max_chunk_size:
            raise errors.InvalidArgument(f"chunk_size {chunk_size} exceeds the limit {self.settings.max_chunk_size}")
        if request.source_path:
            documents = self._server_corpus(request.source_path)

        job_id = new_job_id()
        chunks = 0
        total = 0
        seen: dict[str, int] = {}
        buffer: list[Document] = []
        try:
            for doc in documents:
                where = f"document {total}"
                validate_document(doc, where, self.settings.max_text_bytes)
                if doc.id in seen:
                    raise errors.InvalidArgument(
                        f"{where}: id {doc.id!r} was already used by document {seen[doc.id]}; ids must be unique"
                    )
                seen[doc.id] = total
                total += 1
                if total > self.settings.max_documents_per_job:
                    raise errors.ResourceExhausted(
                        f"the job has more than {self.settings.max_documents_per_job} documents; split the corpus"
                    )
                buffer.append(doc)
                if len(buffer) == chunk_size:
                    self.store.put_chunk_input(job_id, chunks, buffer)
                    chunks += 1
                    buffer = []
            if buffer:
                self.store.put_chunk_input(job_id, chunks, buffer)
                chunks += 1
            if total == 0:
                raise errors.InvalidArgument("the corpus is empty: send at least one document")
        except BaseException:
            self.store.discard_inputs(job_id, chunks + 1)
            raise
        job_spec = JobSpec(
            kind=request.kind,
            embedding=options,
            collection=request.collection,
            chunk_size=chunk_size,
            display_name=request.display_name,
            extra_fields=request.extra_fields,
        )
        snapshot = self.store.create_job(job_id, job_spec, total=total, chunks=chunks)
        self._dispatch(job_id, list(range(chunks)))
        log.info("job %s accepted: %s, %d documents in %d chunks", job_id, request.kind.value, total, chunks)
        return snapshot

    def _create_single_task_job(self, spec: JobSpec, total: int, texts: list[str]) -> JobSnapshot:
        """A job that runs as one task (distillation, evaluation): one chunk, its input the texts."""
        job_id = new_job_id()
        self.store.put_chunk_input(job_id, 0, [Document(id=str(i), text=t) for i, t in enumerate(texts)])
        snapshot = self.store.create_job(job_id, spec, total=total, chunks=1)
        self._dispatch(job_id, [0])
        log.info("job %s accepted: %s", job_id, spec.kind.value)
        return snapshot

    def submit_distill(self, request: DistillRequest) -> JobSnapshot:
        teacher = self.registry.resolve(request.teacher or "teacher")
        init = self.registry.resolve(request.init_model) if request.init_model else teacher
        if not _MODEL_NAME.match(request.student_name):
            raise errors.InvalidArgument(
                f"student_name {request.student_name!r} is invalid: use letters, digits, '.', '_' and '-'"
            )
        if request.student_name in {m.name for m in self.settings.models}:
            raise errors.FailedPrecondition(f"{request.student_name!r} is a configured model; pick another name")
        for dim in request.matryoshka_dimensions:
            if not 0 < dim < teacher.dimensions:
                raise errors.InvalidArgument(
                    f"matryoshka dimension {dim} must be between 1 and {teacher.dimensions - 1} (the teacher's width)"
                )
        if not 0 <= request.min_quality_fraction <= 1.5:
            raise errors.InvalidArgument("min_quality_fraction must be between 0 and 1.5 (above 1: beat the teacher)")
        if request.source_path and request.texts:
            raise errors.InvalidArgument("give training texts or a source path, not both")
        texts = (
            [d.text for d in self._server_corpus(request.source_path)] if request.source_path else list(request.texts)
        )
        texts = [t for t in texts if t.strip()]
        if len(texts) < 4:
            raise errors.InvalidArgument(f"distillation needs at least 4 non-empty texts, got {len(texts)}")
        if len(texts) > self.settings.max_documents_per_job:
            raise errors.ResourceExhausted(f"more than {self.settings.max_documents_per_job} training texts")
        batch = request.batch_size or 32
        steps = request.max_steps or -(-len(texts) // batch)
        params = DistillParams(
            teacher=teacher.name,
            student_name=request.student_name,
            keep_layers=request.keep_layers,
            init_model=init.name,
            steps=steps,
            batch_size=batch,
            learning_rate=request.learning_rate or 1e-4,
            matryoshka_dimensions=tuple(sorted(set(request.matryoshka_dimensions), reverse=True)),
            min_quality_fraction=request.min_quality_fraction or 0.95,
            eval_limit=request.eval_limit or self.settings.default_eval_limit,
        )
        spec = JobSpec(
            kind=JobKind.DISTILL,
            embedding=EmbeddingOptions(model=teacher.name),
            chunk_size=len(texts),
            display_name=request.display_name,
            distill=params,
        )
        return self._create_single_task_job(spec, total=steps, texts=texts)

    def submit_evaluate(self, request: EvaluateRequest) -> JobSnapshot:
        spec = self.registry.resolve(request.model)
        dims = tuple(sorted({spec.output_dimensions(d) for d in request.dimensions} - {spec.dimensions}, reverse=True))
        teacher = self.registry.resolve(request.teacher).name if request.teacher else ""
        params = EvaluateParams(
            model=spec.name,
            dimensions=dims or spec.matryoshka_dimensions,
            teacher=teacher,
            eval_limit=request.eval_limit or self.settings.default_eval_limit,
        )
        job_spec = JobSpec(
            kind=JobKind.EVALUATE,
            embedding=EmbeddingOptions(model=spec.name),
            chunk_size=1,
            display_name=request.display_name,
            evaluate=params,
        )
        return self._create_single_task_job(job_spec, total=1 + len(params.dimensions), texts=[])

    def _dispatch(self, job_id: str, chunks: list[int]) -> None:
        try:
            self.dispatcher.dispatch_parts(job_id, chunks)
            self.store.mark_dispatched(job_id, chunks)
        except Exception:
            # The job is durable with its chunks "pending"; the recovery loop will queue them.
            log.exception("job %s: queueing failed; the recovery loop will retry", job_id)

    def recover_pending(self) -> int:
        """Queue chunks that an earlier gateway accepted but never handed to the queue."""
        recovered = 0
        for job_id in self.store.active_jobs():
            try:
                pending = self.store.pending_chunks(job_id)
                snap = self.store.get(job_id)
            except errors.NotFound:
                continue
            # A job younger than one interval may still be mid-dispatch by the gateway that took it.
            settled = snap.created_at < time.time() - self.settings.recovery_interval_seconds
            if pending and settled and not snap.state.terminal:
                log.warning("job %s: queueing %d chunks that were never dispatched", job_id, len(pending))
                self._dispatch(job_id, pending)
                recovered += len(pending)
        return recovered

    def get_job(self, job_id: str) -> JobSnapshot:
        return self.store.get(job_id)

    def list_jobs(self, page_size: int, page_token: str, state: JobState | None) -> tuple[list[JobSnapshot], str]:
        size = page_size or 50
        if size > 1000:
            raise errors.InvalidArgument("page_size must be at most 1000")
        before: float | None = None
        if page_token:
            try:
                before = float(page_token)
            except ValueError:
                raise errors.InvalidArgument("page_token is not one this server issued") from None
        jobs, next_score = self.store.list(size, before, state)
        return jobs, (repr(next_score) if next_score is not None else "")

    def cancel_job(self, job_id: str) -> JobSnapshot:
        return self.store.cancel(job_id)

    def watch_job(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[JobSnapshot]:
        """The job now, then after each change, until it is finished or the caller goes away."""
        for snapshot in self.store.watch(job_id):
            yield snapshot
            if not keep_going():
                return

    def job_results(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[tuple[int, int, ChunkResultVectors]]:
        """An embed job's vectors in chunk order, each as soon as its chunk is done."""
        snap = self.store.get(job_id)
        if snap.spec.kind != JobKind.EMBED:
            raise errors.FailedPrecondition(
                f"job {job_id} is an {snap.spec.kind.value} job; only embed jobs have results"
            )
        last_event = "0-0"
        for chunk in range(snap.chunks_total):
            while True:
                state = self.store.chunk_state(job_id, chunk)
                if state == "done":
                    break
                if state == "failed":
                    snap = self.store.get(job_id)
                    message = next((f.message for f in snap.failed_chunks if f.chunk_index == chunk), "")
                    raise errors.FailedPrecondition(f"job {job_id} chunk {chunk} failed: {message}")
                snap = self.store.get(job_id)
                if snap.state == JobState.CANCELLED:
                    raise errors.FailedPrecondition(f"job {job_id} was cancelled before chunk {chunk} was done")
                if not keep_going():
                    return
                last_event = self.store.wait_for_event(job_id, last_event, 1.0)
            yield chunk, snap.chunk_bounds(chunk)[0], self.store.get_chunk_output(job_id, chunk)

    # -- interactive --------------------------------------------------------------------------
    def embed(self, texts: list[str], options: EmbeddingOptions, timeout_s: float | None = None) -> EmbedResult:
        if not texts:
            raise errors.InvalidArgument("texts is empty: send at least one text")
        if len(texts) > self.settings.max_embed_texts:
            raise errors.ResourceExhausted(
                f"{len(texts)} texts exceed the Embed limit of {self.settings.max_embed_texts}; "
                "submit an embed job for larger batches"
            )
        for i, text in enumerate(texts):
            validate_document(Document(id=str(i), text=text), f"text {i}", self.settings.max_text_bytes)
        _, options = self.resolve_options(options)
        request_id = uuid.uuid4().hex
        wait_s = min(timeout_s or self.settings.embed_timeout_seconds, self.settings.embed_timeout_seconds)
        self.store.put_request(
            request_id, {"texts": texts, "options": options.model_dump(mode="json")}, ttl_s=int(wait_s) + 5
        )
        self.dispatcher.dispatch_request(request_id)
        reply = self.store.wait_reply(request_id, wait_s)
        if reply is None:
            raise errors.DeadlineExceeded(
                f"no worker answered within {wait_s:.0f} s; check that workers are running (embedfleet worker)"
            )
        header, data = reply
        if "error" in header:
            error_cls = getattr(errors, str(header["error"]), errors.EmbedfleetError)
            raise error_cls(str(header["message"]))
        dims = int(header["dimensions"])  # type: ignore[arg-type]
        precision = Precision(str(header["precision"]))
        return EmbedResult(
            vectors=unpack_vectors(data, len(texts), dims, precision),
            dimensions=dims,
            precision=precision,
            model=str(header["model"]),
            version=str(header["version"]),
            truncated=int(header["truncated"]),  # type: ignore[arg-type]
        )

    def list_models(self) -> list[ModelStatus]:
        workers = self.store.live_workers()
        statuses = []
        registry = self.registry
        stored = (
            {m.name: m for m in self.settings.model_store().promoted()}
            if self.settings.model_store_dir.is_dir()
            else {}
        )
        configured = {m.name for m in self.settings.models}
        for spec in registry:
            versions = [w["models"][spec.name] for w in workers if spec.name in w.get("models", {})]
            statuses.append(
                ModelStatus(
                    spec=spec,
                    version=versions[0] if versions else (spec.revision or spec.checksum),
                    workers=len(versions),
                    is_default=spec.name == registry.default,
                    origin="config" if spec.name in configured else "store",
                    metrics=dict(stored[spec.name].eval_metrics) if spec.name in stored else {},
                )
            )
        return statuses

    def search(self, collection: str, query: str, top_k: int, filter_expr: str) -> tuple[list[SearchHit], str]:
        if not query.strip():
            raise errors.InvalidArgument("query is empty")
        top_k = top_k or 10
        if top_k > 1000:
            raise errors.InvalidArgument("top_k must be at most 1000")
        client = self._milvus_client()
        try:
            binding = milvus.require_binding(client, collection)
        except MilvusException as exc:
            raise errors.Unavailable(f"cannot reach Milvus: {exc.message}") from None
        spec = self.registry.resolve(binding.model)
        dims = binding.dimensions if binding.dimensions != spec.dimensions else 0
        embedded = self.embed([query], EmbeddingOptions(model=spec.name, dimensions=dims, input_type=InputType.QUERY))

        def run_search() -> list[list[dict[str, object]]]:
            return client.search(
                collection,
                data=[embedded.vectors[0].tolist()],
                limit=top_k,
                filter=filter_expr,
                anns_field=milvus.VECTOR_FIELD,
                output_fields=[milvus.ID_FIELD, milvus.TEXT_FIELD, milvus.METADATA_FIELD],
            )

        try:
            try:
                results = run_search()
            except MilvusException as exc:
                if exc.code != _COLLECTION_NOT_LOADED:
                    raise
                client.load_collection(collection)  # a restarted Milvus server starts with it released
                results = run_search()
        except MilvusException as exc:
            raise errors.InvalidArgument(f"search failed: {exc.message}") from None
        hits = [
            SearchHit(
                id=hit["entity"][milvus.ID_FIELD],
                score=float(hit["distance"]),
                text=hit["entity"][milvus.TEXT_FIELD],
                metadata_json=json.dumps(hit["entity"].get(milvus.METADATA_FIELD) or {}, ensure_ascii=False),
            )
            for hit in results[0]
        ]
        return hits, binding.model


def run_recovery_loop(core: GatewayCore, stop: threading.Event) -> None:
    """Dispatch never-queued chunks now and then, until ``stop`` is set."""
    while not stop.is_set():
        try:
            core.recover_pending()
        except Exception:
            log.warning("recovery pass failed", exc_info=True)
        stop.wait(core.settings.recovery_interval_seconds)
