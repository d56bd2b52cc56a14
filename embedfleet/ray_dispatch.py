"""Ray backend: the gateway hands chunks to a pool of Ray actors (``embedfleet.worker.ray_actor``).

Ray has no durable broker, so the queue is in Redis, like every other piece of job state:

* ``dispatch_chunks`` appends ``[job_id, chunk]`` to ``<prefix>ray:pending`` and only then marks the
  chunks dispatched, exactly as the Celery backend marks them once the broker holds them; the
  gateway's recovery loop keeps its meaning (``pending`` = never reached the list).
* One dispatcher thread moves items with ``LMOVE`` into this dispatcher's own
  ``<prefix>ray:inflight:<id>`` list and calls an actor. An item leaves that list only when its chunk
  has an outcome (done, failed, skipped) or is dropped because the job was cancelled. The list is
  guarded by a lease key the thread refreshes; when a gateway dies, its lease expires and any other
  (or the restarted) gateway moves the orphaned items back to the head of the pending list. A chunk
  that ran half-way is then started again: the runner's ``start_chunk`` sees ``running`` (RETRY)
  and its Milvus upserts overwrite, so nothing is lost and nothing is written twice.
* Backpressure: at most ``ray_pool_size + ray_max_queued_chunks`` items are out of the pending list
  at any time (running, queued on an actor, or waiting for a retry). The rest stay in Redis, the
  job stays QUEUED with its progress visible, and the gateway's memory does not grow with the job.

Failures, decided here because only the dispatcher sees them (the job rules stay in the runner):

* The runner returns ``retry`` (``RetryChunk``, a transient error): resubmitted after the same
  backoff as Celery's, ``min(2**(attempt-1), 30)`` s, with ``attempt + 1``.
* The actor died (``RayActorError``: process killed, OOM, node lost): the actor is replaced by a
  fresh one and the chunk goes at once to the least-loaded live actor. The attempt counts only if
  the chunk had started (its state is ``running``) or the actor could not even be built; chunks
  that were merely queued behind the dead one keep their attempt.
* The actor method raised (``RayTaskError``, e.g. Redis unreachable before the runner's own
  error handling): retried with backoff like ``retry``.
* Past ``max_chunk_attempts`` the chunk is handed to an actor's ``fail_chunk`` (the runner's fail
  path), so the job ends FAILED with the chunk in ``failed_chunks`` instead of hanging.

Ray's own ``max_restarts``/``max_task_retries`` are off: Ray would re-run tasks without telling the
runner the attempt, and could not apply the attempt limit or report the failure on the job.

Interactive requests skip the queue: each actor has two concurrency groups of one thread each,
``bulk`` (chunks, in order) and ``interactive``. An Embed is sent straight to an actor's interactive
thread, so it never waits behind queued chunks, only for the forward pass in progress (the
encoder's lock serialises passes, which on a saturated device is what one wants anyway). This was
chosen over a dedicated interactive actor, which would hold a second copy of every model and
compete with the bulk actors for the same cores.

Nothing here imports torch: the actor class is plain Python imported by reference, and its heavy
imports happen inside the actor process.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from embedfleet.domain import JobState
from embedfleet.errors import Unavailable
from embedfleet.jobstore import JobStore
from embedfleet.settings import CommonSettings
from embedfleet.worker.ray_actor import RETRY, RayWorker
from embedfleet.worker.settings import WorkerSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

log = logging.getLogger(__name__)

# With this set to 0 before Ray is imported, every port a local Ray instance opens binds to
# 127.0.0.1; without it Ray picks the machine's external address.
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
BULK_GROUP = "bulk"
INTERACTIVE_GROUP = "interactive"

LEASE_TTL_S = 15.0  # a dispatcher silent for this long is presumed dead; its chunks are reclaimed
LEASE_REFRESH_S = 3.0
RECLAIM_INTERVAL_S = 5.0
BUSY_POLL_S = 0.1  # ray.wait timeout while calls are out: bounds the delay to pick up new chunks
IDLE_POLL_S = 0.5  # nothing out: how often to look at Redis for chunks queued by other gateways
MAX_BACKOFF_S = 30.0
MAX_RESPAWN_BACKOFF_S = 60.0

_ACTIVE_STATES = (JobState.QUEUED.value.encode(), JobState.RUNNING.value.encode())

# Move every item of a dead dispatcher's in-flight list to the head of the pending list, unless
# its lease is still alive. Atomic, so two gateways reclaiming at once cannot both take an item.
_RECLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
return n
"""


