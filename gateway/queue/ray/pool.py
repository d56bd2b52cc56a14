"""The Ray backend's actor pool: a fixed number of slots, each holding one worker actor.

A slot's actor is spawned, probed until its models are loaded (``info``), and replaced when it
dies; one that dies in ``__init__`` (its models cannot load) is respawned after a growing delay, so
a broken deployment does not spin. Ray's own ``max_restarts``/``max_task_retries`` are off: Ray
would re-run calls behind the dispatcher's back (see the package docstring).

The worker's actor class and settings are imported only when a pool is built: importing this
module loads neither worker code nor Ray.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from embedfleet.settings import CommonSettings
from embedfleet.tasks import PartTask

if TYPE_CHECKING:
    from embedfleet.worker.settings import WorkerSettings

log = logging.getLogger(__name__)

BULK_GROUP = "bulk"
INTERACTIVE_GROUP = "interactive"
MAX_RESPAWN_BACKOFF_S = 60.0


def worker_settings_for(settings: CommonSettings) -> WorkerSettings:
    """The actors' settings: what the gateway was given for the shared keys, and the worker keys
    (device, batch size, attempts, heartbeat) from this process's environment or config file, since
    with Ray the gateway is the one that starts the workers."""
    from embedfleet.worker.settings import WorkerSettings

    shared = {name: getattr(settings, name) for name in CommonSettings.model_fields}
    return WorkerSettings(**shared)


def init_failed(exc: BaseException) -> bool:
    """The actor died in ``__init__`` (e.g. its model could not load), not while working."""
    return bool(getattr(exc, "actor_init_failed", False))


def failure_reason(exc: BaseException) -> str:
    """One line saying why a call failed. Ray puts a creation task's traceback in the message, so
    for an actor that could not start the cause is the last line; otherwise it is the first."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if init_failed(exc) else lines[0]


@dataclass
class Slot:
    """One place in the pool; its actor is replaced (generation + 1) when it dies."""

    index: int
    actor: Any = None
    generation: int = 0
    ready: bool = False
    pid: int = 0
    load: int = 0  # part calls sent to this generation and not yet answered
    init_failures: int = 0  # consecutive actors of this slot that died in __init__
    respawn_at: float = 0.0


