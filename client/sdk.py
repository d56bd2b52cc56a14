"""The synchronous Python client.

    with EmbedfleetClient("127.0.0.1:50051") as client:
        job = client.index("corpus.jsonl", collection="docs", wait=True)
        vectors = client.embed_corpus("corpus.jsonl")       # numpy, input order
        hits = client.search("docs", "what is a cat?")

Errors from the server arrive as ``grpc.RpcError`` (``.code()``, ``.details()``); errors reading a
local corpus file are raised as they happened (``embedfleet.errors.InvalidArgument`` with the line).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pyarrow as pa

from embedfleet import wire
from embedfleet.apikeys import ApiKey
from embedfleet.client import calls
from embedfleet.client import requests as rq
from embedfleet.client.errors import Unavailable
from embedfleet.client.output import PartCallback, ResultWriter
from embedfleet.client.progress import ErrorCallback, follow
from embedfleet.client.stubs import ClientBase, Connection, WatchReopener
from embedfleet.client.types import (
    Collection,
    CreatedKey,
    DedupGroup,
    DeploymentStatus,
    EmbedResult,
    Job,
    ModelInfo,
    SearchHit,
)
from embedfleet.cluster_types import Assignment, ClusterMap, ClusterSummary
from embedfleet.dedup_export import export_groups
from embedfleet.domain import JobState
from embedfleet.v1 import jobs_pb2

T = TypeVar("T")


class EmbedfleetClient(ClientBase):
    def _open(self, connection: Connection) -> Any:
        return connection.channel()

    def close(self) -> None:
        """Close the channel (also done by ``with``)."""
        self.channel.close()

    def __enter__(self) -> EmbedfleetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting ---------------------------------------------------------------------------
    def _submit(self, method: Any, stream: rq.RequestStream) -> Job:
        try:
            response = method(iter(stream), timeout=None)
        except grpc.RpcError:
            if stream.error is not None:
                raise stream.error from None
            raise
        return Job.from_pb(response.job)

    def submit_index(
        self,
        corpus: rq.Corpus | None,
        collection: str,
        *,
        model: str = "",
        dimensions: int = 0,
        chunk_size: int = 0,
        display_name: str = "",
        server_path: str = "",
        source_uri: str = "",
        columns: Mapping[str, str] | None = None,
        extra_fields: Iterable[Mapping[str, Any]] = (),
        index: Mapping[str, Any] | None = None,
        dedup: Mapping[str, Any] | None = None,
    ) -> Job:
        """Queue an index job; returns at once with the job QUEUED (see ``wait``).

        ``extra_fields`` adds representations of the same vectors to each row, e.g.
        ``[{"name": "v128", "dimensions": 128}, {"name": "bits", "precision": "binary"}]``. ``index`` fixes
        how a new collection is indexed, e.g. ``{"type": "HNSW", "params": {"M": 16}}`` (see
        ``requests.index_spec``). ``dedup`` checks each document against its chunk and the collection
        and skips (or marks) near-duplicates, e.g. ``{"threshold": 0.95, "action": "skip"}``.
        """
        options = rq.embedding_options(model, dimensions)
        stream = rq.index_stream(
            corpus,
            collection,
            options,
            server_path=server_path,
            source_uri=source_uri,
            columns=columns,
            chunk_size=chunk_size,
            display_name=display_name,
            extra_fields=extra_fields,
            index=index,
            dedup=dedup,
        )
        return self._submit(self.jobs.SubmitIndexJob, stream)

    def submit_embed(
        self,
        corpus: rq.Corpus | None,
        *,
        model: str = "",
        dimensions: int = 0,
        precision: str = "float32",
        input_type: str = "document",
        normalize: bool = True,
        chunk_size: int = 0,
        display_name: str = "",
        server_path: str = "",
        source_uri: str = "",
        columns: Mapping[str, str] | None = None,
        output_uri: str = "",
    ) -> Job:
        """Queue an embed job; returns at once (see ``results``/``embed_corpus`` for the vectors).

        ``dimensions`` picks a Matryoshka prefix, ``precision`` float32/float16/int8/binary, ``input_type``
        the model's query or document prompt."""
        options = rq.embedding_options(model, dimensions, precision, input_type, normalize)
        stream = rq.embed_stream(
            corpus,
            options,
            server_path=server_path,
            source_uri=source_uri,
            columns=columns,
            output_uri=output_uri,
            chunk_size=chunk_size,
            display_name=display_name,
        )
        return self._submit(self.jobs.SubmitEmbedJob, stream)

    def index(
        self,
        corpus: rq.Corpus,
        collection: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        on_error: ErrorCallback | None = None,
        **kwargs: Any,
    ) -> Job:
        """Submit an index job and wait for it to finish (see ``submit_index`` and ``wait``)."""
        job = self.submit_index(corpus, collection, **kwargs)
        return self.wait(job.id, progress=progress, timeout=timeout, on_error=on_error)

    def embed_corpus(
        self,
        corpus: rq.Corpus,
        *,
        output: str | Path | None = None,
        as_arrow: bool = False,
        progress: bool = False,
        on_done: PartCallback | None = None,
        on_error: ErrorCallback | None = None,
        **kwargs: Any,
    ) -> np.ndarray | pa.Table | Path:
        """Run an embed job. Returns the vectors in input order (NumPy, or an Arrow table of id and
        embedding with ``as_arrow``), or writes them to ``output`` (``.npy`` or ``.parquet``, part by part
        as they arrive, renamed into place when complete) and returns its path. ``on_done(part, first,
        ids, vectors)`` is called for every part written, then ``on_error(failed_chunk)`` for every part
        that failed; ``kwargs`` are ``submit_embed``'s.

            vectors = client.embed_corpus(docs, dimensions=128, precision="int8")
        """
        job = self.submit_embed(corpus, **kwargs)
        writer = ResultWriter(output, job.total, as_arrow)
        try:
            if progress:
                self.wait(job.id, progress=True)
            for part, first, ids, vectors in self.results(job.id):
                writer.write(first, ids, vectors)
                if on_done is not None:
                    on_done(part, first, ids, vectors)
            if on_error is not None:
                self.wait(job.id, on_error=on_error)
        except BaseException:
            writer.abort()
            raise
        return writer.close()

    def submit_distill(self, student_name: str, texts: Iterable[str] = (), **kwargs: Any) -> Job:
        """Queue a distillation job (see ``requests.distill_request`` for the options); its outputs
        name the registered student version and whether it passed the quality gate."""
        return self._call(calls.SUBMIT_DISTILL, student_name, texts, **kwargs)

    def submit_evaluate(self, model: str, **kwargs: Any) -> Job:
        """Queue an evaluation job; its metrics hold the scores when it succeeds."""
        return self._call(calls.SUBMIT_EVALUATE, model, **kwargs)

    def submit_dedup(self, collection: str, threshold: float, **kwargs: Any) -> Job:
        """Queue a dedup job on a collection (see ``requests.dedup_request``: mode, policy, filter,
        partitions, n_probe, delete...); a dry run unless ``delete=True``. Its outputs count the groups,
        duplicates and removed rows; ``dedup_groups`` reads the groups."""
        return self._call(calls.SUBMIT_DEDUP, collection, threshold, **kwargs)

    def _call(self, call: calls.Unary[T], *args: Any, **kwargs: Any) -> T:
        """One unary RPC of the table in ``calls``, under the client's deadline."""
        return call.result(self._method(call)(call.request(*args, **kwargs), timeout=self.timeout))

    def _paged(self, call: calls.Paged[T], *args: Any) -> Iterator[T]:
        """The items of a paged RPC of ``calls``, one page at a time."""
        method, token = self._method(call), ""
        while True:
            response = method(call.request(*args, token), timeout=self.timeout)
            yield from call.items(response)
            token = response.next_page_token
            if not token:
                return

    def dedup_groups(self, job_id: str, page_size: int = 500) -> Iterator[DedupGroup]:
        """A succeeded dedup job's groups in kept-id order, fetched page by page."""
        return self._paged(calls.DEDUP_GROUPS, job_id, page_size)

    def export_dedup_groups(self, job_id: str, output: str | Path) -> int:
        """Write a dedup job's groups to a .parquet or .jsonl file; returns how many."""
        return export_groups(self.dedup_groups(job_id), output)

    # -- following ----------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        """The job now (``NotFound`` for an unknown or expired id)."""
        return self._call(calls.GET_JOB, job_id)

    def list_jobs(self, state: JobState | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job, newest first, fetched page by page."""
        return self._paged(calls.LIST_JOBS, state, page_size)

    def cancel_job(self, job_id: str) -> Job:
        """Cancel a queued or running job; parts not started never run. Returns the job after the call."""
        return self._call(calls.CANCEL_JOB, job_id)

    def resume_job(self, job_id: str) -> Job:
        """Queue a FAILED or CANCELLED job's chunks that are not done (see ``wait``)."""
        return self._call(calls.RESUME_JOB, job_id)

    def watch(self, job_id: str, *, timeout: float | None = None) -> Iterator[Job]:
        """The job now and after every change until it finishes (or ``timeout`` seconds pass:
        ``DeadlineExceeded``); a watch cut by UNAVAILABLE is opened again (``WatchReopener``)."""
        reopen = WatchReopener(self.connection, timeout)
        while True:
            try:
                for update in self.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=reopen.remaining()):
                    reopen.received()
                    yield Job.from_pb(update.job)
                return
            except Unavailable as exc:
                delay = reopen.delay(exc)
                if delay is None:
                    raise
                time.sleep(delay)

    def wait(
        self,
        job_id: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        on_error: ErrorCallback | None = None,
    ) -> Job:
        """Block until the job is SUCCEEDED, FAILED or CANCELLED, at most ``timeout`` seconds
        (``DeadlineExceeded`` after that; the job keeps running); optionally draw a progress bar.
        ``on_error(failed_chunk)`` is called once for each part as soon as it has failed.

            job = client.wait(job.id, on_error=lambda c: print(c.chunk_index, c.message))
        """
        return follow(self.watch(job_id, timeout=timeout), enabled=progress, on_error=on_error)

    def results(self, job_id: str) -> Iterator[tuple[int, int, list[str], np.ndarray]]:
        """An embed job's results as ``(chunk_index, first_document, ids, vectors)``, in order."""
        for response in self.jobs.StreamJobResults(jobs_pb2.StreamJobResultsRequest(job_id=job_id)):
            batch = response.embeddings
            yield response.chunk_index, response.first_document, list(batch.ids), wire.batch_vectors(batch)

    # -- interactive --------------------------------------------------------------------------
    def embed(
        self,
        texts: list[str],
        *,
        model: str = "",
        dimensions: int = 0,
        precision: str = "float32",
        input_type: str = "document",
        normalize: bool = True,
    ) -> EmbedResult:
        """Embed a few texts synchronously (queries, short lists)."""
        return self._call(
            calls.EMBED,
            texts,
            model=model,
            dimensions=dimensions,
            precision=precision,
            input_type=input_type,
            normalize=normalize,
        )

    def status(self) -> DeploymentStatus:
        """Live workers (models, device), queue depth and active jobs, as the job store knows them."""
        return self._call(calls.GET_STATUS)

    def list_models(self) -> list[ModelInfo]:
        """The registry's models with their dimensions, MRL dimensions, version and live workers."""
        return self._call(calls.LIST_MODELS)

    def search(self, collection: str, query: str, **options: Any) -> list[SearchHit]:
        """The best hits for one query, e.g. ``client.search("docs", "cats", mode="funnel", candidates=200)``.
        Options: ``top_k`` (10), ``filter``, ``mode`` (full, funnel, binary), ``candidates``, ``ef``, ``nprobe``."""
        return self.search_many(collection, [query], **options)[0]

    def search_many(self, collection: str, queries: list[str], **options: Any) -> list[list[SearchHit]]:
        """One call for many queries (batched through the model and Milvus): hits per query, in order."""
        return self._call(calls.SEARCH, collection, queries, **options)

    # -- clustering ---------------------------------------------------------------------------
    def submit_cluster(self, collection: str, **kwargs: Any) -> Job:
        """Queue a cluster job on ``collection`` (see ``requests.cluster_request``: ``method`` kmeans or hdbscan,
        ``k`` (0 chooses it), ``filter``, ...); when it succeeds, read ``clusters``/``cluster_assignments``."""
        return self._call(calls.SUBMIT_CLUSTER, collection, **kwargs)

    def cluster(self, collection: str, *, progress: bool = False, timeout: float | None = None, **kwargs: Any) -> Job:
        """Submit a cluster job and wait for it to finish (see ``submit_cluster`` and ``wait``)."""
        return self.wait(self.submit_cluster(collection, **kwargs).id, progress=progress, timeout=timeout)

    def clusters(self, job_id: str, page_size: int = 100) -> list[ClusterSummary]:
        """A finished cluster job's clusters, largest first (noise, -1, last), fetched page by page."""
        return list(self._paged(calls.CLUSTERS, job_id, page_size))

    def cluster_assignments(
        self, job_id: str, cluster: int | None = None, page_size: int = 1000
    ) -> Iterator[Assignment]:
        """Every row's cluster (only ``cluster``'s rows if given), fetched page by page."""
        return self._paged(calls.CLUSTER_ASSIGNMENTS, job_id, cluster, page_size)

    def cluster_map(self, job_id: str) -> ClusterMap:
        """A sample of the job's rows projected to 2-D with their clusters (``client.cluster_map`` draws it)."""
        return self._call(calls.GET_CLUSTER_MAP, job_id)

    # -- collections --------------------------------------------------------------------------
    def list_collections(self, page_size: int = 100) -> list[Collection]:
        """Your collections by name (model, fields, index, rows, active jobs), fetched page by page."""
        return list(self._paged(calls.LIST_COLLECTIONS, page_size))

    def get_collection(self, name: str) -> Collection:
        """One collection; ``NotFound`` if you have none of that name."""
        return self._call(calls.GET_COLLECTION, name)

    def delete_collection(self, name: str) -> Collection:
        """Drop a collection and all its rows (writer role); refused while one of your jobs works on it.
        Returns the collection as it was. Cannot be undone."""
        return self._call(calls.DELETE_COLLECTION, name)

    # -- API keys (admin) ---------------------------------------------------------------------
    def create_key(self, role: str, name: str = "") -> CreatedKey:
        """A new API key of the caller's tenant (``role``: reader, writer or admin). Its ``secret`` is
        returned this once: store it, it cannot be read again."""
        return self._call(calls.CREATE_KEY, role, name)

    def list_keys(self) -> list[ApiKey]:
        """The caller's tenant's keys (ids, roles, names; never secrets)."""
        return self._call(calls.LIST_KEYS)

    def revoke_key(self, key_id: str) -> ApiKey:
        """Revoke one of the tenant's keys by id; it stops working at once on every gateway."""
        return self._call(calls.REVOKE_KEY, key_id)