def connect_ray(settings: CommonSettings) -> bool:
    """Join the configured Ray cluster, or start a local one on 127.0.0.1; True if this started Ray.

    ``ray_address`` "" starts a fresh local instance (``address="local"``: ``None`` would silently
    join any cluster found in /tmp/ray or ``RAY_ADDRESS``), with every core and no dashboard.
    "auto" or "ray://host:port" joins an existing cluster. A process that already called
    ``ray.init`` keeps its connection, and remains the one to shut it down.
    """
    address = settings.ray_address
    if not address:
        if "ray" in sys.modules and os.environ.get(RAY_LOOPBACK_ENV) != "0":
            raise RuntimeError(
                f"ray was imported before {RAY_LOOPBACK_ENV}=0 was set, so a local Ray would listen on the "
                f"machine's external address; set {RAY_LOOPBACK_ENV}=0 in the environment first"
            )
        os.environ[RAY_LOOPBACK_ENV] = "0"
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, namespace=settings.ray_namespace)
    else:
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            namespace=settings.ray_namespace,
        )
    return True


def worker_settings_for(settings: CommonSettings) -> WorkerSettings:
    """The actors' settings: what the gateway was given for the shared keys, and the worker keys
    (device, batch size, attempts, heartbeat) from this process's environment or config file, since
    with Ray the gateway is the one that starts the workers."""
    shared = {name: getattr(settings, name) for name in CommonSettings.model_fields}
    return WorkerSettings(**shared)


@dataclass
class _Slot:
    """One place in the pool; its actor is replaced (generation + 1) when it dies."""

    index: int
    actor: Any = None
    generation: int = 0
    ready: bool = False
    pid: int = 0
    load: int = 0  # chunk calls sent to this generation and not yet answered
    init_failures: int = 0
    respawn_at: float = 0.0


@dataclass
class _Chunk:
    job_id: str
    chunk: int
    raw: bytes  # the item as it sits in the in-flight list, to remove it when the chunk is over
    attempt: int = 1
    fail_tries: int = 0


@dataclass
class _Call:
    kind: Literal["ready", "chunk", "fail", "request"]
    slot: int
    generation: int
    chunk: _Chunk | None = None
    request_id: str = ""
    message: str = ""
    tries: int = 1


@dataclass
class _Stats:
    submitted: int = 0
    dropped: int = 0
    retries: int = 0  # chunks run again after a transient error (the runner's RetryChunk)
    resubmitted: int = 0  # chunks sent to another actor because theirs died
    actor_deaths: int = 0
    failed: int = 0
    max_in_flight: int = 0
    reclaimed: int = 0


@dataclass(order=True)
class _Delayed:
    due: float
    seq: int
    chunk: _Chunk = field(compare=False)
    message: str = field(compare=False, default="")  # non-empty: submit the fail path, not the chunk


