"""Feeding jobs' parts to the queue fairly, and recovering parts that never reached it.

Parts used to be queued all at once at submission, so the queue was strictly first come, first
served: two 1-document jobs waited 348 s behind a 25,000-document one. Now each job has at most
``dispatch_window`` parts queued or running at a time (``JobStore.claim_parts``, atomic, so any
number of gateways can feed the same jobs), and a loop tops every active job up as its parts
finish. A job submitted behind a large one waits for at most one window of the large job's parts,
whatever its size; on both backends, since the window is applied before any queue sees a part.

Exactly once is unchanged: a claimed part is marked dispatched once the queue holds it
(``mark_dispatched``), workers count each part once (``start_part``/``finish_part``), and a part
claimed but never marked (a gateway died between the two, or the broker refused it) is queued again
by the recovery pass once two passes an interval apart have seen it so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from embedfleet.gateway.context import GatewayContext

log = logging.getLogger(__name__)


class PartFeeder:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self._unsent: dict[str, set[int]] = {}  # claimed, never marked dispatched, at the last pass
        self._turn = 0  # which tenant the next pass tops up first

    def feed(self, job_id: str) -> int:
        """Queue the job's next parts, up to its window and its tenant's share; how many were claimed.
        Never raises: a job that cannot be fed now (Redis unreachable) is fed by a later pass."""
        try:
            tenant = self.store.tenants_of([job_id]).get(job_id, "")
            same_tenant = [j for j, t in self.store.tenants_of(self.store.active_jobs()).items() if t == tenant]
            return self._feed_tenant(tenant, sorted({*same_tenant, job_id}))
        except Exception:
            log.warning("job %s: claiming its next parts failed; trying again next pass", job_id, exc_info=True)
            return 0

    def feed_all(self) -> int:
        """Top up every active job, tenant by tenant, starting with a different tenant each pass."""
        by_tenant: dict[str, list[str]] = {}
        for job_id, tenant in self.store.tenants_of(self.store.active_jobs()).items():
            by_tenant.setdefault(tenant, []).append(job_id)
        tenants = sorted(by_tenant)
        self._turn += 1
        first = self._turn % len(tenants) if tenants else 0
        return sum(self._feed_tenant(t, by_tenant[t]) for t in tenants[first:] + tenants[:first])

    def _feed_tenant(self, tenant: str, job_ids: list[str]) -> int:
        """Claim and queue parts of one tenant's jobs: each job up to its window, all of them together
        up to the tenant's ``max_queued_parts``, shared one part at a time round-robin (the job with
        fewest parts out first), so a tenant's many jobs hold no more of the queue than one would."""
        window = self.ctx.settings.dispatch_window
        cap = self.ctx.settings.quota_for(tenant).max_queued_parts
        counts = self.store.dispatch_counts(job_ids)
        budget = cap - sum(out for out, _ in counts.values()) if cap else sum(left for _, left in counts.values())
        grant = dict.fromkeys(counts, 0)
        order = sorted(counts, key=lambda j: counts[j][0])
        while budget > 0:
            granted = 0
            for job_id in order:
                out, left = counts[job_id]
                if budget > 0 and grant[job_id] < left and (window == 0 or out + grant[job_id] < window):
                    grant[job_id] += 1
                    budget -= 1
                    granted += 1
            if not granted:
                break
        claimed = 0
        for job_id, extra in grant.items():
            if extra:
                parts = self.store.claim_parts(job_id, counts[job_id][0] + extra)
                if parts:
                    self.dispatch(job_id, list(parts))
                claimed += len(parts)
        return claimed

    def dispatch(self, job_id: str, parts: list[int]) -> None:
        """Hand parts to the queue and record it; on failure they stay "pending" for the recovery pass."""
        try:
            self.ctx.dispatcher.dispatch_parts(job_id, parts)
            self.store.mark_dispatched(job_id, parts)
        except Exception:
            log.exception("job %s: queueing failed; the recovery loop will retry", job_id)

    def recover_pending(self) -> int:
        """Queue again the parts claimed but never dispatched at this pass and the previous one, and
        refresh the TTLs of every live job. A job that cannot be read is logged and passed over."""
        unsent: dict[str, set[int]] = {}
        recovered = 0
        for job_id in self.store.active_jobs():
            try:
                now_unsent = set(self.store.pending_parts(job_id))
                self.store.touch(job_id)
            except Exception:
                log.warning("job %s: cannot read its parts; skipped this pass", job_id, exc_info=True)
                continue
            lost = sorted(now_unsent & self._unsent.get(job_id, set()))
            unsent[job_id] = now_unsent.difference(lost)
            if lost:
                log.warning("job %s: queueing %d parts that were never dispatched", job_id, len(lost))
                self.dispatch(job_id, lost)
                recovered += len(lost)
        self._unsent = unsent
        return recovered

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


def run_dispatch_loop(feeder: PartFeeder, stop: threading.Event) -> None:
    """Until ``stop`` is set: feed active jobs every ``dispatch_interval_seconds``; every third of the
    part lease, queue again the parts whose worker died; every ``recovery_interval_seconds``, queue
    claimed parts that never reached the queue, refresh live jobs' TTLs and delete the inputs of
    abandoned submissions. One failing pass never stops the others."""
    settings = feeder.ctx.settings
    lease_tick = settings.part_lease_seconds / 3
    next_orphans = time.monotonic() + lease_tick
    next_recovery = time.monotonic() + settings.recovery_interval_seconds
    while not stop.is_set():
        passes: list[Callable[[], int]] = [feeder.feed_all]
        now = time.monotonic()
        if now >= next_orphans:
            passes.append(feeder.recover_orphaned)
            next_orphans = now + lease_tick
        if now >= next_recovery:
            passes += [feeder.recover_pending, feeder.store.reap_abandoned_staging]
            next_recovery = now + settings.recovery_interval_seconds
        for dispatch_pass in passes:
            try:
                dispatch_pass()
            except Exception:
                log.warning("dispatch pass %s failed", dispatch_pass.__name__, exc_info=True)
        stop.wait(settings.dispatch_interval_seconds)
