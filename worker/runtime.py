"""Everything a worker process holds, built once per process and shared by its tasks or actor."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from embedfleet import milvus
from embedfleet.jobstore import JobStore
from embedfleet.worker.kinds.base import WorkerContext
from embedfleet.worker.milvus_guard import BoundedClient, MilvusBreaker, probe_address, server_probe
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.models.host import ModelHost, resolve_device
from embedfleet.worker.runner import PartRunner
from embedfleet.worker.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass
class WorkerRuntime:
    settings: WorkerSettings
    store: JobStore
    host: ModelHost
    runner: PartRunner
    _stop: threading.Event

    def preload(self) -> None:
        """Load the models, and encode each one's calibration texts now: the first int8 request would
        otherwise encode 512 texts inside its Embed deadline (30-50 s on a loaded 2-core machine)."""
        registry = self.settings.registry()
        for name in self.settings.preload_models or (registry.default,):
            self.host.get(registry.resolve(name)).calibration_vectors()

    def start_heartbeat(self, metrics_address: str = "") -> None:
        """Publish the models this process hosts, so ListModels shows what is really served, with the
        device and where this process's metrics are scraped (``embedfleet status`` shows both)."""
        device = resolve_device(self.host.device)

        def beat() -> None:
            while not self._stop.is_set():
                try:
                    self.store.publish_worker(
                        self.settings.worker_id,
                        self.host.loaded(),
                        ttl_s=3 * self.settings.heartbeat_seconds,
                        device=device,
                        metrics=metrics_address,
                    )
                except Exception:  # Redis down: keep trying, the key will simply expire meanwhile
                    log.warning("heartbeat to Redis failed", exc_info=True)
                self._stop.wait(self.settings.heartbeat_seconds)

        threading.Thread(target=beat, name="embedfleet-heartbeat", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def milvus_access(settings: WorkerSettings) -> tuple[Callable[[], MilvusSink], MilvusBreaker]:
    """How the process's parts reach Milvus: a sink connected on first use (a worker that only embeds
    never needs Milvus), whose calls are bounded, behind the breaker that holds parts through an outage."""
    made: list[MilvusSink] = []

    def connected() -> MilvusSink:
        if not made:
            client = BoundedClient(
                milvus.connect(settings.milvus_uri, settings.milvus_token), settings.milvus_call_timeout_seconds
            )
            made.append(MilvusSink(client.as_client(), settings.milvus_max_batch_bytes))
        return made[0]

    probe = server_probe(probe_address(settings.milvus_uri), lambda: made[0].client if made else None)
    breaker = MilvusBreaker(settings.milvus_uri, probe, settings.milvus_outage_budget_seconds)

    def sink() -> MilvusSink:
        breaker.hold()  # while Milvus is known to be away, wait for it rather than spend the attempt
        return connected()

    return sink, breaker


def build_runtime(settings: WorkerSettings) -> WorkerRuntime:
    store = JobStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_seconds)
    host = ModelHost(
        device=settings.device,
        batch_size=settings.encode_batch_size,
        cache_dir=settings.model_cache_dir,
        token_budget=settings.token_budget,
        cuda_dtype=settings.cuda_dtype,
    )

    sink, breaker = milvus_access(settings)

    ctx = WorkerContext(
        store=store,
        registry=settings.registry,
        host=host,
        sink=sink,
        breaker=breaker,
        model_store=settings.model_store(),
        device=settings.device,
        data_dir=settings.eval_data_dir,
        write_rows=settings.write_rows,
        distill_checkpoint_steps=settings.distill_checkpoint_steps,
    )
    runner = PartRunner(
        ctx, max_attempts=settings.max_chunk_attempts, owner=settings.worker_id, lease_s=settings.part_lease_seconds
    )
    return WorkerRuntime(settings=settings, store=store, host=host, runner=runner, _stop=threading.Event())
