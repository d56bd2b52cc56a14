"""The Celery backend: parts and requests become tasks on the Redis broker, routed by name."""

from __future__ import annotations

from collections.abc import Sequence

from embedfleet.celery_app import make_celery
from embedfleet.jobstore import JobStore
from embedfleet.settings import CommonSettings
from embedfleet.tasks import EMBED_REQUEST_TASK, RUN_PART_TASK, PartTask


class CeleryDispatcher:
    """The ``Dispatcher`` for ``backend = "celery"``: the broker is the durable queue."""

    def __init__(self, settings: CommonSettings, store: JobStore) -> None:
        del store  # the broker holds the queue; job state is the caller's and the workers'
        self.app = make_celery(settings)

    def dispatch_parts(self, job_id: str, parts: Sequence[int]) -> None:
        """Durable once this returns: the broker holds every message (one producer for all)."""
        with self.app.producer_or_acquire() as producer:
            for part in parts:
                self.app.send_task(RUN_PART_TASK, args=PartTask(job_id, part).to_args(), producer=producer)

    def dispatch_request(self, request_id: str) -> None:
        self.app.send_task(EMBED_REQUEST_TASK, args=(request_id,))

    def close(self) -> None:
        self.app.close()
