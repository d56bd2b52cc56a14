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
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.kinds import PLANNERS, JobRequest
from embedfleet.gateway.kinds.base import PartStager, Submission
from embedfleet.ids import new_job_id
from embedfleet.jobstore import PartVectors
from embedfleet.results import read_job_part

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
        stager = PartStager(self.store, job_id, self.ctx.datastore, self.ctx.settings.spill_shard_documents)
        try:
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
        """Queue parts that an earlier gateway accepted but never handed to the queue."""
        recovered = 0
        for job_id in self.store.active_jobs():
            try:
                pending = self.store.pending_parts(job_id)
                snap = self.store.get(job_id)
            except errors.NotFound:
                continue
            # A job younger than one interval may still be mid-dispatch by the gateway that took it.
            settled = snap.created_at < time.time() - self.ctx.settings.recovery_interval_seconds
            if pending and settled and not snap.state.terminal:
                log.warning("job %s: queueing %d parts that were never dispatched", job_id, len(pending))
                self.dispatch(job_id, pending)
                recovered += len(pending)
        return recovered

    def get(self, job_id: str) -> JobSnapshot:
        return self.store.get(job_id)

    def list(self, page_size: int, page_token: str, state: JobState | None) -> tuple[list[JobSnapshot], str]:
        size = page_size or 50
        if size > 1000:
            raise errors.InvalidArgument("page_size must be at most 1000", "page_size")
        before: float | None = None
        if page_token:
            try:
                before = float(page_token)
            except ValueError:
                raise errors.InvalidArgument("page_token is not one this server issued", "page_token") from None
        jobs, next_score = self.store.list(size, before, state)
        return jobs, (repr(next_score) if next_score is not None else "")

    def cancel(self, job_id: str) -> JobSnapshot:
        return self.store.cancel(job_id)

    def resume(self, job_id: str) -> JobSnapshot:
        """Queue again the parts of a FAILED or CANCELLED job that are not done; only jobs whose corpus
        is by reference qualify (staged inputs go with their parts)."""
        snap = self.store.get(job_id)
        if getattr(snap.spec.params, "corpus", None) is None:
            raise errors.FailedPrecondition(
                f"job {job_id} is a {snap.spec.kind.value} job whose inputs do not outlive its chunks; submit it again"
            )
        self.dispatch(job_id, self.store.resume(job_id))
        return self.store.get(job_id)

    def watch(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[JobSnapshot]:
        """The job now, then after each change, until it is finished or the caller goes away."""
        for snapshot in self.store.watch(job_id):
            yield snapshot
            if not keep_going():
                return

    def results(self, job_id: str, keep_going: Callable[[], bool]) -> Iterator[tuple[int, int, PartVectors]]:
        """An embed job's vectors in part order, each as soon as its part is done."""
        snap = self.store.get(job_id)
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


def run_recovery_loop(jobs: JobsCore, stop: threading.Event) -> None:
    """Dispatch never-queued parts now and then, until ``stop`` is set."""
    while not stop.is_set():
        try:
            jobs.recover_pending()
        except Exception:
            log.warning("recovery pass failed", exc_info=True)
        stop.wait(jobs.ctx.settings.recovery_interval_seconds)
