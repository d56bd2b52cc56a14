"""The deployment now, from the job store: live workers (their models, device and metrics address),
the queue depth and the active jobs. What ``embedfleet status`` and ``GetStatus`` show."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet.domain import JobSnapshot
from embedfleet.errors import NotFound
from embedfleet.gateway import tenancy
from embedfleet.gateway.context import GatewayContext
from embedfleet.jobstore import Activity, WorkerBeat

# Active jobs listed in full; the count covers them all.
MAX_LISTED_JOBS = 100


@dataclass(frozen=True)
class DeploymentStatus:
    workers: list[WorkerBeat]
    activity: Activity
    jobs: list[JobSnapshot]  # active jobs, newest first, at most MAX_LISTED_JOBS
    active_jobs: int


class StatusCore:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def status(self) -> DeploymentStatus:
        store = self.ctx.store
        activity = store.activity()
        jobs: list[JobSnapshot] = []
        for job_id in store.active_jobs():
            try:
                jobs.append(store.get(job_id))
            except NotFound:
                continue  # expired between the two reads
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        active = sum(activity.jobs.values())
        if tenancy.current().tenant:  # a tenant sees its own jobs only (workers and queue depth are shared)
            jobs = [j for j in jobs if tenancy.owns(j.spec.tenant)]
            active = len(jobs)
        workers = sorted(store.live_workers(), key=lambda w: w.get("worker_id", ""))
        return DeploymentStatus(workers=workers, activity=activity, jobs=jobs[:MAX_LISTED_JOBS], active_jobs=active)
