"""Jobs: accept (through each kind's planner), queue, follow, cancel, stream results, recover.

State is in the job store (Redis), so any number of gateways can serve the same jobs, and a
restarted one continues where the last stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

from embedfleet import errors
from embedfleet.domain import Document, JobKind, JobSnapshot, JobState, ProgressUnit
from embedfleet.gateway import audit, paging, quotas, tenancy
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.feeding import PartFeeder
from embedfleet.gateway.kinds import PLANNERS, JobRequest
from embedfleet.gateway.kinds.base import PartStager, Submission
from embedfleet.gateway.streams import StreamSlots
from embedfleet.heartbeat import Heartbeat
from embedfleet.ids import new_job_id, validate_job_id
from embedfleet.jobstore import PartVectors
from embedfleet.results import read_job_part

log = logging.getLogger(__name__)


class JobsCore:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.streams = StreamSlots(ctx.settings.max_streams)
        self.feeder = PartFeeder(ctx)

    def submit(self, request: JobRequest, documents: Iterable[Document] = ()) -> JobSnapshot:
        """Validate and plan the job with its kind's planner, then create and queue it.

        The job exists only once every input is valid and staged: a submission refused part-way
        leaves nothing behind, and an accepted one is durable before this returns.
        """
        tenant = tenancy.current().tenant
        quota = self.ctx.settings.quota_for(tenant)
        if quota.max_concurrent_jobs:
            tenants = self.store.tenants_of(self.store.active_jobs())
            quotas.check_concurrent_jobs(tenant, quota, sum(1 for t in tenants.values() if t == tenant))
        documents = quotas.counted_documents(tenant, quota, documents)
        job_id = new_job_id()
        stager = PartStager(self.store, job_id, self.ctx.datastore, self.ctx.settings.spill_shard_documents)
        lease_s = self.ctx.settings.staging_lease_seconds
        self.store.mark_staging(job_id, lease_s)
        # While the client streams, the marker says this gateway is alive; should it die mid-stream,
        # the recovery loop deletes what it staged (no job will ever read it).
        staging = Heartbeat(lambda: self.store.mark_staging(job_id, lease_s), lease_s / 3, f"staging-{job_id}")
        try:
            with staging:
                plan = PLANNERS[type(request)].plan(request, Submission(self.ctx, stager, iter(documents)))
            if plan.spec.unit == ProgressUnit.DOCUMENTS:
                quotas.check_documents(tenant, quota, plan.total)  # a corpus by reference is never streamed
        except BaseException:
            stager.discard()
            raise
        spec = plan.spec.model_copy(update={"tenant": tenant})
        snapshot = self.store.create_job(job_id, spec, total=plan.total, parts=plan.parts)
        if plan.audit is not None:
            audit.record(plan.audit[0], job_id, **plan.audit[1])
        self.feeder.feed(job_id)
        log.info(
            "job %s accepted: %s, %d %s in %d parts",
            job_id,
            plan.spec.kind.value,
            plan.total,
            plan.spec.unit.value,
            plan.parts,
        )
        return snapshot

    def get(self, job_id: str) -> JobSnapshot:
        """The caller's job; another tenant's is NOT_FOUND, exactly like a job that never existed (a
        guessed id tells nothing)."""
        snap = self.store.get(validate_job_id(job_id))
        if not tenancy.owns(snap.spec.tenant):
            raise errors.NotFound(f"job {job_id!r} does not exist (or expired)")
        return snap

    def list(self, page_size: int, page_token: str, state: JobState | None) -> tuple[list[JobSnapshot], str]:
        start = paging.page_start(page_token)
        tenant = tenancy.current().tenant
        jobs, next_score = self.store.list(paging.page_size(page_size), start, state, tenant=tenant)
        return jobs, paging.next_token(next_score)

    def cancel(self, job_id: str) -> JobSnapshot:
        self.get(job_id)
        snap = self.store.cancel(job_id)
        audit.record("job.cancel", job_id, state=snap.state.value)
        return snap

    def resume(self, job_id: str) -> JobSnapshot:
        """Queue again the parts of a FAILED or CANCELLED job that are not done; only jobs whose inputs
        outlive their parts qualify (``params.resumable``: a corpus by reference, a collection; staged
        inputs go with their parts)."""
        snap = self.get(job_id)
        if not snap.spec.params.resumable:
            raise errors.FailedPrecondition(
                f"job {job_id} is a {snap.spec.kind.value} job whose inputs do not outlive its chunks; submit it again"
            )
        # Resumed parts go to the queue at once, outside the job's dispatch window (they were all
        # claimed when the job first ran).
        self.feeder.dispatch(job_id, self.store.resume(job_id))
        return self.store.get(job_id)

    def watch(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[JobSnapshot]:
        """The job now, then after each change, until it is finished or the caller goes away (noticed
        within a second, so an abandoned watch gives back its thread and its stream slot)."""
        self.get(job_id)
        with self._stream_slot(f"cannot watch job {job_id}"):
            yield from self.store.watch(job_id, keep_going=keep_going)

    def results(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[tuple[int, int, PartVectors]]:
        """An embed job's vectors in part order, each as soon as its part is done."""
        self.get(job_id)
        with self._stream_slot(f"cannot stream the results of job {job_id}"):
            yield from self._results(job_id, keep_going)

    def _stream_slot(self, what: str) -> AbstractContextManager[None]:
        """One of the gateway's stream slots, within the caller's tenant's share of them."""
        tenant = tenancy.current().tenant
        return self.streams.slot(what, tenant, self.ctx.settings.quota_for(tenant).max_open_streams)

    def _results(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[tuple[int, int, PartVectors]]:
        snap = self.get(job_id)
        if snap.spec.kind != JobKind.EMBED:
            raise errors.FailedPrecondition(
                f"job {job_id} is an {snap.spec.kind.value} job; only embed jobs have results"
            )
        last_event = "0-0"
        for part in range(snap.parts_total):
            while True:
                state = self.store.part_state(job_id, part)
                if state == "done":
                    break
                if state == "failed":
                    snap = self.store.get(job_id)
                    message = next((f.message for f in snap.failed_parts if f.part == part), "")
                    raise errors.FailedPrecondition(f"job {job_id} chunk {part} failed: {message}")
                snap = self.store.get(job_id)
                if snap.state == JobState.CANCELLED:
                    raise errors.FailedPrecondition(f"job {job_id} was cancelled before chunk {part} was done")
                if not keep_going():
                    return
                last_event = self.store.wait_for_event(job_id, last_event, 1.0)
            yield part, snap.part_range(part)[0], read_job_part(self.store, snap.spec, job_id, part)
