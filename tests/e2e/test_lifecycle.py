"""Job lifecycle across the real system: cancel, list, a restarted gateway, recovery, a killed worker."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

from embedfleet import milvus
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import Document, EmbeddingOptions, EmbedParams, JobSpec, JobState
from embedfleet.gateway.server import start_gateway
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.local import LocalCluster


def _docs(n: int, tag: str) -> list[dict[str, str]]:
    return [{"id": f"{tag}-{i}", "text": f"{tag} sentence number {i} about embeddings and queues"} for i in range(n)]


def _gateway_settings(cluster: LocalCluster) -> GatewaySettings:
    """Another gateway of the same deployment (on Ray it brings its own actor, sharing the queue)."""
    return GatewaySettings(
        redis_url=cluster.redis_url,
        key_prefix=cluster.key_prefix,
        milvus_uri=cluster.milvus_uri,
        backend=cluster.backend,
        ray_num_cpus_per_actor=0.5,
        port=0,
        auth=False,
    )


def test_cancel_stops_queued_chunks(client: EmbedfleetClient) -> None:
    job = client.submit_embed(_docs(640, "cancel"), chunk_size=16)
    cancelled = client.cancel_job(job.id)
    assert cancelled.state == JobState.CANCELLED
    time.sleep(3)  # let the worker drain the queue: every remaining chunk must be skipped
    settled = client.get_job(job.id)
    assert settled.state == JobState.CANCELLED
    assert settled.done < settled.total
    time.sleep(2)
    assert client.get_job(job.id).done == settled.done  # nothing ran after the cancel took effect
    assert client.cancel_job(job.id).state == JobState.CANCELLED


def test_list_jobs_newest_first_and_by_state(client: EmbedfleetClient) -> None:
    first = client.index(_docs(3, "l1"), f"e2e_{uuid.uuid4().hex[:8]}")
    second = client.index(_docs(3, "l2"), f"e2e_{uuid.uuid4().hex[:8]}")
    listed = [j.id for j in client.list_jobs(page_size=2)]
    assert listed.index(second.id) < listed.index(first.id)  # paged through, newest first
    assert all(j.state == JobState.SUCCEEDED for j in client.list_jobs(JobState.SUCCEEDED))


def test_a_restarted_gateway_serves_every_job(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    job = client.index(_docs(5, "restart"), f"e2e_{uuid.uuid4().hex[:8]}")
    other = start_gateway(_gateway_settings(cluster))
    try:
        with EmbedfleetClient(f"127.0.0.1:{other.port}") as fresh:
            seen = fresh.get_job(job.id)
            assert (seen.state, seen.done) == (JobState.SUCCEEDED, 5)
            assert list(fresh.watch(job.id))[-1].state == JobState.SUCCEEDED
    finally:
        other.stop()


def test_accepted_chunks_never_dispatched_are_recovered(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    """A gateway that died between claiming a job's chunks and queueing them: another gateway queues them
    once two of its recovery passes have seen them unsent (and the chunks are counted once)."""
    other = start_gateway(_gateway_settings(cluster))
    try:
        store = other.ctx.store
        job_id = uuid.uuid4().hex
        store.put_part_input(job_id, 0, [Document(id="r", text="recovered text")])
        model = other.ctx.resolve(EmbeddingOptions(model="all-MiniLM-L6-v2"))
        spec = JobSpec(params=EmbedParams(), embedding=model.options, output_dimensions=model.output_dimensions)
        store.create_job(job_id, spec, total=1, parts=1)
        assert store.claim_parts(job_id, 0) == range(1)  # ... and the claiming gateway dies here
        other.jobs.feeder.recover_pending()  # the first pass only notes the unsent chunk
        other.jobs.feeder.recover_pending()
        final = client.wait(job_id)
        assert (final.state, final.done, final.chunks_finished) == (JobState.SUCCEEDED, 1, 1)
    finally:
        other.stop()


def _worker_pid(cluster: LocalCluster) -> int:
    """The process running chunks: the Celery worker's pool child, or the Ray actor."""
    if cluster.backend == "ray":
        [pid] = cluster.gateway.ctx.dispatcher.actor_pids()  # type: ignore[attr-defined]
        return int(pid)
    worker_main = cluster.processes["worker-0"].pid
    [child] = Path(f"/proc/{worker_main}/task/{worker_main}/children").read_text().split()
    return int(child)


def test_a_killed_worker_loses_nothing_and_duplicates_nothing(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    job = client.submit_index(_docs(480, "kill"), collection, chunk_size=40)
    deadline = time.monotonic() + 60
    while client.get_job(job.id).done < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(_worker_pid(cluster), signal.SIGKILL)  # mid-job: a chunk is running in it
    final = client.wait(job.id)
    assert final.state == JobState.SUCCEEDED, final.error
    assert (final.done, final.failed) == (480, 0)  # the interrupted chunk counted once
    rows = milvus.connect(cluster.milvus_uri).query(collection, filter="", output_fields=["count(*)"])
    assert rows[0]["count(*)"] == 480  # and written once


def test_search_after_milvus_restarts(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    """Milvus Lite comes back with collections released; the gateway loads them again on first search."""
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    assert client.index(_docs(10, "restart-milvus"), collection).state == JobState.SUCCEEDED
    milvus_process = cluster.processes.pop("milvus")
    milvus_process.terminate()
    milvus_process.wait(timeout=30)
    cluster.start_milvus()  # same port, same data directory
    target = _docs(10, "restart-milvus")[3]
    hits = client.search(collection, target["text"], top_k=1)
    assert hits[0].id == target["id"] and hits[0].score > 0.99
