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


@dataclass
class _Part:
    taken: TakenPart
    attempt: int = 1
    fail_tries: int = 0


@dataclass
class _Call:
    kind: Literal["part", "fail", "request"]
    slot: int
    generation: int
    part: _Part | None = None
    request_id: str = ""
    message: str = ""
    tries: int = 1


@dataclass
class _Stats:
    submitted: int = 0
    dropped: int = 0
    retries: int = 0  # parts run again after a transient error (the runner's RetryChunk)
    resubmitted: int = 0  # parts sent to another actor because theirs died
    failed: int = 0
    max_in_flight: int = 0
    reclaimed: int = 0


@dataclass(order=True)
class _Delayed:
    due: float
    seq: int
    part: _Part = field(compare=False)
    message: str = field(compare=False, default="")  # non-empty: submit the fail path, not the part


class RayDispatcher:
    """The ``Dispatcher`` for ``backend = "ray"``: a Redis-backed queue feeding a pool of actors."""

    def __init__(self, settings: CommonSettings, store: JobStore) -> None:
        self.settings = settings
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
                self._submit_delayed()
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
            self._held += 1
            self._stats.max_in_flight = max(self._stats.max_in_flight, self._held)
            self._submit_part(_Part(taken))

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

    def _handle(self, ref: Any) -> None:
        if self.pool.settle_probe(ref):
            return
        with self._lock:
            call = self._calls.pop(ref)
        if call.kind != "request":
            self.pool.answered(call.slot, call.generation)
        try:
            try:
                value = self._ray.get(ref)
            except self._ray.exceptions.RayActorError as exc:
                self._on_actor_lost(call, exc)
            except self._ray.exceptions.RayError as exc:
                self._on_call_error(call, exc)
            else:
                self._on_result(call, value)
        except Exception:
            # Redis unreachable while deciding: keep the part (it is still in the in-flight list).
            log.exception(
                "Ray dispatcher %s: handling a %s answer failed; trying again shortly", self.queue.owner, call.kind
            )
            if call.part is not None:
                self._delay(call.part, 1.0, call.message if call.kind == "fail" else "")

    def _on_result(self, call: _Call, value: Any) -> None:
        if call.kind == "part":
            assert call.part is not None
            if value == RETRY_OUTCOME:
                call.part.attempt += 1
                self._stats.retries += 1
                self._delay(call.part, retry_delay(call.part.attempt - 1))
            else:
                self._finish(call.part)
        elif call.kind == "fail":
            assert call.part is not None
            self._stats.failed += 1
            self._finish(call.part)

    def _on_actor_lost(self, call: _Call, exc: Exception) -> None:
        self.pool.replace(call.slot, call.generation, exc)
        reason = failure_reason(exc)
        if call.kind == "request":
            if call.tries < self.max_attempts:
                with self._lock:
                    slot = self.pool.pick()
                    if slot is not None:
                        self._send_request(slot, call.request_id, call.tries + 1)
        elif call.kind == "fail":
            assert call.part is not None
            self._submit_fail(call.part, call.message)
        elif call.kind == "part":
            part = call.part
            assert part is not None
            task = part.taken.task
            if init_failed(exc) or self.store.chunk_state(task.job_id, task.part) == "running":
                part.attempt += 1
            log.warning(
                "job %s part %d: its Ray actor died (%s); resubmitting as attempt %d",
                task.job_id,
                task.part,
                reason,
                part.attempt,
            )
            if part.attempt > self.max_attempts:
                self._submit_fail(
                    part, f"gave up after {self.max_attempts} attempts; the last Ray actor died: {reason}"
                )
            else:
                self._stats.resubmitted += 1
                self._submit_part(part)

    def _on_call_error(self, call: _Call, exc: Exception) -> None:
        reason = failure_reason(exc)
        if call.kind == "request":
            log.error("embed request %s: the Ray actor call failed: %s", call.request_id, reason)
        elif call.kind == "part":
            part = call.part
            assert part is not None
            task = part.taken.task
            log.warning(
                "job %s part %d attempt %d: actor call failed: %s", task.job_id, task.part, part.attempt, reason
            )
            part.attempt += 1
            if part.attempt > self.max_attempts:
                self._submit_fail(part, f"gave up after {self.max_attempts} attempts; last error: {reason}")
            else:
                self._stats.retries += 1
                self._delay(part, retry_delay(part.attempt - 1))
        elif call.kind == "fail":
            part = call.part
            assert part is not None
            part.fail_tries += 1
            if part.fail_tries >= self.max_attempts:
                task = part.taken.task
                log.error("job %s part %d: could not record its failure: %s", task.job_id, task.part, reason)
                self._finish(part)
            else:
                self._delay(part, retry_delay(part.fail_tries), call.message)

    # -- submitting ---------------------------------------------------------------------------
    def _submit_part(self, part: _Part) -> None:
        if not self.store.job_is_active(part.taken.task.job_id):
            # Cancelled, finished or expired: drop it here rather than send it to an actor to skip.
            self._stats.dropped += 1
            self._finish(part)
            return
        with self._lock:
            slot = self.pool.pick()
            if slot is None:
                self._delay(part, self.pool.next_respawn_in())
                return
            ref = self.pool.send_part(slot, part.taken.task, part.attempt)
            self._calls[ref] = _Call("part", slot.index, slot.generation, part=part)
            self._stats.submitted += 1

    def _submit_fail(self, part: _Part, message: str) -> None:
        """The runner's fail path, on an actor (it needs no model, only the job store)."""
        task = part.taken.task
        if not self.store.job_is_active(task.job_id):
            self._stats.dropped += 1
            self._finish(part)
            return
        log.error("job %s part %d: %s", task.job_id, task.part, message)
        with self._lock:
            slot = self.pool.pick()
            if slot is None:
                self._delay(part, self.pool.next_respawn_in(), message)
                return
            ref = self.pool.send_fail(slot, task, message)
            self._calls[ref] = _Call("fail", slot.index, slot.generation, part=part, message=message)

    def _send_request(self, slot: Slot, request_id: str, tries: int) -> None:
        ref = self.pool.send_request(slot, request_id)
        self._calls[ref] = _Call("request", slot.index, slot.generation, request_id=request_id, tries=tries)

    def _delay(self, part: _Part, seconds: float, fail_message: str = "") -> None:
        with self._lock:
            heapq.heappush(self._delayed, _Delayed(time.monotonic() + seconds, next(self._seq), part, fail_message))

    def _submit_delayed(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._delayed or self._delayed[0].due > now:
                    return
                item = heapq.heappop(self._delayed)
            if item.message:
                self._submit_fail(item.part, item.message)
            else:
                self._submit_part(item.part)

    def _finish(self, part: _Part) -> None:
        """The part is over (outcome recorded, or dropped): remove it from the in-flight list."""
        self.queue.done(part.taken)
        self._held -= 1
