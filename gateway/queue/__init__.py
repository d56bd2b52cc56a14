"""Handing work to the queue backend. The gateway only knows the ``Dispatcher`` interface.

Both backends carry references, never payloads: a ``PartTask`` (job id, part index) for a job part
and a request id for an interactive Embed; inputs and outputs are in the job store. Recording that
parts were dispatched is the caller's job (``JobStore.mark_dispatched``), once, for every backend.

Each backend is imported only when chosen, so the Celery gateway never imports Ray and neither
imports worker code.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol

from embedfleet.jobstore import JobStore
from embedfleet.settings import CommonSettings


class Dispatcher(Protocol):
    def dispatch_parts(self, job_id: str, parts: Sequence[int]) -> None:
        """Queue the parts; they must be durable (or recoverable) when this returns."""

    def dispatch_request(self, request_id: str) -> None:
        """Queue an interactive embed request ahead of bulk parts."""

    def close(self) -> None:
        """Stop dispatching and release what the dispatcher holds (connections, actors)."""


# backend name -> (module, factory); a factory is called as factory(settings, store).
_BACKENDS: dict[str, tuple[str, str]] = {
    "celery": ("embedfleet.gateway.queue.celery", "CeleryDispatcher"),
    "ray": ("embedfleet.gateway.queue.ray.dispatcher", "RayDispatcher"),
}


def make_dispatcher(settings: CommonSettings, store: JobStore) -> Dispatcher:
    """The dispatcher of ``settings.backend``."""
    module, factory = _BACKENDS[settings.backend]
    dispatcher: Dispatcher = getattr(importlib.import_module(module), factory)(settings, store)
    return dispatcher
