"""The asyncio Python client: the same calls as ``EmbedfleetClient``, awaitable.

async with AsyncEmbedfleetClient("127.0.0.1:50051") as client:
    job = await client.submit_index(docs, "docs")
    async for update in client.watch(job.id): ...
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
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
from embedfleet.client.progress import ErrorCallback, JobProgress
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


class AsyncEmbedfleetClient(ClientBase):
    def _open(self, connection: Connection) -> Any:
        return connection.aio_channel()

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncEmbedfleetClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _submit(self, method: Any, stream: rq.RequestStream) -> Job:
        try:
            response = await method(iter(stream))
        except grpc.RpcError:
            if stream.error is not None:
                raise stream.error from None
            raise
        return Job.from_pb(response.job)

    async def submit_index(
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
        return await self._submit(self.jobs.SubmitIndexJob, stream)

    async def submit_embed(
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
        return await self._submit(self.jobs.SubmitEmbedJob, stream)

    async def index(
        self,
        corpus: rq.Corpus,
        collection: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        on_error: ErrorCallback | None = None,
        **kwargs: Any,
    ) -> Job:
        """See ``EmbedfleetClient.index``."""
        job = await self.submit_index(corpus, collection, **kwargs)
        return await self.wait(job.id, progress=progress, timeout=timeout, on_error=on_error)

    async def embed_corpus(
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
        """See ``EmbedfleetClient.embed_corpus``."""
        job = await self.submit_embed(corpus, **kwargs)
        writer = ResultWriter(output, job.total, as_arrow)
        try:
            if progress:
                await self.wait(job.id, progress=True)
            async for part, first, ids, vectors in self.results(job.id):
                writer.write(first, ids, vectors)
                if on_done is not None:
                    on_done(part, first, ids, vectors)
            if on_error is not None:
                await self.wait(job.id, on_error=on_error)
        except BaseException:
            writer.abort()
            raise
        return writer.close()

    async def submit_distill(self, student_name: str, texts: Iterable[str] = (), **kwargs: Any) -> Job:
        """See ``EmbedfleetClient.submit_distill``."""
        return await self._call(calls.SUBMIT_DISTILL, student_name, texts, **kwargs)

    async def submit_evaluate(self, model: str, **kwargs: Any) -> Job:
        """See ``EmbedfleetClient.submit_evaluate``."""
        return await self._call(calls.SUBMIT_EVALUATE, model, **kwargs)

    async def get_job(self, job_id: str) -> Job:
        """See ``EmbedfleetClient.get_job``."""
        return await self._call(calls.GET_JOB, job_id)

    async def cancel_job(self, job_id: str) -> Job:
        """See ``EmbedfleetClient.cancel_job``."""
        return await self._call(calls.CANCEL_JOB, job_id)

    async def resume_job(self, job_id: str) -> Job:
        """See ``EmbedfleetClient.resume_job``."""
        return await self._call(calls.RESUME_JOB, job_id)

    async def submit_dedup(self, collection: str, threshold: float, **kwargs: Any) -> Job:
        """See ``EmbedfleetClient.submit_dedup``."""
        return await self._call(calls.SUBMIT_DEDUP, collection, threshold, **kwargs)

    async def _call(self, call: calls.Unary[T], *args: Any, **kwargs: Any) -> T:
        """See ``EmbedfleetClient._call``."""
        return call.result(await self._method(call)(call.request(*args, **kwargs), timeout=self.timeout))

    async def _paged(self, call: calls.Paged[T], *args: Any) -> AsyncIterator[T]:
        """See ``EmbedfleetClient._paged``."""
        method, token = self._method(call), ""
        while True:
            response = await method(call.request(*args, token), timeout=self.timeout)
            for item in call.items(response):
                yield item
            token = response.next_page_token
            if not token:
                return

    def dedup_groups(self, job_id: str, page_size: int = 500) -> AsyncIterator[DedupGroup]:
        """See ``EmbedfleetClient.dedup_groups``."""
        return self._paged(calls.DEDUP_GROUPS, job_id, page_size)

    async def export_dedup_groups(self, job_id: str, output: str | Path) -> int:
        """See ``EmbedfleetClient.export_dedup_groups``."""
        return export_groups([g async for g in self.dedup_groups(job_id)], output)

    def list_jobs(self, state: JobState | None = None, page_size: int = 50) -> AsyncIterator[Job]:
        """See ``EmbedfleetClient.list_jobs``."""
        return self._paged(calls.LIST_JOBS, state, page_size)

    async def watch(self, job_id: str, *, timeout: float | None = None) -> AsyncIterator[Job]:
        """See ``EmbedfleetClient.watch``."""
        reopen = WatchReopener(self.connection, timeout)
        while True:
            try:
                request = jobs_pb2.WatchJobRequest(job_id=job_id)
                async for update in self.jobs.WatchJob(request, timeout=reopen.remaining()):
                    reopen.received()
                    yield Job.from_pb(update.job)
                return
            except Unavailable as exc:
                delay = reopen.delay(exc)
                if delay is None:
                    raise
                await asyncio.sleep(delay)

    async def wait(
        self,
        job_id: str,
        *,
        progress: bool = False,
        timeout: float | None = None,
        on_error: ErrorCallback | None = None,
    ) -> Job:
        """See ``EmbedfleetClient.wait``."""
        with JobProgress(progress, on_error=on_error) as view:
            async for update in self.watch(job_id, timeout=timeout):
                view.update(update)
        return view.final()

    async def results(self, job_id: str) -> AsyncIterator[tuple[int, int, list[str], np.ndarray]]:
        async for response in self.jobs.StreamJobResults(jobs_pb2.StreamJobResultsRequest(job_id=job_id)):
            batch = response.embeddings
            yield response.chunk_index, response.first_document, list(batch.ids), wire.batch_vectors(batch)

    async def embed(
        self,
        texts: list[str],
        *,
        model: str = "",
        dimensions: int = 0,
        precision: str = "float32",
        input_type: str = "document",
        normalize: bool = True,
    ) -> EmbedResult:
        """See ``EmbedfleetClient.embed``."""
        return await self._call(
            calls.EMBED,
            texts,
            model=model,
            dimensions=dimensions,
            precision=precision,
            input_type=input_type,
            normalize=normalize,
        )

    async def status(self) -> DeploymentStatus:
        """See ``EmbedfleetClient.status``."""
        return await self._call(calls.GET_STATUS)

    async def list_models(self) -> list[ModelInfo]:
        """See ``EmbedfleetClient.list_models``."""
        return await self._call(calls.LIST_MODELS)

    async def search(self, collection: str, query: str, **options: Any) -> list[SearchHit]:
        """See ``EmbedfleetClient.search``."""
        return (await self.search_many(collection, [query], **options))[0]

    async def search_many(self, collection: str, queries: list[str], **options: Any) -> list[list[SearchHit]]:
        """See ``EmbedfleetClient.search_many``."""
        return await self._call(calls.SEARCH, collection, queries, **options)

    # -- clustering ---------------------------------------------------------------------------
    async def submit_cluster(self, collection: str, **kwargs: Any) -> Job:
        """See ``EmbedfleetClient.submit_cluster``."""
        return await self._call(calls.SUBMIT_CLUSTER, collection, **kwargs)

    async def cluster(
        self, collection: str, *, progress: bool = False, timeout: float | None = None, **kwargs: Any
    ) -> Job:
        """See ``EmbedfleetClient.cluster``."""
        job = await self.submit_cluster(collection, **kwargs)
        return await self.wait(job.id, progress=progress, timeout=timeout)

    async def clusters(self, job_id: str, page_size: int = 100) -> list[ClusterSummary]:
        """See ``EmbedfleetClient.clusters``."""
        return [c async for c in self._paged(calls.CLUSTERS, job_id, page_size)]

    def cluster_assignments(
        self, job_id: str, cluster: int | None = None, page_size: int = 1000
    ) -> AsyncIterator[Assignment]:
        """See ``EmbedfleetClient.cluster_assignments``."""
        return self._paged(calls.CLUSTER_ASSIGNMENTS, job_id, cluster, page_size)

    async def cluster_map(self, job_id: str) -> ClusterMap:
        """See ``EmbedfleetClient.cluster_map``."""
        return await self._call(calls.GET_CLUSTER_MAP, job_id)

    # -- collections --------------------------------------------------------------------------
    async def list_collections(self, page_size: int = 100) -> list[Collection]:
        """See ``EmbedfleetClient.list_collections``."""
        return [c async for c in self._paged(calls.LIST_COLLECTIONS, page_size)]

    async def get_collection(self, name: str) -> Collection:
        """See ``EmbedfleetClient.get_collection``."""
        return await self._call(calls.GET_COLLECTION, name)

    async def delete_collection(self, name: str) -> Collection:
        """See ``EmbedfleetClient.delete_collection``."""
        return await self._call(calls.DELETE_COLLECTION, name)

    # -- API keys (admin) ---------------------------------------------------------------------
    async def create_key(self, role: str, name: str = "") -> CreatedKey:
        """See ``EmbedfleetClient.create_key``."""
        return await self._call(calls.CREATE_KEY, role, name)

    async def list_keys(self) -> list[ApiKey]:
        """See ``EmbedfleetClient.list_keys``."""
        return await self._call(calls.LIST_KEYS)

    async def revoke_key(self, key_id: str) -> ApiKey:
        """See ``EmbedfleetClient.revoke_key``."""
        return await self._call(calls.REVOKE_KEY, key_id)
