"""How a worker process rides out a Milvus outage: bounded calls, and a breaker that holds parts.

pymilvus retries an unreachable server about 75 times inside one call (some 200 s), so without a
bound every attempt of every part sat in one such call, and a long outage took five attempts times parts
of those to fail a job (5 to 10 minutes on one worker). Bounding the calls alone was tried and reverted:
a part's attempts then failed within seconds each, and a 3 s Milvus restart could spend all five.
The two together fix both: each call is bounded (``BoundedClient``), and after a failure the
``MilvusBreaker`` probes the server (a TCP connect, then a version call); while that fails, a part that needs
Milvus waits for the probe instead of spending attempts, and once the outage has lasted
``outage_budget_s`` the parts fail fast (the job ends FAILED, resumable when Milvus is back).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit

from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet.errors import Unavailable

log = logging.getLogger(__name__)

# The MilvusClient methods that take a per-call ``timeout`` (pymilvus' retry loop stops at it).
_TIMED_CALLS = frozenset(
    name
    for name, method in inspect.getmembers(MilvusClient, inspect.isfunction)
    if "timeout" in inspect.signature(method).parameters
)


class BoundedClient:
    """A MilvusClient whose calls end within ``timeout_s`` unless the caller passes its own timeout.
    A proxy rather than edits at each call site: every kind reaches Milvus through it, including the
    ones added later, and none can forget the bound."""

    def __init__(self, client: MilvusClient, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name in _TIMED_CALLS:
            return functools.partial(attr, timeout=self._timeout_s)  # a caller's own timeout= overrides it
        return attr

    def as_client(self) -> MilvusClient:
        """Typed as what it stands in for."""
        return cast(MilvusClient, self)


def probe_address(uri: str) -> tuple[str, int] | None:
    """The host and port a TCP probe of ``uri`` connects to; None for an embedded Milvus Lite file,
    which has no server that could be away."""
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https", "tcp", "grpc") or not parts.hostname:
        return None
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 19530)


def server_probe(
    address: tuple[str, int] | None, client: Callable[[], MilvusClient | None], timeout_s: float = 1.0
) -> Callable[[], bool]:
    """A probe that says whether Milvus answers: a TCP connect (cheap, and all there is to try before the
    process's first connect), then a version call on the process's client. An open port is not yet an
    answering server: just after a restart, calls through a client that saw the outage fail within
    milliseconds for a second or more (gRPC's reconnect backoff), and each such failure would spend an
    attempt. Always yes when there is no server (an embedded Lite file)."""

    def probe() -> bool:
        if address is None:
            return True
        try:
            with socket.create_connection(address, timeout=timeout_s):
                pass
        except OSError:
            return False
        connected = client()
        if connected is None:
            return True
        try:
            connected.get_server_version(timeout=timeout_s)
        except MilvusException:
            return False
        return True

    return probe


class MilvusBreaker:
    """Opened when a part that used Milvus failed and a probe finds the server away; while it is open,
    ``hold`` (called whenever a part asks for Milvus) waits for the probe to succeed. One per worker
    process: a Celery process runs one part at a time, a Ray actor one part beside its Embed calls."""

    def __init__(
        self,
        where: str,
        probe: Callable[[], bool],
        outage_budget_s: float,
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.where = where
        self._probe = probe
        self.outage_budget_s = outage_budget_s
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        # Ticks of one counter: ``guard`` takes one when an attempt starts, ``hold`` one each time a part asks
        # for Milvus, so an attempt used Milvus if a hold ticked after it started. Not thread-local: an index
        # part writes from its pipeline thread (``worker/pipeline.py``), not the thread that runs the attempt.
        self._ticks = itertools.count()
        self._last_hold = -1

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    @property
    def hold_left_s(self) -> float:
        """How much longer ``hold`` may keep a part of this process waiting: what is left of the outage
        budget while the breaker is open, else 0."""
        opened_at = self._opened_at
        if opened_at is None:
            return 0.0
        return max(0.0, self.outage_budget_s - (self._clock() - opened_at))

    def hold(self) -> None:
        """Return once Milvus is believed reachable. Raises ``Unavailable`` (transient, so the attempt is
        retried and finally failed) once the outage has outlasted the budget: from then on every part
        fails at once instead of waiting again, until a probe succeeds."""
        self._last_hold = next(self._ticks)
        while (opened_at := self._opened_at) is not None:
            if self._probe():
                self._close("Milvus at %s answers again after %.1f s")
                return
            down_s = self._clock() - opened_at
            if down_s >= self.outage_budget_s:
                raise Unavailable(
                    f"Milvus at {self.where} has been unreachable for {down_s:.0f} s (the worker's "
                    f"milvus_outage_budget_seconds is {self.outage_budget_s:.0f}); once it is back, resume the "
                    "job (ResumeJob, `embedfleet jobs resume`) to run its failed parts"
                )
            self._sleep(min(self.probe_interval_s, self.outage_budget_s - down_s))

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Around one attempt of a part: if the attempt asked for Milvus and failed, probe the server and
        open the breaker when it is away; if it succeeded, Milvus answered, so the breaker closes."""
        started = next(self._ticks)
        try:
            yield
        except Exception:
            if self._last_hold > started and self._opened_at is None and not self._probe():
                with self._lock:
                    if self._opened_at is None:
                        self._opened_at = self._clock()
                        log.warning("Milvus at %s is unreachable: parts that need it wait for it", self.where)
            raise
        else:
            if self._last_hold > started and self._opened_at is not None:
                self._close("Milvus at %s answered a part after %.1f s")

    def _close(self, message: str) -> None:
        with self._lock:
            if self._opened_at is not None:
                log.info(message, self.where, self._clock() - self._opened_at)
                self._opened_at = None
