"""Handing work to the queue backend. The gateway only knows this interface.

Both backends carry references, never payloads: ``(job_id, chunk_index)`` for a job chunk and a
request id for an interactive Embed. The inputs and outputs are in the job store.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from embedfleet.celery_app import make_celery
from embedfleet.jobstore import JobStore
from embedfleet.settings import CommonSettings
from embedfleet.tasks import EMBED_REQUEST_TASK, RUN_PART_TASK, PartTask


class Dispatcher(Protocol):
    def dispatch_parts(self, job_id: str, parts: Sequence[int]) -> None:
        """Queue the parts; they must be durable (or recoverable) when this returns."""

    def dispatch_request(self, request_id: str) -> None:
        """Queue an interactive embed request ahead of bulk chunks."""

    def close(self) -> None: ...


class CeleryDispatcher:
    def __init__(self, settings: CommonSettings, store: JobStore) -> None:
        self.app = make_celery(settings)
        self.store = store

    def dispatch_parts(self, job_id: str, parts: Sequence[int]) -> None:
        with self.app.producer_or_acquire() as producer:
            for part in parts:
                self.app.send_task(RUN_PART_TASK, args=PartTask(job_id, part).to_args(), producer=producer)

    def dispatch_request(self, request_id: str) -> None:
        self.app.send_task(EMBED_REQUEST_TASK, args=(request_id,))

    def close(self) -> None:
        self.app.close()


def make_dispatcher(settings: CommonSettings, store: JobStore) -> Dispatcher:
    if settings.backend == "ray":
        from embedfleet.ray_dispatch import RayDispatcher

        return RayDispatcher(settings, store)
    return CeleryDispatcher(settings, store)
