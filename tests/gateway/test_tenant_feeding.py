"""Fair feeding across tenants, on the real Redis job store: however many jobs one tenant has, it holds
at most its ``max_queued_parts`` of the queue, shared round-robin among its jobs, so another tenant's
small job is queued at once behind a bounded number of parts (the figure: 24 parts ahead of it
without the tenant cap, 4 with it)."""

from __future__ import annotations

from collections.abc import Sequence

from embedfleet.domain import EmbeddingOptions, EmbedParams, JobSpec
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.feeding import PartFeeder
from embedfleet.gateway.quotas import TenantQuota
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.jobstore import JobStore


class QueueOrder:
    """A stand-in queue (FIFO, like Celery's list) that records what was handed to it."""

    def __init__(self) -> None:
        self.queued: list[tuple[str, int]] = []

    def dispatch_parts(self, job_id: str, parts: Sequence[int]) -> None:
        self.queued += [(job_id, p) for p in parts]

    def dispatch_request(self, request_id: str) -> None:
        raise AssertionError("no interactive requests here")

    def close(self) -> None:
        pass


def _job(store: JobStore, job_id: str, tenant: str, parts: int) -> str:
    spec = JobSpec(params=EmbedParams(), embedding=EmbeddingOptions(model="m"), output_dimensions=4, tenant=tenant)
    store.create_job(job_id, spec, total=parts, parts=parts)
    return job_id


def _ahead_of_small_job(store: JobStore, cap: int) -> tuple[int, dict[str, int]]:
    """Parts queued before tenant globex's 1-part job, submitted after acme's three 20-part jobs."""
    queue = QueueOrder()
    settings = GatewaySettings(dispatch_window=8, quota=TenantQuota(max_queued_parts=cap))
    feeder = PartFeeder(GatewayContext(settings, store, queue, lambda: None))  # type: ignore[arg-type, return-value]
    bulk = [_job(store, f"bulk{i}-{cap}", "acme", 20) for i in range(3)]
    for job_id in bulk:
        feeder.feed(job_id)
    small = _job(store, f"small-{cap}", "globex", 1)
    feeder.feed(small)
    feeder.feed_all()  # a dispatch pass changes nothing: nothing finished
    per_job = {job_id: sum(1 for j, _ in queue.queued if j == job_id) for job_id in bulk}
    for job_id in [*bulk, small]:
        store.cancel(job_id)
    return queue.queued.index((small, 0)), per_job


def test_one_tenants_many_jobs_hold_its_share_of_the_queue_only(store: JobStore) -> None:
    fifo_ahead, fifo_jobs = _ahead_of_small_job(store, cap=0)  # no tenant cap: each job its window
    fair_ahead, fair_jobs = _ahead_of_small_job(store, cap=4)
    assert fifo_ahead == 24 and set(fifo_jobs.values()) == {8}
    assert fair_ahead == 4 and sum(fair_jobs.values()) == 4
    assert max(fair_jobs.values()) - min(fair_jobs.values()) <= 1  # shared round-robin within the tenant


def test_finished_parts_free_the_tenants_share_for_its_next_parts(store: JobStore) -> None:
    queue = QueueOrder()
    settings = GatewaySettings(dispatch_window=8, quota=TenantQuota(max_queued_parts=2))
    feeder = PartFeeder(GatewayContext(settings, store, queue, lambda: None))  # type: ignore[arg-type, return-value]
    job_id = _job(store, "refill", "acme", 5)
    assert feeder.feed(job_id) == 2
    assert feeder.feed_all() == 0
    store.start_part(job_id, 0)
    store.finish_part(job_id, 0, done=1, failed=0, truncated=0)
    assert feeder.feed_all() == 1 and queue.queued[-1] == (job_id, 2)
