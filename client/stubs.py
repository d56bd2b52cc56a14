"""The v1 service stubs on one channel, with typed errors: shared by the sync and asyncio clients
(the same generated stubs work on a ``grpc.Channel`` and a ``grpc.aio.Channel``)."""

from __future__ import annotations

from typing import Any

from embedfleet.client.errors import TypedStub
from embedfleet.v1 import embed_pb2_grpc, jobs_pb2_grpc, models_pb2_grpc, search_pb2_grpc, status_pb2_grpc


def service_stubs(channel: Any) -> tuple[Any, Any, Any, Any, Any]:
    """(jobs, embeddings, models, searches, status) stubs whose calls raise ``EmbedfleetRpcError`` subclasses."""
    return (
        TypedStub(jobs_pb2_grpc.JobServiceStub(channel)),
        TypedStub(embed_pb2_grpc.EmbedServiceStub(channel)),
        TypedStub(models_pb2_grpc.ModelServiceStub(channel)),
        TypedStub(search_pb2_grpc.SearchServiceStub(channel)),
        TypedStub(status_pb2_grpc.StatusServiceStub(channel)),
    )
