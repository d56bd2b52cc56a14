"""Standard services on the gateway: health and reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from embedfleet.local import LocalCluster


@pytest.fixture(scope="module")
def cluster(celery_system: LocalCluster) -> LocalCluster:
    """Health and reflection do not depend on the backend: one is enough."""
    return celery_system


def test_health_and_reflection(cluster: LocalCluster) -> None:
    with grpc.insecure_channel(cluster.gateway_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "embedfleet.v1.JobService", "embedfleet.v1.EmbedService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [response] = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for s in response.list_services_response.service}
        assert {"embedfleet.v1.JobService", "embedfleet.v1.ModelService", "grpc.health.v1.Health"} <= names
