"""The Ray dispatcher: one thread moves parts from the Redis queue to the actor pool and acts on
every answer (see the package docstring for the design and the failure rules)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from embedfleet.errors import Unavailable
from embedfleet.gateway.queue.ray.connect import connect_ray
from embedfleet.gateway.queue.ray.pool import ActorPool, Slot, failure_reason, init_failed
from embedfleet.gateway.queue.ray.queue import LEASE_REFRESH_S, LEASE_TTL_S, RECLAIM_INTERVAL_S, PartQueue, TakenPart
from embedfleet.jobstore import JobStore
from embedfleet.settings import CommonSettings
from embedfleet.tasks import RETRY_OUTCOME, retry_delay

log = logging.getLogger(__name__)

BUSY_POLL_S = 0.1  # ray.wait timeout while calls are out: bounds the delay to pick up new parts
IDLE_POLL_S = 0.5  # nothing out: how often to look at Redis for parts queued by other gateways
STEP_RETRY_S = 1.0  # a step that failed (Redis or Ray unreachable) is tried again after this


class _Step(Enum):
    RUN = "run"  # send the part to an actor
    FAIL = "fail"  # record it as failed (it used up its attempts)
    FINISH = "finish"  # take it off the in-flight list and give back its place


@dataclass(eq=False)
class _Part:
    """A part between ``take`` and ``FINISH``: exactly one of a call out, a delayed step, or the step
    being taken holds it, so it finishes once and gives back its place in ``capacity`` once."""

    taken: TakenPart
    attempt: int = 1
    fail_tries: int = 0
    message: str = ""  # why it is being failed, once it gave up


@dataclass
class _Call:
    kind: Literal["part", "fail", "request"]
    slot: int
    generation: int
    part: _Part | None = None
    request_id: str = ""
    tries: int = 1


@dataclass
class _Stats:
    submitted: int = 0
    dropped: int = 0
    retries: int = 0  # parts run again after a transient error (the runner's RetryPart)
    resubmitted: int = 0  # parts sent to another actor because theirs died
    failed: int = 0
    max_in_flight: int = 0
    reclaimed: int = 0


@dataclass(order=True)
class _Delayed:
    due: float
    seq: int
    part: _Part = field(compare=False)
    step: _Step = field(compare=False)


class RayDispatcher:
    """The ``Dispatcher`` for ``backend = "ray"``: a Redis-backed queue feeding a pool of actors."""

    def __init__(self, settings: CommonSettings, store: JobStore) -> None:
        self.store = store
        self.queue = PartQueue(store)
        self.capacity = settings.ray_pool_size + settings.ray_max_queued_chunks

        self._lock = threading.RLock()
        self._calls: dict[Any, _Call] = {}
        self._delayed: list[_Delayed] = []
        self._seq = itertools.count()
        self._held = 0  # parts taken from the pending list and not yet over: the backpressure count
        self._stats = _Stats()
        self._stop = threading.Event()
        self._wake = threading.Event()

        self._owns_ray = connect_ray(settings)
        import ray

        self._ray = ray
        try:
            self.pool = ActorPool(ray, settings, self.queue.owner)
            self.max_attempts = self.pool.worker_settings.max_chunk_attempts
            self.queue.refresh_lease()
            self._stats.reclaimed += self.queue.reclaim_orphans()
            self.pool.start()
        except BaseException:
            if self._owns_ray:
                ray.shutdown()
            raise
        self._thread = threading.Thread(target=self._run, name="embedfleet-ray-dispatch", daemon=True)
        self._thread.start()
        log.info(
            "Ray dispatcher %s: %d actor(s) (%.2g CPU, %.2g GPU each), at most %d parts in flight",
            self.queue.owner,
            settings.ray_pool_size,
            settings.ray_num_cpus_per_actor,
            settings.ray_num_gpus_per_actor,
            self.capacity,
        )

    # -- Dispatcher protocol ------------------------------------------------------------------
    def dispatch_parts(self, job_id: str, parts: Sequence[int]) -> None:
        """Durable once this returns: the parts are in Redis, whatever happens to this process."""
        self.queue.push(job_id, parts)
        self._wake.set()

    def dispatch_request(self, request_id: str) -> None:
        """Straight to an actor's interactive thread (round robin), never behind queued parts."""
        with self._lock:
            slot = self.pool.pick_for_request()
            if slot is None:
                raise Unavailable("no Ray worker actor is running (they keep failing to start; see the gateway log)")
            self._send_request(slot, request_id, tries=1)
        self._wake.set()

    def close(self) -> None:
        """Stop dispatching, kill the actors and hand this dispatcher's parts back to the queue."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            self._calls.clear()
        self.pool.close()
        try:
            moved = self.queue.return_all()
            if moved:
                log.info("Ray dispatcher %s: %d unfinished part(s) returned to the queue", self.queue.owner, moved)
        except Exception:
            log.warning(
                "could not return in-flight parts to the queue; another gateway will reclaim them in %.0f s",
                LEASE_TTL_S,
                exc_info=True,
            )
        if self._owns_ray:
            self._ray.shutdown()

    # -- introspection (tests, benchmarks, operators) -----------------------------------------
    def in_flight(self) -> int:
        """Parts out of the pending list: running, queued on an actor, or waiting to be retried."""
        return self._held

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "in_flight": self._held,
                "max_in_flight": self._stats.max_in_flight,
                "capacity": self.capacity,
                "pending": self.queue.pending(),
                "submitted": self._stats.submitted,
                "dropped": self._stats.dropped,
                "retries": self._stats.retries,
                "resubmitted": self._stats.resubmitted,
                "actor_deaths": self.pool.deaths,
                "failed": self._stats.failed,
                "reclaimed": self._stats.reclaimed,
                "actors_ready": len(self.pool.pids()),
            }

    def actor_pids(self) -> list[int]:
        """Process ids of the actors that are up, one per pool slot."""
        return self.pool.pids()

    # -- the dispatcher thread ----------------------------------------------------------------
    def _run(self) -> None:
        next_lease = time.monotonic() + LEASE_REFRESH_S
        next_reclaim = time.monotonic() + RECLAIM_INTERVAL_S
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_lease:
                    self.queue.refresh_lease()
                    next_lease = now + LEASE_REFRESH_S
                if now >= next_reclaim:
                    moved = self.queue.reclaim_orphans()
                    self._stats.reclaimed += moved
                    next_reclaim = now + RECLAIM_INTERVAL_S
                self.pool.respawn_due()
                self._advance_due()
                self._fill()
                self._collect()
            except Exception:
                log.exception("Ray dispatcher %s: dispatch pass failed; retrying in 1 s", self.queue.owner)
                self._stop.wait(1.0)

    def _fill(self) -> None:
        """Move parts from Redis to actors while fewer than ``capacity`` are out."""
        while not self._stop.is_set() and self._held < self.capacity and self.pool.has_actor():
            taken = self.queue.take()
            if taken is None:
                return
            with self._lock:
                self._held += 1
                self._stats.max_in_flight = max(self._stats.max_in_flight, self._held)
            self._advance(_Part(taken), _Step.RUN)

    def _collect(self) -> None:
        """Wait briefly for answers and act on every one that is in."""
        with self._lock:
            refs = [*self.pool.probes(), *self._calls]
        if not refs:
            self._wake.wait(IDLE_POLL_S)
            self._wake.clear()
            return
        ready, rest = self._ray.wait(refs, num_returns=1, timeout=BUSY_POLL_S)
        if ready and rest:
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for ref in ready:
            self._handle(ref)

    # -- a part's steps -------------------------------------------------------------------------
    def _advance(self, part: _Part, step: _Step) -> None:
        """Take the part's next step. Never raises: when Redis or Ray fails under it, the part stays
        in the in-flight list, keeps its place, and the same step is tried again shortly."""
        try:
            if step is _Step.RUN:
                self._run_part(part)
            elif step is _Step.FAIL:
                self._fail_part(part)
            else:
                self._finish(part)
        except Exception:
            task = part.taken.task
            log.warning(
                "job %s part %d: the %s step failed; trying again in %.0f s",
                task.job_id,
                task.part,
                step.value,
                STEP_RETRY_S,
                exc_info=True,
            )
            self._delay(part, step, STEP_RETRY_S)

    def _dropped(self, part: _Part) -> bool:
        """Drop a part of a cancelled, finished or expired job here rather than send it to an actor to skip."""
        if self.store.job_is_active(part.taken.task.job_id):
            return False
        self._stats.dropped += 1
        self._advance(part, _Step.FINISH)
        return True

    def _run_part(self, part: _Part) -> None:
        task = part.taken.task
        if self._dropped(part):
            return
        slot = self.pool.pick()
        if slot is None:
            self._delay(part, _Step.RUN, self.pool.next_respawn_in())
            return
        self._track(self.pool.send_part(slot, task), _Call("part", slot.index, slot.generation, part))
        self._stats.submitted += 1

    def _fail_part(self, part: _Part) -> None:
        """The runner's fail path, on an actor; or here, through the job store, when no actor can be
        built or the actors could not record it in ``max_attempts`` tries: a job must end, and
        recording a failure needs only the store, which the gateway has."""
        task = part.taken.task
        if self._dropped(part):
            return
        cannot_start = self.pool.startup_failure()
        if cannot_start is not None or part.fail_tries >= self.max_attempts:
            message = part.message if cannot_start is None else f"the Ray workers could not start: {cannot_start}"
            self.store.fail_part(task.job_id, task.part, message)
            self._stats.failed += 1
            self._advance(part, _Step.FINISH)
            return
        slot = self.pool.pick()
        if slot is None:
            self._delay(part, _Step.FAIL, self.pool.next_respawn_in())
            return
        self._track(self.pool.send_fail(slot, task, part.message), _Call("fail", slot.index, slot.generation, part))

    def _finish(self, part: _Part) -> None:
        """The part is over (outcome recorded, or dropped): off the in-flight list, place given back."""
        self.queue.done(part.taken)
        with self._lock:
            self._held -= 1

    def _give_up(self, part: _Part, message: str) -> None:
        task = part.taken.task
        log.error("job %s part %d: %s", task.job_id, task.part, message)
        part.message = message
        self._advance(part, _Step.FAIL)

    def _delay(self, part: _Part, step: _Step, seconds: float) -> None:
        with self._lock:
            heapq.heappush(self._delayed, _Delayed(time.monotonic() + seconds, next(self._seq), part, step))

    def _advance_due(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._delayed or self._delayed[0].due > now:
                    return
                item = heapq.heappop(self._delayed)
            self._advance(item.part, item.step)

    # -- answers --------------------------------------------------------------------------------
    def _track(self, ref: Any, call: _Call) -> None:
        with self._lock:
            self._calls[ref] = call

    def _handle(self, ref: Any) -> None:
        if self.pool.settle_probe(ref):
            return
        with self._lock:
            call = self._calls.pop(ref)
        if call.part is None:
            self._on_request_answer(call, ref)
            return
        self.pool.answered(call.slot, call.generation)
        try:
            self._on_part_answer(call, call.part, ref)
        except Exception:
            # Redis unreachable while deciding: keep the part (it is still in the in-flight list).
            log.warning("Ray dispatcher %s: acting on a %s answer failed", self.queue.owner, call.kind, exc_info=True)
            self._delay(call.part, _Step.RUN if call.kind == "part" else _Step.FAIL, STEP_RETRY_S)

    def _on_part_answer(self, call: _Call, part: _Part, ref: Any) -> None:
        try:
            value = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            if isinstance(exc, self._ray.exceptions.RayActorError):
                self.pool.replace(call.slot, call.generation, exc)
            if call.kind == "fail":
                self._on_fail_error(part, exc)
            else:
                self._on_part_error(part, exc)
            return
        if call.kind == "fail":
            self._stats.failed += 1
            self._advance(part, _Step.FINISH)
        elif value == RETRY_OUTCOME:
            part.attempt += 1
            self._stats.retries += 1
            self._delay(part, _Step.RUN, retry_delay(part.attempt - 1))
        else:
            self._advance(part, _Step.FINISH)

    def _on_part_error(self, part: _Part, exc: BaseException) -> None:
        """A part's call failed. A dead actor's parts go at once to another actor, and the attempt
        counts only if the part had started or the actor could not be built; a call that raised is
        retried after the backoff, and always counts."""
        task = part.taken.task
        reason = failure_reason(exc)
        lost = isinstance(exc, self._ray.exceptions.RayActorError)
        if not lost or init_failed(exc) or self.store.part_state(task.job_id, task.part) == "running":
            part.attempt += 1
        if part.attempt > self.max_attempts:
            cause = "the last Ray actor died" if lost else "last error"
            self._give_up(part, f"gave up after {self.max_attempts} attempts; {cause}: {reason}")
        elif lost:
            log.warning("job %s part %d: its Ray actor died (%s); resubmitting", task.job_id, task.part, reason)
            self._stats.resubmitted += 1
            self._advance(part, _Step.RUN)
        else:
            log.warning("job %s part %d: actor call failed (%s); retrying", task.job_id, task.part, reason)
            self._stats.retries += 1
            self._delay(part, _Step.RUN, retry_delay(part.attempt - 1))

    def _on_fail_error(self, part: _Part, exc: BaseException) -> None:
        """The fail path did not run: try again (at once if only its actor died), counted, so that
        past ``max_attempts`` tries the failure is recorded here instead."""
        task = part.taken.task
        log.warning("job %s part %d: recording its failure failed: %s", task.job_id, task.part, failure_reason(exc))
        part.fail_tries += 1
        if isinstance(exc, self._ray.exceptions.RayActorError):
            self._advance(part, _Step.FAIL)
        else:
            self._delay(part, _Step.FAIL, retry_delay(part.fail_tries))

    def _on_request_answer(self, call: _Call, ref: Any) -> None:
        try:
            self._ray.get(ref)
        except self._ray.exceptions.RayActorError as exc:
            self.pool.replace(call.slot, call.generation, exc)
            slot = self.pool.pick_for_request()
            if call.tries < self.max_attempts and slot is not None:
                self._send_request(slot, call.request_id, call.tries + 1)
        except self._ray.exceptions.RayError as exc:
            log.error("embed request %s: the Ray actor call failed: %s", call.request_id, failure_reason(exc))

    def _send_request(self, slot: Slot, request_id: str, tries: int) -> None:
        ref = self.pool.send_request(slot, request_id)
        self._track(ref, _Call("request", slot.index, slot.generation, request_id=request_id, tries=tries))
