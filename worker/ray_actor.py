"""Ray adapter: one actor is one worker process with its own copy of the models.

The class is plain Python (no Ray import, no torch at import time): the gateway's actor pool
(``embedfleet.gateway.queue.ray.pool``) wraps it with ``ray.remote`` and the resources from
settings, so this module stays importable anywhere and the gateway that imports it never loads
model code. Like the Celery tasks, every method only calls the runner; the single translation is
``RetryPart`` -> ``embedfleet.tasks.RETRY_OUTCOME``, which the dispatcher turns into a delayed
resubmission (Ray has no per-task countdown).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from embedfleet.tasks import RETRY_OUTCOME

if TYPE_CHECKING:
    from embedfleet.worker.runtime import WorkerRuntime
    from embedfleet.worker.settings import WorkerSettings


class RayWorker:
    """Built once per actor: ``__init__`` loads the models and starts the heartbeat, so every chunk
    the actor runs reuses them, and ``LocalCluster``/ListModels see the actor as a live worker."""

    def __init__(self, settings: WorkerSettings, name: str) -> None:
        from prometheus_client import REGISTRY

        from embedfleet.logs import configure_logging
        from embedfleet.metrics_server import serve_metrics
        from embedfleet.worker.runtime import build_runtime  # heavy (numpy, pymilvus), only in the actor

        configure_logging(settings.log_format, settings.log_level)
        worker_id = f"{name}-{socket.gethostname()}-{os.getpid()}"
        self.runtime: WorkerRuntime = build_runtime(settings.model_copy(update={"worker_id": worker_id}))
        self.runtime.preload()
        # Several actors may share a node, so the configured port is only the first choice.
        metrics = serve_metrics(settings.metrics_host, settings.metrics_port, REGISTRY, free_port_if_taken=True)
        self.runtime.start_heartbeat(metrics.address if metrics is not None else "")

    def info(self) -> dict[str, object]:
        """Answered once the actor is built: the dispatcher's readiness probe, and the pid tests kill."""
        return {"pid": os.getpid(), "worker_id": self.runtime.settings.worker_id}

    def run_chunk(self, job_id: str, chunk: int) -> str:
        """The part's outcome: a ``PartStatus`` value, or ``RETRY_OUTCOME`` to run it again after a backoff
        (the job store counts the part's attempts)."""
        from embedfleet.worker.runner import RetryPart

        try:
            return self.runtime.runner.run_part(job_id, chunk).status.value
        except RetryPart:
            return RETRY_OUTCOME

    def fail_chunk(self, job_id: str, chunk: int, message: str) -> None:
        """Record a part the dispatcher gave up on (its actors kept dying), so the job reports it."""
        self.runtime.runner.fail_part(job_id, chunk, message)

    def embed_request(self, request_id: str) -> None:
        self.runtime.runner.embed_request(request_id)
