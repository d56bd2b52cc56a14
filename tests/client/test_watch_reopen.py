"""A watch cut by UNAVAILABLE (a gateway restarting, a proxy's GOAWAY) is opened again by the SDK's
``watch``/``wait``, sync and asyncio, against a real gRPC server on 127.0.0.1: the caller sees the
final job, not the cut; a gateway that stays away still ends in ``Unavailable`` after the retries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from embedfleet.client.aio import AsyncEmbedfleetClient
from embedfleet.client.errors import Unavailable
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.v1 import jobs_pb2, jobs_pb2_grpc


class FlakyWatch(jobs_pb2_grpc.JobServiceServicer):
    """Each of the first ``cuts`` watches sends the job RUNNING and is then cut with UNAVAILABLE; the
    next one sends it SUCCEEDED and ends."""

    def __init__(self, cuts: int) -> None:
        self.cuts = cuts
        self.opened = 0

    def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[jobs_pb2.WatchJobResponse]:
        self.opened += 1
        job = jobs_pb2.Job(id=request.job_id, kind=jobs_pb2.JOB_KIND_INDEX)
        if self.opened <= self.cuts:
            job.state = jobs_pb2.JOB_STATE_RUNNING
            yield jobs_pb2.WatchJobResponse(job=job)
            context.abort(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down")
        job.state = jobs_pb2.JOB_STATE_SUCCEEDED
        yield jobs_pb2.WatchJobResponse(job=job)


def _serve(servicer: FlakyWatch) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@pytest.mark.parametrize("cuts", [1, 3])
def test_wait_reopens_a_cut_watch(cuts: int) -> None:
    servicer = FlakyWatch(cuts)
    server, address = _serve(servicer)
    try:
        with EmbedfleetClient(address, retries=2) as client:
            final = client.wait("job-1")  # each cut follows an update: the count starts again
        assert final.state == JobState.SUCCEEDED and servicer.opened == cuts + 1
    finally:
        server.stop(None)


def test_async_wait_reopens_a_cut_watch() -> None:
    servicer = FlakyWatch(2)
    server, address = _serve(servicer)

    async def run() -> JobState:
        async with AsyncEmbedfleetClient(address, retries=2) as client:
            return (await client.wait("job-1")).state

    try:
        assert asyncio.run(run()) == JobState.SUCCEEDED and servicer.opened == 3
    finally:
        server.stop(None)


def test_a_gateway_that_stays_away_still_fails_the_wait() -> None:
    server, address = _serve(FlakyWatch(0))
    server.stop(None)  # nothing listens any more
    with EmbedfleetClient(address, retries=2) as client, pytest.raises(Unavailable):
        client.wait("job-1", timeout=30)
