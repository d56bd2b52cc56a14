"""Serving ``/metrics`` over HTTP, and what each kind of process serves.

* the gateway: its process metrics plus the job-store gauges (``gateway_registry``);
* a Celery worker: the parent serves the sum of every prefork child's metrics
  (``multiprocess_registry``; see ``metrics_multiprocess`` for why);
* a Ray actor: its own process metrics, on the configured port or, when another actor of the node
  holds it, a free one (the actor's heartbeat says which, and ``embedfleet status`` shows it).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from embedfleet.jobstore import JobStore
from embedfleet.metrics import JobStoreCollector

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    httpd: WSGIServer
    thread: threading.Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.httpd.server_port)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def serve_metrics(
    host: str, port: int, registry: CollectorRegistry, *, free_port_if_taken: bool = False
) -> MetricsServer | None:
    """Serve ``registry`` on ``host:port`` in a daemon thread; None when ``port`` is 0 (metrics off)."""
    if port == 0:
        return None
    try:
        httpd, thread = start_http_server(port, addr=host, registry=registry)
    except OSError:
        if not free_port_if_taken:
            raise
        log.warning("metrics port %s:%d is taken; serving metrics on a free port", host, port)
        httpd, thread = start_http_server(0, addr=host, registry=registry)
    server = MetricsServer(httpd, thread, host)
    log.info("metrics on http://%s/metrics", server.address)
    return server


def gateway_registry(store: JobStore) -> CollectorRegistry:
    """The process's metrics and, read at each scrape, the jobs and parts the store holds.

    A registry of its own per gateway: several gateways in one process (tests) each export their
    own store's gauges, which the process-wide default registry could hold only once."""
    registry = CollectorRegistry()
    registry.register(REGISTRY)
    registry.register(JobStoreCollector(store))
    return registry


def multiprocess_registry() -> CollectorRegistry:
    """The sum of the metric files every process of this worker wrote (multiprocess mode)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
