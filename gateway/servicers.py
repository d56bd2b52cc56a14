"""gRPC servicers: convert each request, delegate to ``GatewayCore``, convert the answer back.

No rule of the system lives here; errors are domain exceptions turned into statuses by
``translate_errors``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc

from embedfleet.domain import Document, JobKind
from embedfleet.errors import InvalidArgument
from embedfleet.gateway import convert
from embedfleet.gateway.errors import translate_errors
from embedfleet.gateway.service import GatewayCore, JobRequest
from embedfleet.v1 import (
    embed_pb2,
    embed_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)


def _split_submission(requests: Iterator[Any], kind: JobKind) -> tuple[JobRequest, Iterator[Document]]:
    """First message -> JobRequest; the rest -> a lazy stream of documents (validated by the core)."""
    first = next(requests, None)
    if first is None or first.WhichOneof("item") != "config":
        raise InvalidArgument("the first message of a job submission must carry its config")
    config = first.config
    request = JobRequest(
        kind=kind,
        embedding=convert.options_from_pb(config.embedding),
        collection=getattr(config, "collection", ""),
        source_path=config.source.path,
        chunk_size=config.chunk_size,
        display_name=config.display_name,
        extra_fields=tuple(convert.field_from_pb(f) for f in getattr(config, "extra_fields", ())),
    )

    def documents() -> Iterator[Document]:
        for message in requests:
            if message.WhichOneof("item") != "documents":
                raise InvalidArgument("config may only be sent once, as the first message")
            if request.source_path:
                raise InvalidArgument("a job with a source path cannot also stream documents")
            yield from convert.documents_from_pb(message.documents)

    return request, documents()


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    def _submit(self, requests: Iterator[Any], kind: JobKind) -> jobs_pb2.Job:
        request, documents = _split_submission(requests, kind)
        return convert.job_to_pb(self.core.submit_job(request, documents))

    @translate_errors
    def SubmitIndexJob(self, request_iterator, context):  # type: ignore[no-untyped-def]
        return jobs_pb2.SubmitIndexJobResponse(job=self._submit(request_iterator, JobKind.INDEX))

    @translate_errors
    def SubmitEmbedJob(self, request_iterator, context):  # type: ignore[no-untyped-def]
        return jobs_pb2.SubmitEmbedJobResponse(job=self._submit(request_iterator, JobKind.EMBED))

    @translate_errors
    def SubmitDistillJob(self, request, context):  # type: ignore[no-untyped-def]
        job = self.core.submit_distill(convert.distill_from_pb(request.config))
        return jobs_pb2.SubmitDistillJobResponse(job=convert.job_to_pb(job))

    @translate_errors
    def SubmitEvaluateJob(self, request, context):  # type: ignore[no-untyped-def]
        job = self.core.submit_evaluate(convert.evaluate_from_pb(request.config))
        return jobs_pb2.SubmitEvaluateJobResponse(job=convert.job_to_pb(job))

    @translate_errors
    def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        return jobs_pb2.GetJobResponse(job=convert.job_to_pb(self.core.get_job(request.job_id)))

    @translate_errors
    def ListJobs(self, request, context):  # type: ignore[no-untyped-def]
        jobs, token = self.core.list_jobs(request.page_size, request.page_token, convert.state_from_pb(request.state))
        return jobs_pb2.ListJobsResponse(jobs=[convert.job_to_pb(j) for j in jobs], next_page_token=token)

    @translate_errors
    def CancelJob(self, request, context):  # type: ignore[no-untyped-def]
        return jobs_pb2.CancelJobResponse(job=convert.job_to_pb(self.core.cancel_job(request.job_id)))

    @translate_errors
    def WatchJob(self, request, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        for snapshot in self.core.watch_job(request.job_id, context.is_active):
            yield jobs_pb2.WatchJobResponse(job=convert.job_to_pb(snapshot))

    @translate_errors
    def StreamJobResults(self, request, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        for chunk, first, result in self.core.job_results(request.job_id, context.is_active):
            yield convert.chunk_result_to_pb(chunk, first, result)


class EmbedServicer(embed_pb2_grpc.EmbedServiceServicer):
    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    @translate_errors
    def Embed(self, request: embed_pb2.EmbedRequest, context: grpc.ServicerContext):  # type: ignore[no-untyped-def]
        remaining = context.time_remaining()
        result = self.core.embed(list(request.texts), convert.options_from_pb(request.options), remaining)
        return convert.embed_result_to_pb(result)


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    @translate_errors
    def ListModels(self, request, context):  # type: ignore[no-untyped-def]
        return models_pb2.ListModelsResponse(models=[convert.model_to_pb(m) for m in self.core.list_models()])


class SearchServicer(search_pb2_grpc.SearchServiceServicer):
    def __init__(self, core: GatewayCore) -> None:
        self.core = core

    @translate_errors
    def Search(self, request, context):  # type: ignore[no-untyped-def]
        hits, model = self.core.search(request.collection, request.query, request.top_k, request.filter)
        return search_pb2.SearchResponse(hits=[convert.hit_to_pb(h) for h in hits], model=model)
