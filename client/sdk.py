"""The synchronous Python client.

    with EmbedfleetClient("127.0.0.1:50051") as client:
        job = client.index("corpus.jsonl", collection="docs", wait=True)
        vectors = client.embed_corpus("corpus.jsonl")       # numpy, input order
        hits = client.search("docs", "what is a cat?")

Errors from the server arrive as ``grpc.RpcError`` (``.code()``, ``.details()``); errors reading a
local corpus file are raised as they happened (``embedfleet.errors.InvalidArgument`` with the line).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from embedfleet import wire
from embedfleet.client import requests as rq
from embedfleet.client.output import ResultWriter
from embedfleet.client.progress import follow
from embedfleet.client.stubs import service_stubs
from embedfleet.client.types import EmbedResult, Job, ModelInfo, SearchHit
from embedfleet.domain import JobState
from embedfleet.v1 import embed_pb2, jobs_pb2, models_pb2, search_pb2


def channel_options(max_message_bytes: int = 64 * 1024 * 1024) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


class EmbedfleetClient:
    def __init__(self, target: str = "127.0.0.1:50051", *, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.channel = grpc.insecure_channel(target, options=channel_options())
        self.jobs, self.embeddings, self.models, self.searches = service_stubs(self.channel)

    def close(self) -> None:
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
    ) -> Job:
        """Queue an index job; returns at once with the job QUEUED (see ``wait``).

        ``extra_fields`` adds representations of the same vectors to each row, e.g.
        ``[{"name": "v128", "dimensions": 128}, {"name": "bits", "precision": "binary"}]``.
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

    def index(self, corpus: rq.Corpus, collection: str, *, progress: bool = False, **kwargs: Any) -> Job:
        """Submit an index job and wait for it to finish."""
        return self.wait(self.submit_index(corpus, collection, **kwargs).id, progress=progress)

    def embed_corpus(
        self, corpus: rq.Corpus, *, output: str | Path | None = None, progress: bool = False, **kwargs: Any
    ) -> np.ndarray | Path:
        """Run an embed job. Returns the vectors in input order, or writes them to ``output``
        (``.npy`` or ``.parquet``, chunk by chunk as they arrive) and returns its path."""
        job = self.submit_embed(corpus, **kwargs)
        if progress:
            self.wait(job.id, progress=True)
        writer = ResultWriter(output, job.total)
        for _chunk, first, ids, vectors in self.results(job.id):
            writer.write(first, ids, vectors)
        return writer.close()

    def submit_distill(self, student_name: str, texts: Iterable[str] = (), **kwargs: Any) -> Job:
        """Queue a distillation job (see ``requests.distill_request`` for the options); its outputs
        name the registered student version and whether it passed the quality gate."""
        request = rq.distill_request(student_name, texts, **kwargs)
        return Job.from_pb(self.jobs.SubmitDistillJob(request, timeout=self.timeout).job)

    def submit_evaluate(self, model: str, **kwargs: Any) -> Job:
        """Queue an evaluation job; its metrics hold the scores when it succeeds."""
        request = rq.evaluate_request(model, **kwargs)
        return Job.from_pb(self.jobs.SubmitEvaluateJob(request, timeout=self.timeout).job)

    # -- following ----------------------------------------------------------------------------
    def get_job(self, job_id: str) -> Job:
        return Job.from_pb(self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout).job)

    def list_jobs(self, state: JobState | None = None, page_size: int = 50) -> Iterator[Job]:
        """Every job, newest first, fetched page by page."""
        token = ""
        while True:
            request = jobs_pb2.ListJobsRequest(
                page_size=page_size,
                page_token=token,
                state=wire.JOB_STATE.to_pb(state) if state else jobs_pb2.JOB_STATE_UNSPECIFIED,  # type: ignore[arg-type]
            )
            response = self.jobs.ListJobs(request, timeout=self.timeout)
            for job in response.jobs:
                yield Job.from_pb(job)
            token = response.next_page_token
            if not token:
                return

    def cancel_job(self, job_id: str) -> Job:
        return Job.from_pb(self.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), timeout=self.timeout).job)

    def resume_job(self, job_id: str) -> Job:
        """Queue a FAILED or CANCELLED job's chunks that are not done (see ``wait``)."""
        return Job.from_pb(self.jobs.ResumeJob(jobs_pb2.ResumeJobRequest(job_id=job_id), timeout=self.timeout).job)

    def watch(self, job_id: str) -> Iterator[Job]:
        for update in self.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id)):
            yield Job.from_pb(update.job)

    def wait(self, job_id: str, *, progress: bool = False) -> Job:
        """Block until the job is SUCCEEDED, FAILED or CANCELLED; optionally draw a progress bar."""
        if progress:
            return follow(self.watch(job_id))
        final = None
        for update in self.watch(job_id):
            final = update
        assert final is not None, "WatchJob ended without an update"
        return final

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
        request = embed_pb2.EmbedRequest(
            texts=texts, options=rq.embedding_options(model, dimensions, precision, input_type, normalize)
        )
        return EmbedResult.from_pb(self.embeddings.Embed(request, timeout=self.timeout))

    def list_models(self) -> list[ModelInfo]:
        response = self.models.ListModels(models_pb2.ListModelsRequest(), timeout=self.timeout)
        return [ModelInfo.from_pb(m) for m in response.models]

    def search(self, collection: str, query: str, *, top_k: int = 10, filter: str = "") -> list[SearchHit]:
        request = search_pb2.SearchRequest(collection=collection, query=query, top_k=top_k, filter=filter)
        return [SearchHit.from_pb(h) for h in self.searches.Search(request, timeout=self.timeout).hits]
