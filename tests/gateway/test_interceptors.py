"""RPC counts and latency by method and final code, for unary and streaming calls (a real gRPC server
on loopback with the standard health service behind the interceptor)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from embedfleet.gateway.interceptors import RpcMetricsInterceptor

CHECK = "grpc.health.v1.Health/Check"
WATCH = "grpc.health.v1.Health/Watch"


@pytest.fixture
def health_stub() -> Iterator[health_pb2_grpc.HealthStub]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[RpcMetricsInterceptor()])
    servicer = health.HealthServicer()
    servicer.set("up", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield health_pb2_grpc.HealthStub(channel)
    server.stop(0).wait()


def _count(method: str, code: str) -> float:
    return REGISTRY.get_sample_value("embedfleet_rpc_requests_total", {"method": method, "code": code}) or 0.0


def _timed(method: str) -> float:
    return REGISTRY.get_sample_value("embedfleet_rpc_duration_seconds_count", {"method": method}) or 0.0


def test_unary_calls_by_final_code(health_stub: health_pb2_grpc.HealthStub) -> None:
    ok, not_found, timed = _count(CHECK, "OK"), _count(CHECK, "NOT_FOUND"), _timed(CHECK)
    health_stub.Check(health_pb2.HealthCheckRequest(service="up"), timeout=5)
    with pytest.raises(grpc.RpcError) as err:
        health_stub.Check(health_pb2.HealthCheckRequest(service="unknown"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert _count(CHECK, "OK") == ok + 1
    assert _count(CHECK, "NOT_FOUND") == not_found + 1
    assert _timed(CHECK) == timed + 2


def test_a_stream_the_client_abandons_counts_as_cancelled(health_stub: health_pb2_grpc.HealthStub) -> None:
    cancelled = _count(WATCH, "CANCELLED")
    stream = health_stub.Watch(health_pb2.HealthCheckRequest(service="up"))
    assert next(stream).status == health_pb2.HealthCheckResponse.SERVING
    stream.cancel()
    deadline = time.monotonic() + 5
    while _count(WATCH, "CANCELLED") == cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(WATCH, "CANCELLED") == cancelled + 1
