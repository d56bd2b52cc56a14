"""Jobs: accept (through each kind's planner), queue, follow, cancel, stream results, recover.

State is in the job store (Redis), so any number of gateways can serve the same jobs, and a
restarted one continues where the last stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from embedfleet import errors
from embedfleet.domain import Document, JobKind, JobSnapshot, JobState
from embedfleet.gateway import paging
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.kinds import PLANNERS, JobRequest
from embedfleet.gateway.kinds.base import PartStager, Submission
from embedfleet.heartbeat import Heartbeat
from embedfleet.ids import new_job_id, validate_job_id
from embedfleet.jobstore import PartVectors

log = logging.getLogger(__name__)


class JobsCore:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.store = ctx.store

    def submit(self, request: JobRequest, documents: Iterable[Document] = ()) -> JobSnapshot:
        """Validate and plan the job with its kind's planner, then create and queue it.

        The job exists only once every input is valid and staged: a submission refused part-way
        leaves nothing behind, and an accepted one is durable before this returns.
        """
        job_id = new_job_id()
        stager = PartStager(self.store, job_id)
        lease_s = self.ctx.settings.staging_lease_seconds
        self.store.mark_staging(job_id, lease_s)
        # While the client streams, the marker says this gateway is alive; should it die mid-stream,
        # the recovery loop deletes what it staged (no job will ever read it).
        staging = Heartbeat(lambda: self.store.mark_staging(job_id, lease_s), lease_s / 3, f"staging-{job_id}")
        try:
            with staging:
                plan = PLANNERS[type(request)].plan(request, Submission(self.ctx, stager, iter(documents)))
        except BaseException:
            stager.discard()
            raise
        snapshot = self.store.create_job(job_id, plan.spec, total=plan.total, parts=plan.parts)
        self.dispatch(job_id, list(range(plan.parts)))
        log.info(
            "job %s accepted: %s, %d %s in %d parts",
            job_id,
            plan.spec.kind.value,
            plan.total,
            plan.spec.unit.value,
            plan.parts,
        )
        return snapshot

    def dispatch(self, job_id: str, parts: list[int]) -> None:
        """Hand parts to the queue and record it; on failure they stay "pending" for the recovery loop."""
        try:
            self.ctx.dispatcher.dispatch_parts(job_id, parts)
            self.store.mark_dispatched(job_id, parts)
        except Exception:
            log.exception("job %s: queueing failed; the recovery loop will retry", job_id)

    def recover_pending(self) -> int:
        """Queue parts that an earlier gateway accepted but never handed to the queue, and refresh the
        TTLs of every live job. A job that cannot be read is logged and passed over, never the pass."""
        recovered = 0
        for job_id in self.store.active_jobs():
            try:
                recovered += self._recover_job(job_id)
            except errors.NotFound:
                continue
            except Exception:
                log.warning("job %s: recovery skipped it (its record cannot be read)", job_id, exc_info=True)
        return recovered

    def _recover_job(self, job_id: str) -> int:
        pending = self.store.pending_parts(job_id)
        snap = self.store.get(job_id)
        if snap.state.terminal:
            return 0
        self.store.touch(job_id)
        # A job younger than one interval may still be mid-dispatch by the gateway that took it.
        settled = snap.created_at < time.time() - self.ctx.settings.recovery_interval_seconds
        if not (pending and settled):
            return 0
        log.warning("job %s: queueing %d parts that were never dispatched", job_id, len(pending))
        self.dispatch(job_id, pending)
        return len(pending)

    def recover_orphaned(self) -> int:
        """Queue again, once, the parts whose worker died while running them (their lease lapsed)."""
        recovered = 0
        for job_id in self.store.active_jobs():
            try:
                parts = self.store.reclaim_parts(job_id)
            except Exception:
                log.warning("job %s: could not look for orphaned parts", job_id, exc_info=True)
                continue
            if parts:
                log.warning("job %s: parts %s lost their worker; queueing them again", job_id, parts)
                self.dispatch(job_id, parts)
                recovered += len(parts)
        return recovered

    def get(self, job_id: str) -> JobSnapshot:
        return self.store.get(validate_job_id(job_id))

    def list(self, page_size: int, page_token: str, state: JobState | None) -> tuple[list[JobSnapshot], str]:
        jobs, next_score = self.store.list(paging.page_size(page_size), paging.page_start(page_token), state)
        return jobs, paging.next_token(next_score)

    def cancel(self, job_id: str) -> JobSnapshot:
        return self.store.cancel(validate_job_id(job_id))

    def watch(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[JobSnapshot]:
        """The job now, then after each change, until it is finished or the caller goes away."""
        for snapshot in self.store.watch(validate_job_id(job_id)):
            yield snapshot
            if not keep_going():
                return

    def results(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[tuple[int, int, PartVectors]]:
        """An embed job's vectors in part order, each as soon as its part is done."""
        snap = self.store.get(validate_job_id(job_id))
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
            yield part, snap.part_range(part)[0], self.store.get_part_output(job_id, part)


def run_recovery_loop(jobs: JobsCore, stop: threading.Event) -> None:
    """Until ``stop`` is set: every third of the part lease, queue again the parts whose worker died;
    every recovery interval, dispatch never-queued parts, refresh live jobs' TTLs and delete the
    inputs of abandoned submissions."""
    settings = jobs.ctx.settings
    tick_s = min(settings.part_lease_seconds / 3, settings.recovery_interval_seconds)
    next_full = 0.0
    while not stop.is_set():
        passes: list[Callable[[], int]] = [jobs.recover_orphaned]
        if time.monotonic() >= next_full:
            passes += [jobs.recover_pending, jobs.store.reap_abandoned_staging]
            next_full = time.monotonic() + settings.recovery_interval_seconds
        for recovery_pass in passes:
            try:
                recovery_pass()
            except Exception:
                log.warning("recovery pass %s failed", recovery_pass.__name__, exc_info=True)
        stop.wait(tick_s)