class ActorPool:
    """The slots, and every call that goes to an actor (so actor methods and concurrency groups are
    named only here). Thread-safe: the dispatcher thread and gRPC threads (Embed) share it."""

    def __init__(self, ray: ModuleType, settings: CommonSettings, name: str) -> None:
        from embedfleet.worker.ray_actor import RayWorker

        self._ray = ray
        self.settings = settings
        self.worker_settings = worker_settings_for(settings)
        self._name = name
        self._actor_cls = ray.remote(
            concurrency_groups={BULK_GROUP: 1, INTERACTIVE_GROUP: 1},
            num_cpus=settings.ray_num_cpus_per_actor,
            num_gpus=settings.ray_num_gpus_per_actor,
            max_restarts=0,
            max_task_retries=0,
        )(RayWorker)
        self._lock = threading.RLock()
        self._slots = [Slot(index=i) for i in range(settings.ray_pool_size)]
        self._probes: dict[Any, tuple[int, int]] = {}  # readiness call -> (slot, generation)
        self._round_robin = itertools.count()
        self.deaths = 0
        self.last_start_error = ""

    def start(self) -> None:
        self._warn_if_pool_does_not_fit()
        for slot in self._slots:
            self._spawn(slot)

    def close(self) -> None:
        with self._lock:
            actors = [s.actor for s in self._slots if s.actor is not None]
            for slot in self._slots:
                slot.actor = None
            self._probes.clear()
        for actor in actors:
            self._kill(actor)

    # -- choosing an actor ----------------------------------------------------------------------
    def pick(self) -> Slot | None:
        """For a part: a built actor before one still loading its models, then the least loaded."""
        with self._lock:
            live = [s for s in self._slots if s.actor is not None]
            return min(live, key=lambda s: (not s.ready, s.load, s.index)) if live else None

    def pick_for_request(self) -> Slot | None:
        """For an Embed: the built actors in turn (or, while none is built, those loading)."""
        with self._lock:
            live = [s for s in self._slots if s.actor is not None]
            ready = [s for s in live if s.ready] or live
            return ready[next(self._round_robin) % len(ready)] if ready else None

    def has_actor(self) -> bool:
        with self._lock:
            return any(s.actor is not None for s in self._slots)

    def startup_failure(self) -> str | None:
        """Why no actor can be built (every slot's latest actor died in ``__init__`` and none is up),
        or None while the pool works or may still come up."""
        with self._lock:
            if any(s.ready or s.init_failures == 0 for s in self._slots):
                return None
            return self.last_start_error

    def next_respawn_in(self) -> float:
        with self._lock:
            waits = [s.respawn_at - time.monotonic() for s in self._slots if s.actor is None]
        return max(0.1, min(waits, default=1.0))

    # -- calls ----------------------------------------------------------------------------------
    def send_part(self, slot: Slot, task: PartTask) -> Any:
        with self._lock:
            ref = slot.actor.run_chunk.options(concurrency_group=BULK_GROUP).remote(task.job_id, task.part)
            slot.load += 1
            return ref

    def send_fail(self, slot: Slot, task: PartTask, message: str) -> Any:
        with self._lock:
            ref = slot.actor.fail_chunk.remote(task.job_id, task.part, message)  # needs no model: not behind parts
            slot.load += 1
            return ref

    def send_request(self, slot: Slot, request_id: str) -> Any:
        with self._lock:
            return slot.actor.embed_request.options(concurrency_group=INTERACTIVE_GROUP).remote(request_id)

    def answered(self, index: int, generation: int) -> None:
        """A part or fail call of this slot's actor came back (whatever its outcome)."""
        with self._lock:
            slot = self._slots[index]
            if slot.generation == generation:
                slot.load -= 1

    # -- readiness --------------------------------------------------------------------------------
    def probes(self) -> list[Any]:
        with self._lock:
            return list(self._probes)

    def settle_probe(self, ref: Any) -> bool:
        """Act on a readiness answer; False if ``ref`` is not one of this pool's probes."""
        with self._lock:
            owner = self._probes.pop(ref, None)
        if owner is None:
            return False
        index, generation = owner
        try:
            info = self._ray.get(ref)
        except self._ray.exceptions.RayError as exc:
            self.replace(index, generation, exc)
            return True
        with self._lock:
            slot = self._slots[index]
            if slot.generation == generation and slot.actor is not None:
                slot.ready = True
                slot.pid = int(info["pid"])
                slot.init_failures = 0
        log.info("Ray worker actor %s is up (pid %s)", info["worker_id"], info["pid"])
        return True

    # -- life and death ---------------------------------------------------------------------------
    def respawn_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [s for s in self._slots if s.actor is None and s.respawn_at <= now]
            for slot in due:
                log.info("Ray pool %s: starting a replacement actor in slot %d", self._name, slot.index)
                self._spawn(slot)

    def replace(self, index: int, generation: int, exc: BaseException) -> None:
        """Retire a dead (or broken) actor once, however many of its calls report it."""
        reason = failure_reason(exc)
        with self._lock:
            slot = self._slots[index]
            if slot.generation != generation or slot.actor is None:
                return
            old = slot.actor
            slot.actor = None
            slot.ready = False
            slot.generation += 1
            slot.load = 0
            self.deaths += 1
            if init_failed(exc):
                slot.init_failures += 1
                self.last_start_error = reason
                slot.respawn_at = time.monotonic() + min(2.0**slot.init_failures, MAX_RESPAWN_BACKOFF_S)
            else:
                slot.respawn_at = time.monotonic()
        log.warning("Ray pool %s: actor in slot %d lost: %s", self._name, index, reason)
        self._kill(old)
        self.respawn_due()

    def _spawn(self, slot: Slot) -> None:
        with self._lock:
            slot.actor = self._actor_cls.remote(self.worker_settings, f"ray-{self._name}-{slot.index}")
            slot.ready = False
            slot.pid = 0
            slot.load = 0
            self._probes[slot.actor.info.remote()] = (slot.index, slot.generation)

    def _kill(self, actor: Any) -> None:
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception:  # already gone, or Ray is shutting down
            log.debug("ray.kill failed", exc_info=True)

    # -- introspection ----------------------------------------------------------------------------
    def pids(self) -> list[int]:
        """Process ids of the actors that are up, one per pool slot."""
        with self._lock:
            return [s.pid for s in self._slots if s.actor is not None and s.ready]

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
