"""A bound on open server-streaming calls (WatchJob, StreamJobResults).

Each open stream holds one of the gateway's RPC threads for as long as it lasts, and a watch of a
queued job can last hours. Without a bound, as many abandoned or slow watches as there are threads
left nothing to answer Health or GetJob. ``StreamSlots`` admits at most ``max_streams`` at once and
refuses the next with RESOURCE_EXHAUSTED and a retry delay, so the remaining threads (the settings
keep ``max_workers`` above ``max_streams``) always serve unary calls and health checks. Within that
bound each tenant holds at most its quota's ``max_open_streams`` on one gateway, so one tenant's
watches cannot take every slot and leave the others none.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from embedfleet.errors import ResourceExhausted

RETRY_AFTER_S = 5.0  # when a slot may be free again: streams of gone clients end within a poll


class StreamSlots:
    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._lock = threading.Lock()
        self._open = 0
        self._by_tenant: Counter[str] = Counter()

    @contextmanager
    def slot(self, what: str, tenant: str = "", tenant_limit: int = 0) -> Iterator[None]:
        """Hold one slot while the stream runs; ResourceExhausted at once when none is free, or when
        ``tenant`` already holds ``tenant_limit`` of them (0: no limit of its own)."""
        with self._lock:
            if tenant_limit and self._by_tenant[tenant] >= tenant_limit:
                raise ResourceExhausted(
                    f"{what}: tenant {tenant!r} already has {tenant_limit} open streams on this gateway (its "
                    "max_open_streams quota); close a watch, retry later or use GetJob",
                    retry_after_s=RETRY_AFTER_S,
                )
            if self._open >= self.max_streams:
                raise ResourceExhausted(
                    f"{what}: this gateway already serves {self.max_streams} open streams (its limit, "
                    "EMBEDFLEET_MAX_STREAMS); retry later or use GetJob",
                    retry_after_s=RETRY_AFTER_S,
                )
            self._open += 1
            self._by_tenant[tenant] += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                self._by_tenant[tenant] -= 1
                if not self._by_tenant[tenant]:
                    del self._by_tenant[tenant]
