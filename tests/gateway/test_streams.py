"""Open streams are bounded and abandoned ones end: watches can never starve health checks and unary calls.

A gateway of its own (real Redis, no workers): the watched job stays QUEUED, so no watch ever ends
by itself, which is the case an interrupted ``jobs watch`` leaves behind.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from embedfleet.domain import EmbeddingOptions, EmbedParams, JobSpec
from embedfleet.errors import ResourceExhausted
from embedfleet.gateway.server import RunningGateway, start_gateway
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.gateway.streams import RETRY_AFTER_S, StreamSlots
from embedfleet.v1 import jobs_pb2, jobs_pb2_grpc

MAX_STREAMS = 3


@pytest.fixture
def gateway(redis_url: str, key_prefix: str) -> Iterator[RunningGateway]:
    settings = GatewaySettings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        port=0,
        max_workers=MAX_STREAMS + 4,
        max_streams=MAX_STREAMS,
        auth=False,
    )
    running = start_gateway(settings)
    yield running
    running.stop(grace_s=0)


def _queued_job(gateway: RunningGateway) -> str:
    job_id = uuid.uuid4().hex
    spec = JobSpec(params=EmbedParams(), embedding=EmbeddingOptions(model="all-MiniLM-L6-v2"), output_dimensions=384)
    gateway.ctx.store.create_job(job_id, spec, total=1, parts=1)
    return job_id


def _answers_at_once(channel: grpc.Channel, job_id: str) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    job = jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=2).job
    assert job.id == job_id


def test_abandoned_watches_leave_health_and_unary_calls_answerable(gateway: RunningGateway) -> None:
    job_id = _queued_job(gateway)
    with grpc.insecure_channel(gateway.address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        request = jobs_pb2.WatchJobRequest(job_id=job_id)
        opened, refused = [], []
        for _ in range(MAX_STREAMS + 5):  # more watches than the gateway has threads
            call = stub.WatchJob(request, timeout=30)
            try:
                next(call)
                opened.append(call)
            except grpc.RpcError as exc:
                refused.append(exc)
        assert len(opened) == MAX_STREAMS
        assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        status = rpc_status.from_call(refused[0])
        assert status is not None and "open streams" in status.message
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)
        _answers_at_once(channel, job_id)

        for call in opened:  # the clients go away (an interrupted `jobs watch`)
            call.cancel()
        deadline = time.monotonic() + 5
        while True:  # their slots come back within a poll, though the job never changed
            try:
                next(stub.WatchJob(request, timeout=5))
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline
                time.sleep(0.2)
        _answers_at_once(channel, job_id)


def test_a_tenant_holds_at_most_its_share_of_the_slots() -> None:
    slots = StreamSlots(max_streams=5)
    with ExitStack() as held:
        for _ in range(2):
            held.enter_context(slots.slot("watch", "acme", tenant_limit=2))
        with pytest.raises(ResourceExhausted, match="tenant 'acme' already has 2 open streams") as refused:
            held.enter_context(slots.slot("watch", "acme", tenant_limit=2))
        assert refused.value.retry_after_s == RETRY_AFTER_S
        for _ in range(3):  # the rest of the gateway's slots are still there for others
            held.enter_context(slots.slot("watch", "globex", tenant_limit=4))
        with pytest.raises(ResourceExhausted, match="already serves 5 open streams"):
            held.enter_context(slots.slot("watch", "initech", tenant_limit=4))
    with slots.slot("watch", "acme", tenant_limit=2), slots.slot("watch", "acme", tenant_limit=2):
        pass  # all given back when the streams ended
