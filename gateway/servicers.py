"""gRPC servicers: convert each request, delegate to a capability core, convert the answer back.

No rule of the system lives here; errors are domain exceptions turned into statuses by
``translate_errors``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from embedfleet.domain import Document
from embedfleet.errors import InvalidArgument
from embedfleet.gateway import convert
from embedfleet.gateway.clusters import ClustersCore
from embedfleet.gateway.collections import CollectionsCore
from embedfleet.gateway.embedding import EmbedCore
from embedfleet.gateway.errors import translate_errors
from embedfleet.gateway.jobs import JobsCore
from embedfleet.gateway.keys import KeysCore
from embedfleet.gateway.kinds import JobRequest
from embedfleet.gateway.kinds.dedup import read_groups
from embedfleet.gateway.models import ModelsCore
from embedfleet.gateway.search import SearchCore
from embedfleet.gateway.status import StatusCore
from embedfleet.v1 import (
    collections_pb2,
    collections_pb2_grpc,
    embed_pb2,
    embed_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    keys_pb2,
    keys_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
)


def _split_submission(
    requests: Iterator[Any], from_pb: Callable[[Any], JobRequest]
) -> tuple[JobRequest, Iterator[Document]]:
    """First message -> the kind's request; the rest -> a lazy stream of documents (validated by the planner)."""
    first = next(requests, None)
    if first is None or first.WhichOneof("item") != "config":
        raise InvalidArgument("the first message of a job submission must carry its config", "config")
    request = from_pb(first.config)

    def documents() -> Iterator[Document]:
        for message in requests:
            if message.WhichOneof("item") != "documents":
                raise InvalidArgument("config may only be sent once, as the first message", "config")
            if getattr(request, "source_path", "") or getattr(request, "reference", None):
                raise InvalidArgument("a job with a source path or uri cannot also stream documents", "documents")
            yield from convert.documents_from_pb(message.documents)

    return request, documents()


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, jobs: JobsCore) -> None:
        self.jobs = jobs
        self.clusters = ClustersCore(jobs)

    def _submit_stream(self, requests: Iterator[Any], from_pb: Callable[[Any], JobRequest]) -> jobs_pb2.Job:
        request, documents = _split_submission(requests, from_pb)
        return convert.job_to_pb(self.jobs.submit(request, documents))

    def _submit_one(self, config: Any, from_pb: Callable[[Any], JobRequest]) -> jobs_pb2.Job:
        return convert.job_to_pb(self.jobs.submit(from_pb(config)))

    @translate_errors
    def SubmitIndexJob(
        self, request_iterator: Iterator[jobs_pb2.SubmitIndexJobRequest], context: grpc.ServicerContext
    ) -> jobs_pb2.SubmitIndexJobResponse:
        return jobs_pb2.SubmitIndexJobResponse(job=self._submit_stream(request_iterator, convert.index_from_pb))

    @translate_errors
    def SubmitEmbedJob(
        self, request_iterator: Iterator[jobs_pb2.SubmitEmbedJobRequest], context: grpc.ServicerContext
    ) -> jobs_pb2.SubmitEmbedJobResponse:
        return jobs_pb2.SubmitEmbedJobResponse(job=self._submit_stream(request_iterator, convert.embed_job_from_pb))

    @translate_errors
    def SubmitDistillJob(
        self, request: jobs_pb2.SubmitDistillJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.SubmitDistillJobResponse:
        return jobs_pb2.SubmitDistillJobResponse(job=self._submit_one(request.config, convert.distill_from_pb))

    @translate_errors
    def SubmitEvaluateJob(
        self, request: jobs_pb2.SubmitEvaluateJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.SubmitEvaluateJobResponse:
        return jobs_pb2.SubmitEvaluateJobResponse(job=self._submit_one(request.config, convert.evaluate_from_pb))

    @translate_errors
    def SubmitDedupJob(
        self, request: jobs_pb2.SubmitDedupJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.SubmitDedupJobResponse:
        return jobs_pb2.SubmitDedupJobResponse(job=self._submit_one(request.config, convert.dedup_from_pb))

    @translate_errors
    def GetDedupGroups(
        self, request: jobs_pb2.GetDedupGroupsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetDedupGroupsResponse:
        snapshot = self.jobs.get(request.job_id)
        return convert.dedup_groups_to_pb(*read_groups(snapshot, request.page_size, request.page_token))

    @translate_errors
    def ResumeJob(
        self, request: jobs_pb2.ResumeJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ResumeJobResponse:
        return jobs_pb2.ResumeJobResponse(job=convert.job_to_pb(self.jobs.resume(request.job_id)))

    @translate_errors
    def GetJob(self, request: jobs_pb2.GetJobRequest, context: grpc.ServicerContext) -> jobs_pb2.GetJobResponse:
        return jobs_pb2.GetJobResponse(job=convert.job_to_pb(self.jobs.get(request.job_id)))

    @translate_errors
    def ListJobs(self, request: jobs_pb2.ListJobsRequest, context: grpc.ServicerContext) -> jobs_pb2.ListJobsResponse:
        state = convert.state_filter_from_pb(request.state)
        jobs, token = self.jobs.list(request.page_size, request.page_token, state)
        return jobs_pb2.ListJobsResponse(jobs=[convert.job_to_pb(j) for j in jobs], next_page_token=token)

    @translate_errors
    def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.CancelJobResponse:
        return jobs_pb2.CancelJobResponse(job=convert.job_to_pb(self.jobs.cancel(request.job_id)))

    @translate_errors
    def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[jobs_pb2.WatchJobResponse]:
        for snapshot in self.jobs.watch(request.job_id, context.is_active):
            yield jobs_pb2.WatchJobResponse(job=convert.job_to_pb(snapshot))

    @translate_errors
    def StreamJobResults(
        self, request: jobs_pb2.StreamJobResultsRequest, context: grpc.ServicerContext
    ) -> Iterator[jobs_pb2.StreamJobResultsResponse]:
        for part, first, result in self.jobs.results(request.job_id, context.is_active):
            yield convert.part_result_to_pb(part, first, result)

    @translate_errors
    def SubmitClusterJob(
        self, request: jobs_pb2.SubmitClusterJobRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.SubmitClusterJobResponse:
        return jobs_pb2.SubmitClusterJobResponse(job=self._submit_one(request.config, convert.cluster_from_pb))

    @translate_errors
    def ListClusters(
        self, request: jobs_pb2.ListClustersRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListClustersResponse:
        clusters, token, total = self.clusters.clusters(request.job_id, request.page_size, request.page_token)
        return jobs_pb2.ListClustersResponse(
            clusters=[convert.cluster_to_pb(c) for c in clusters], next_page_token=token, total=total
        )

    @translate_errors
    def ListClusterAssignments(
        self, request: jobs_pb2.ListClusterAssignmentsRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.ListClusterAssignmentsResponse:
        cluster = request.cluster_id if request.HasField("cluster_id") else None
        rows, token = self.clusters.assignments(request.job_id, request.page_size, request.page_token, cluster)
        return jobs_pb2.ListClusterAssignmentsResponse(
            assignments=[convert.assignment_to_pb(r) for r in rows], next_page_token=token
        )

    @translate_errors
    def GetClusterMap(
        self, request: jobs_pb2.GetClusterMapRequest, context: grpc.ServicerContext
    ) -> jobs_pb2.GetClusterMapResponse:
        return convert.map_to_pb(*self.clusters.cluster_map(request.job_id))


class EmbedServicer(embed_pb2_grpc.EmbedServiceServicer):
    def __init__(self, embedder: EmbedCore) -> None:
        self.embedder = embedder

    @translate_errors
    def Embed(self, request: embed_pb2.EmbedRequest, context: grpc.ServicerContext) -> embed_pb2.EmbedResponse:
        options = convert.options_from_pb(request.options)
        result = self.embedder.embed(list(request.texts), options, context.time_remaining())
        return convert.embed_result_to_pb(result)


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, models: ModelsCore) -> None:
        self.models = models

    @translate_errors
    def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> models_pb2.ListModelsResponse:
        return models_pb2.ListModelsResponse(models=[convert.model_to_pb(m) for m in self.models.list()])


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, search: SearchCore) -> None:
        self.search = search

    @translate_errors
    def Search(self, request: search_pb2.SearchRequest, context: grpc.ServicerContext) -> search_pb2.SearchResponse:
        query = convert.search_from_pb(request)
        answer = self.search.search(query)
        return convert.search_to_pb(query.queries, answer.results, answer.model)


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(self, status: StatusCore) -> None:
        self.status = status

    @translate_errors
    def GetStatus(
        self, request: status_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> status_pb2.GetStatusResponse:
        return convert.status_to_pb(self.status.status())


class CollectionServicer(collections_pb2_grpc.CollectionServiceServicer):
    def __init__(self, collections: CollectionsCore) -> None:
        self.collections = collections

    @translate_errors
    def ListCollections(
        self, request: collections_pb2.ListCollectionsRequest, context: grpc.ServicerContext
    ) -> collections_pb2.ListCollectionsResponse:
        found, token = self.collections.page(request.page_size, request.page_token)
        return collections_pb2.ListCollectionsResponse(
            collections=[convert.collection_to_pb(c) for c in found], next_page_token=token
        )

    @translate_errors
    def GetCollection(
        self, request: collections_pb2.GetCollectionRequest, context: grpc.ServicerContext
    ) -> collections_pb2.GetCollectionResponse:
        return collections_pb2.GetCollectionResponse(
            collection=convert.collection_to_pb(self.collections.get(request.name))
        )

    @translate_errors
    def DeleteCollection(
        self, request: collections_pb2.DeleteCollectionRequest, context: grpc.ServicerContext
    ) -> collections_pb2.DeleteCollectionResponse:
        return collections_pb2.DeleteCollectionResponse(
            collection=convert.collection_to_pb(self.collections.delete(request.name))
        )


class KeyServicer(keys_pb2_grpc.KeyServiceServicer):
    def __init__(self, keys: KeysCore) -> None:
        self.keys = keys

    @translate_errors
    def CreateKey(
        self, request: keys_pb2.CreateKeyRequest, context: grpc.ServicerContext
    ) -> keys_pb2.CreateKeyResponse:
        key, secret = self.keys.create(convert.role_from_pb(request.role), request.name)
        return keys_pb2.CreateKeyResponse(key=convert.key_to_pb(key), secret=secret)

    @translate_errors
    def ListKeys(self, request: keys_pb2.ListKeysRequest, context: grpc.ServicerContext) -> keys_pb2.ListKeysResponse:
        return keys_pb2.ListKeysResponse(keys=[convert.key_to_pb(k) for k in self.keys.list()])

    @translate_errors
    def RevokeKey(
        self, request: keys_pb2.RevokeKeyRequest, context: grpc.ServicerContext
    ) -> keys_pb2.RevokeKeyResponse:
        return keys_pb2.RevokeKeyResponse(key=convert.key_to_pb(self.keys.revoke(request.key_id)))


SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (jobs_pb2, "JobService"),
        (embed_pb2, "EmbedService"),
        (models_pb2, "ModelService"),
        (search_pb2, "SearchService"),
        (status_pb2, "StatusService"),
        (collections_pb2, "CollectionService"),
        (keys_pb2, "KeyService"),
    )
)


def add_services(
    server: grpc.Server,
    jobs: JobsCore,
    embedder: EmbedCore,
    models: ModelsCore,
    search: SearchCore,
    status: StatusCore,
    collections: CollectionsCore,
) -> None:
    """Register the v1 services on ``server`` (their full names are ``SERVICE_NAMES``)."""
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(jobs), server)
    embed_pb2_grpc.add_EmbedServiceServicer_to_server(EmbedServicer(embedder), server)
    models_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(models), server)
    search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(search), server)
    status_pb2_grpc.add_StatusServiceServicer_to_server(StatusServicer(status), server)
    collections_pb2_grpc.add_CollectionServiceServicer_to_server(CollectionServicer(collections), server)


def add_key_service(server: grpc.Server, keys: KeysCore) -> None:
    """Register the key service (admins manage their tenant's API keys)."""
    keys_pb2_grpc.add_KeyServiceServicer_to_server(KeyServicer(keys), server)
