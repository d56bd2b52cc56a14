"""A bound on open server-streaming calls (WatchJob, StreamJobResults).

Each open stream holds one of the gateway's RPC threads for as long as it lasts, and a watch of a
queued job can last hours. Without a bound, as many abandoned or slow watches as there are threads
left nothing to answer Health or GetJob. ``StreamSlots`` admits at most ``max_streams`` at once and
refuses the next with RESOURCE_EXHAUSTED and a retry delay, so the remaining threads (the settings
keep ``max_workers`` above ``max_streams``) always serve unary calls and health checks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from embedfleet.errors import ResourceExhausted

RETRY_AFTER_S = 5.0  # when a slot may be free again: streams of gone clients end within a poll


class StreamSlots:
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._free = threading.BoundedSemaphore(max_streams)

    @contextmanager
    def slot(self, what: str) -> Iterator[None]:
        """Hold one slot while the stream runs; ResourceExhausted at once when none is free."""
        if not self._free.acquire(blocking=False):
            raise ResourceExhausted(
                f"{what}: this gateway already serves {self.max_streams} open streams (its limit, "
                "EMBEDFLEET_MAX_STREAMS); retry later or use GetJob",
                retry_after_s=RETRY_AFTER_S,
            )
        try:
            yield
        finally:
            self._free.release()
