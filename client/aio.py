"""The asyncio Python client: the same calls as ``EmbedfleetClient``, awaitable.

async with AsyncEmbedfleetClient("127.0.0.1:50051") as client:
    job = await client.submit_index(docs, "docs")
    async for update in client.watch(job.id): ...
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
import pyarrow as pa

from embedfleet import wire
from embedfleet.apikeys import ApiKey
from embedfleet.client import paging
from embedfleet.client import requests as rq
from embedfleet.client.clusters import map_from_pb
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
    api_key_from_pb,
)
from embedfleet.cluster_types import Assignment, ClusterMap, ClusterSummary
from embedfleet.dedup_export import export_groups
from embedfleet.domain import JobState
from embedfleet.v1 import collections_pb2, embed_pb2, jobs_pb2, keys_pb2, models_pb2, status_pb2

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
        request = rq.distill_request(student_name, texts, **kwargs)
        return Job.from_pb((await self.jobs.SubmitDistillJob(request, timeout=self.timeout)).job)

    async def submit_evaluate(self, model: str, **kwargs: Any) -> Job:
        request = rq.evaluate_request(model, **kwargs)
        return Job.from_pb((await self.jobs.SubmitEvaluateJob(request, timeout=self.timeout)).job)

    async def get_job(self, job_id: str) -> Job:
        response = await self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=self.timeout)
        return Job.from_pb(response.job)

    async def cancel_job(self, job_id: str) -> Job:
        response = await self.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), timeout=self.timeout)
        return Job.from_pb(response.job)

    async def resume_job(self, job_id: str) -> Job:
        """See ``EmbedfleetClient.resume_job``."""
        response = await self.jobs.ResumeJob(jobs_pb2.ResumeJobRequest(job_id=job_id), timeout=self.timeout)
        return Job.from_pb(response.job)

    async def submit_dedup(self, collection: str, threshold: float, **kwargs: Any) -> Job:
        """See ``EmbedfleetClient.submit_dedup``."""
        request = rq.dedup_request(collection, threshold, **kwargs)
        return Job.from_pb((await self.jobs.SubmitDedupJob(request, timeout=self.timeout)).job)

    async def _paged(
        self, call: Any, request: Callable[[str], Any], items: Callable[[Any], Iterable[T]]
    ) -> AsyncIterator[T]:
        """See ``EmbedfleetClient._paged``."""
        token = ""
        while True:
            response = await call(request(token), timeout=self.timeout)
            for item in items(response):
                yield item
            token = response.next_page_token
            if not token:
                return

    def dedup_groups(self, job_id: str, page_size: int = 500) -> AsyncIterator[DedupGroup]:
        """See ``EmbedfleetClient.dedup_groups``."""
        return self._paged(
            self.jobs.GetDedupGroups, lambda t: rq.dedup_groups_request(job_id, page_size, t), paging.dedup_groups
        )

    async def export_dedup_groups(self, job_id: str, output: str | Path) -> int:
        """See ``EmbedfleetClient.export_dedup_groups``."""
        return export_groups([g async for g in self.dedup_groups(job_id)], output)

    def list_jobs(self, state: JobState | None = None, page_size: int = 50) -> AsyncIterator[Job]:
        """See ``EmbedfleetClient.list_jobs``."""
        return self._paged(self.jobs.ListJobs, lambda t: rq.list_jobs_request(state, page_size, t), paging.listed_jobs)

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
        request = embed_pb2.EmbedRequest(
            texts=texts, options=rq.embedding_options(model, dimensions, precision, input_type, normalize)
        )
        return EmbedResult.from_pb(await self.embeddings.Embed(request, timeout=self.timeout))

    async def status(self) -> DeploymentStatus:
        """Live workers (models, device), queue depth and active jobs, as the job store knows them."""
        response = await self.statuses.GetStatus(status_pb2.GetStatusRequest(), timeout=self.timeout)
        return DeploymentStatus.from_pb(response)

    async def list_models(self) -> list[ModelInfo]:
        response = await self.models.ListModels(models_pb2.ListModelsRequest(), timeout=self.timeout)
        return [ModelInfo.from_pb(m) for m in response.models]

    async def search(self, collection: str, query: str, **options: Any) -> list[SearchHit]:
        """See ``EmbedfleetClient.search``."""
        return (await self.search_many(collection, [query], **options))[0]

    async def search_many(self, collection: str, queries: list[str], **options: Any) -> list[list[SearchHit]]:
        """See ``EmbedfleetClient.search_many``."""
        request = rq.search_request(collection, queries, **options)
        response = await self.searches.Search(request, timeout=self.timeout)
        return [[SearchHit.from_pb(h) for h in result.hits] for result in response.results]

    # -- clustering ---------------------------------------------------------------------------
    async def submit_cluster(self, collection: str, **kwargs: Any) -> Job:
        """Queue a cluster job on ``collection`` (see ``EmbedfleetClient.submit_cluster``)."""
        request = rq.cluster_request(collection, **kwargs)
        return Job.from_pb((await self.jobs.SubmitClusterJob(request, timeout=self.timeout)).job)

    async def cluster(
        self, collection: str, *, progress: bool = False, timeout: float | None = None, **kwargs: Any
    ) -> Job:
        """Submit a cluster job and wait for it to finish."""
        job = await self.submit_cluster(collection, **kwargs)
        return await self.wait(job.id, progress=progress, timeout=timeout)

    async def clusters(self, job_id: str, page_size: int = 100) -> list[ClusterSummary]:
        """A finished cluster job's clusters, largest first, fetched page by page."""
        request = functools.partial(rq.list_clusters_request, job_id, page_size)
        return [c async for c in self._paged(self.jobs.ListClusters, request, paging.listed_clusters)]

    def cluster_assignments(
        self, job_id: str, cluster: int | None = None, page_size: int = 1000
    ) -> AsyncIterator[Assignment]:
        """Every row's cluster (only ``cluster``'s rows if given), fetched page by page."""
        request = functools.partial(rq.cluster_assignments_request, job_id, cluster, page_size)
        return self._paged(self.jobs.ListClusterAssignments, request, paging.listed_assignments)

    async def cluster_map(self, job_id: str) -> ClusterMap:
        """A sample of the job's rows projected to 2-D with their clusters."""
        return map_from_pb(
            await self.jobs.GetClusterMap(jobs_pb2.GetClusterMapRequest(job_id=job_id), timeout=self.timeout)
        )

    # -- collections --------------------------------------------------------------------------
    async def list_collections(self, page_size: int = 100) -> list[Collection]:
        """See ``EmbedfleetClient.list_collections``."""
        request = functools.partial(rq.list_collections_request, page_size)
        return [c async for c in self._paged(self.collections.ListCollections, request, paging.listed_collections)]

    async def get_collection(self, name: str) -> Collection:
        """See ``EmbedfleetClient.get_collection``."""
        request = collections_pb2.GetCollectionRequest(name=name)
        return Collection.from_pb((await self.collections.GetCollection(request, timeout=self.timeout)).collection)

    async def delete_collection(self, name: str) -> Collection:
        """See ``EmbedfleetClient.delete_collection``."""
        request = collections_pb2.DeleteCollectionRequest(name=name)
        response = await self.collections.DeleteCollection(request, timeout=self.timeout)
        return Collection.from_pb(response.collection)

    # -- API keys (admin) ---------------------------------------------------------------------
    async def create_key(self, role: str, name: str = "") -> CreatedKey:
        """See ``EmbedfleetClient.create_key``."""
        response = await self.keys.CreateKey(rq.create_key_request(role, name), timeout=self.timeout)
        return CreatedKey(api_key_from_pb(response.key), response.secret)

    async def list_keys(self) -> list[ApiKey]:
        """See ``EmbedfleetClient.list_keys``."""
        response = await self.keys.ListKeys(keys_pb2.ListKeysRequest(), timeout=self.timeout)
        return [api_key_from_pb(k) for k in response.keys]

    async def revoke_key(self, key_id: str) -> ApiKey:
        """See ``EmbedfleetClient.revoke_key``."""
        response = await self.keys.RevokeKey(keys_pb2.RevokeKeyRequest(key_id=key_id), timeout=self.timeout)
        return api_key_from_pb(response.key)