class RayDispatcher:
    """The ``Dispatcher`` for ``backend = "ray"``: a Redis-backed queue feeding a pool of actors."""

    def __init__(self, settings: CommonSettings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.worker_settings = worker_settings_for(settings)
        self.max_attempts = self.worker_settings.max_chunk_attempts
        self.capacity = settings.ray_pool_size + settings.ray_max_queued_chunks
        self.id = uuid.uuid4().hex[:12]
        self.pending_key = f"{settings.key_prefix}ray:pending"
        self._inflight_prefix = f"{settings.key_prefix}ray:inflight:"
        self._lease_prefix = f"{settings.key_prefix}ray:lease:"
        self.inflight_key = self._inflight_prefix + self.id
        self._lease_key = self._lease_prefix + self.id
        self._reclaim_script = store.r.register_script(_RECLAIM)

        self._lock = threading.RLock()
        self._calls: dict[Any, _Call] = {}
        self._delayed: list[_Delayed] = []
        self._seq = itertools.count()
        self._round_robin = itertools.count()
        self._held = 0  # items taken from the pending list and not yet over: the backpressure count
        self._stats = _Stats()
        self._stop = threading.Event()
        self._wake = threading.Event()

        self._owns_ray = connect_ray(settings)
        import ray

        self._ray = ray
        self._actor_cls = ray.remote(
            concurrency_groups={BULK_GROUP: 1, INTERACTIVE_GROUP: 1},
            num_cpus=settings.ray_num_cpus_per_actor,
            num_gpus=settings.ray_num_gpus_per_actor,
            max_restarts=0,
            max_task_retries=0,
        )(RayWorker)
        try:
            self._warn_if_pool_does_not_fit()
            self._refresh_lease()
            self._reclaim_orphans()
            self._slots = [_Slot(index=i) for i in range(settings.ray_pool_size)]
            for slot in self._slots:
                self._spawn(slot)
        except BaseException:
            if self._owns_ray:
                ray.shutdown()
            raise
        self._thread = threading.Thread(target=self._run, name="embedfleet-ray-dispatch", daemon=True)
        self._thread.start()
        log.info(
            "Ray dispatcher %s: %d actor(s) (%.2g CPU, %.2g GPU each), at most %d chunks in flight",
            self.id,
            settings.ray_pool_size,
            settings.ray_num_cpus_per_actor,
            settings.ray_num_gpus_per_actor,
            self.capacity,
        )

    # -- Dispatcher protocol ------------------------------------------------------------------
    def dispatch_parts(self, job_id: str, chunks: Sequence[int]) -> None:
        """Durable once this returns: the chunks are in Redis, whatever happens to this process."""
        items = [json.dumps([job_id, chunk]) for chunk in chunks]
        pipe = self.store.r.pipeline(transaction=False)
        for start in range(0, len(items), 1000):
            pipe.rpush(self.pending_key, *items[start : start + 1000])
        pipe.execute()
        self._wake.set()

    def dispatch_request(self, request_id: str) -> None:
        """Straight to an actor's interactive thread (round robin), never behind queued chunks."""
        with self._lock:
            live = [s for s in self._slots if s.actor is not None]
            ready = [s for s in live if s.ready] or live
            if not ready:
                raise Unavailable("no Ray worker actor is running (they keep failing to start; see the gateway log)")
            slot = ready[next(self._round_robin) % len(ready)]
            self._send_request(slot, request_id, tries=1)
        self._wake.set()

    def close(self) -> None:
        """Stop dispatching, kill the actors and hand this dispatcher's chunks back to the queue."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            actors = [s.actor for s in self._slots if s.actor is not None]
            for slot in self._slots:
                slot.actor = None
            self._calls.clear()
        for actor in actors:
            self._kill(actor)
        try:
            self.store.r.delete(self._lease_key)
            moved = self._reclaim_script(keys=[self._lease_key, self.inflight_key, self.pending_key])
            if moved:
                log.info("Ray dispatcher %s: %d unfinished chunk(s) returned to the queue", self.id, moved)
        except Exception:
            log.warning(
                "could not return in-flight chunks to the queue; another gateway will reclaim them in %.0f s",
                LEASE_TTL_S,
                exc_info=True,
            )
        if self._owns_ray:
            self._ray.shutdown()

    # -- introspection (tests, benchmarks, operators) -----------------------------------------
    def in_flight(self) -> int:
        """Chunks out of the pending list: running, queued on an actor, or waiting to be retried."""
        return self._held

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "in_flight": self._held,
                "max_in_flight": self._stats.max_in_flight,
                "capacity": self.capacity,
                "pending": int(self.store.r.llen(self.pending_key)),
                "submitted": self._stats.submitted,
                "dropped": self._stats.dropped,
                "retries": self._stats.retries,
                "resubmitted": self._stats.resubmitted,
                "actor_deaths": self._stats.actor_deaths,
                "failed": self._stats.failed,
                "reclaimed": self._stats.reclaimed,
                "actors_ready": sum(1 for s in self._slots if s.actor is not None and s.ready),
            }

    def actor_pids(self) -> list[int]:
        """Process ids of the actors that are up, one per pool slot."""
        with self._lock:
            return [s.pid for s in self._slots if s.actor is not None and s.ready]

    # -- the dispatcher thread ----------------------------------------------------------------
    def _run(self) -> None:
        next_lease = time.monotonic() + LEASE_REFRESH_S
        next_reclaim = time.monotonic() + RECLAIM_INTERVAL_S
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_lease:
                    self._refresh_lease()
                    next_lease = now + LEASE_REFRESH_S
                if now >= next_reclaim:
                    self._reclaim_orphans()
                    next_reclaim = now + RECLAIM_INTERVAL_S
                self._respawn_due()
                self._submit_delayed()
                self._fill()
                self._collect()
            except Exception:
                log.exception("Ray dispatcher %s: dispatch pass failed; retrying in 1 s", self.id)
                self._stop.wait(1.0)

    def _refresh_lease(self) -> None:
        self.store.r.set(self._lease_key, b"1", px=int(LEASE_TTL_S * 1000))

    def _reclaim_orphans(self) -> None:
        for raw_key in self.store.r.scan_iter(match=f"{self._inflight_prefix}*", count=500):
            key = raw_key.decode()
            owner = key.removeprefix(self._inflight_prefix)
            if owner == self.id:
                continue
            moved = int(self._reclaim_script(keys=[self._lease_prefix + owner, key, self.pending_key]))
            if moved > 0:
                log.warning("Ray dispatcher %s: took back %d chunk(s) of stopped dispatcher %s", self.id, moved, owner)
                self._stats.reclaimed += moved
                self._wake.set()

    def _fill(self) -> None:
        """Move chunks from Redis to actors while fewer than ``capacity`` are out."""
        while not self._stop.is_set() and self._held < self.capacity and self._has_actor():
            raw = self.store.r.lmove(self.pending_key, self.inflight_key, "LEFT", "RIGHT")
            if raw is None:
                return
            self._held += 1
            self._stats.max_in_flight = max(self._stats.max_in_flight, self._held)
            try:
                job_id, chunk = json.loads(raw)
                task = _Chunk(job_id=str(job_id), chunk=int(chunk), raw=raw)
            except (ValueError, TypeError):
                log.error("Ray dispatcher %s: dropping malformed queue item %r", self.id, raw)
                self._finish(_Chunk(job_id="", chunk=-1, raw=raw))
                continue
            self._submit_chunk(task)

    def _collect(self) -> None:
        """Wait briefly for answers and act on every one that is in."""
        with self._lock:
            refs = list(self._calls)
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
        with self._lock:
            call = self._calls.pop(ref)
            slot = self._slots[call.slot]
            if call.kind in ("chunk", "fail") and slot.generation == call.generation:
                slot.load -= 1
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
            # Redis unreachable while deciding: keep the chunk (it is still in the in-flight list).
            log.exception("Ray dispatcher %s: handling a %s answer failed; trying again shortly", self.id, call.kind)
            if call.chunk is not None:
                self._delay(call.chunk, 1.0, call.message if call.kind == "fail" else "")

    def _on_result(self, call: _Call, value: Any) -> None:
        if call.kind == "ready":
            with self._lock:
                slot = self._slots[call.slot]
                if slot.generation == call.generation and slot.actor is not None:
                    slot.ready = True
                    slot.pid = int(value["pid"])
                    slot.init_failures = 0
            log.info("Ray worker actor %s is up (pid %s)", value["worker_id"], value["pid"])
        elif call.kind == "chunk":
            assert call.chunk is not None
            if value == RETRY:
                call.chunk.attempt += 1
                self._stats.retries += 1
                self._delay(call.chunk, _backoff(call.chunk.attempt - 1))
            else:
                self._finish(call.chunk)
        elif call.kind == "fail":
            assert call.chunk is not None
            self._stats.failed += 1
            self._finish(call.chunk)

    def _on_actor_lost(self, call: _Call, exc: Exception) -> None:
        self._replace(call.slot, call.generation, exc)
        reason = _first_line(exc)
        if call.kind == "request":
            if call.tries < self.max_attempts:
                with self._lock:
                    slot = self._pick_slot()
                    if slot is not None:
                        self._send_request(slot, call.request_id, call.tries + 1)
        elif call.kind == "fail":
            assert call.chunk is not None
            self._submit_fail(call.chunk, call.message)
        elif call.kind == "chunk":
            task = call.chunk
            assert task is not None
            init_failed = bool(getattr(exc, "actor_init_failed", False))
            if init_failed or self.store.part_state(task.job_id, task.chunk) == "running":
                task.attempt += 1
            log.warning(
                "job %s chunk %d: its Ray actor died (%s); resubmitting as attempt %d",
                task.job_id,
                task.chunk,
                reason,
                task.attempt,
            )
            if task.attempt > self.max_attempts:
                self._submit_fail(
                    task, f"gave up after {self.max_attempts} attempts; the last Ray actor died: {reason}"
                )
            else:
                self._stats.resubmitted += 1
                self._submit_chunk(task)

    def _on_call_error(self, call: _Call, exc: Exception) -> None:
        reason = _first_line(exc)
        if call.kind == "ready":
            self._replace(call.slot, call.generation, exc)
        elif call.kind == "request":
            log.error("embed request %s: the Ray actor call failed: %s", call.request_id, reason)
        elif call.kind == "chunk":
            task = call.chunk
            assert task is not None
            log.warning(
                "job %s chunk %d attempt %d: actor call failed: %s", task.job_id, task.chunk, task.attempt, reason
            )
            task.attempt += 1
            if task.attempt > self.max_attempts:
                self._submit_fail(task, f"gave up after {self.max_attempts} attempts; last error: {reason}")
            else:
                self._stats.retries += 1
                self._delay(task, _backoff(task.attempt - 1))
        elif call.kind == "fail":
            task = call.chunk
            assert task is not None
            task.fail_tries += 1
            if task.fail_tries >= self.max_attempts:
                log.error("job %s chunk %d: could not record its failure: %s", task.job_id, task.chunk, reason)
                self._finish(task)
            else:
                self._delay(task, _backoff(task.fail_tries), call.message)

    # -- submitting ---------------------------------------------------------------------------
    def _job_active(self, job_id: str) -> bool:
        return self.store.r.hget(self.store.job_key(job_id), "state") in _ACTIVE_STATES

    def _submit_chunk(self, task: _Chunk) -> None:
        if not self._job_active(task.job_id):
            # Cancelled, finished or expired: drop it here rather than send it to an actor to skip.
            self._stats.dropped += 1
            self._finish(task)
            return
        with self._lock:
            slot = self._pick_slot()
            if slot is None:
                self._delay(task, self._next_respawn_in())
                return
            ref = slot.actor.run_chunk.options(concurrency_group=BULK_GROUP).remote(
                task.job_id, task.chunk, task.attempt
            )
            self._calls[ref] = _Call("chunk", slot.index, slot.generation, chunk=task)
            slot.load += 1
            self._stats.submitted += 1

    def _submit_fail(self, task: _Chunk, message: str) -> None:
        """The runner's fail path, on an actor (it needs no model, only the job store)."""
        if not self._job_active(task.job_id):
            self._stats.dropped += 1
            self._finish(task)
            return
        log.error("job %s chunk %d: %s", task.job_id, task.chunk, message)
        with self._lock:
            slot = self._pick_slot()
            if slot is None:
                self._delay(task, self._next_respawn_in(), message)
                return
            ref = slot.actor.fail_chunk.remote(task.job_id, task.chunk, message)
            self._calls[ref] = _Call("fail", slot.index, slot.generation, chunk=task, message=message)
            slot.load += 1

    def _send_request(self, slot: _Slot, request_id: str, tries: int) -> None:
        ref = slot.actor.embed_request.options(concurrency_group=INTERACTIVE_GROUP).remote(request_id)
        self._calls[ref] = _Call("request", slot.index, slot.generation, request_id=request_id, tries=tries)

    def _delay(self, task: _Chunk, seconds: float, fail_message: str = "") -> None:
        with self._lock:
            heapq.heappush(self._delayed, _Delayed(time.monotonic() + seconds, next(self._seq), task, fail_message))

    def _submit_delayed(self) -> None:
        now = time.monotonic()
        while True:
            with self._lock:
                if not self._delayed or self._delayed[0].due > now:
                    return
                item = heapq.heappop(self._delayed)
            if item.message:
                self._submit_fail(item.chunk, item.message)
            else:
                self._submit_chunk(item.chunk)

    def _finish(self, task: _Chunk) -> None:
        """The item is over (outcome recorded, or dropped): remove it from the in-flight list."""
        self.store.r.lrem(self.inflight_key, 1, task.raw)
        self._held -= 1

    # -- the pool -----------------------------------------------------------------------------
    def _pick_slot(self) -> _Slot | None:
        """A built actor before one still loading its models, then the least loaded."""
        live = [s for s in self._slots if s.actor is not None]
        return min(live, key=lambda s: (not s.ready, s.load, s.index)) if live else None

    def _has_actor(self) -> bool:
        with self._lock:
            return any(s.actor is not None for s in self._slots)

    def _next_respawn_in(self) -> float:
        with self._lock:
            waits = [s.respawn_at - time.monotonic() for s in self._slots if s.actor is None]
        return max(0.1, min(waits, default=1.0))

    def _spawn(self, slot: _Slot) -> None:
        with self._lock:
            slot.actor = self._actor_cls.remote(self.worker_settings, f"ray-{self.id}-{slot.index}")
            slot.ready = False
            slot.pid = 0
            slot.load = 0
            self._calls[slot.actor.info.remote()] = _Call("ready", slot.index, slot.generation)

    def _respawn_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [s for s in self._slots if s.actor is None and s.respawn_at <= now]
        for slot in due:
            log.info("Ray dispatcher %s: starting a replacement actor in slot %d", self.id, slot.index)
            self._spawn(slot)

    def _replace(self, index: int, generation: int, exc: Exception) -> None:
        """Retire a dead (or broken) actor once, however many of its calls report it."""
        with self._lock:
            slot = self._slots[index]
            if slot.generation != generation or slot.actor is None:
                return
            old = slot.actor
            slot.actor = None
            slot.ready = False
            slot.generation += 1
            slot.load = 0
            self._stats.actor_deaths += 1
            if getattr(exc, "actor_init_failed", False):
                slot.init_failures += 1
                slot.respawn_at = time.monotonic() + min(2.0**slot.init_failures, MAX_RESPAWN_BACKOFF_S)
            else:
                slot.respawn_at = time.monotonic()
        log.warning("Ray dispatcher %s: actor in slot %d lost: %s", self.id, index, _first_line(exc))
        self._kill(old)
        self._respawn_due()

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone, or Ray is shutting down
            log.debug("ray.kill failed", exc_info=True)

    def _warn_if_pool_does_not_fit(self) -> None:
        resources = self._ray.cluster_resources()
        need_cpu = self.settings.ray_pool_size * self.settings.ray_num_cpus_per_actor
        need_gpu = self.settings.ray_pool_size * self.settings.ray_num_gpus_per_actor
        if need_cpu > resources.get("CPU", 0) or need_gpu > resources.get("GPU", 0):
            log.warning(
                "the Ray pool needs %.2g CPU / %.2g GPU but the cluster has %.2g / %.2g: some actors will wait "
                "for resources (lower ray_pool_size or the per-actor resources, or add nodes)",
                need_cpu,
                need_gpu,
                resources.get("CPU", 0),
                resources.get("GPU", 0),
            )


def _backoff(failed_attempt: int) -> float:
    """The Celery adapter's countdown: 1, 2, 4, ... s, at most 30 s."""
    return min(2.0 ** max(failed_attempt - 1, 0), MAX_BACKOFF_S)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
