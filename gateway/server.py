"""Assembling and running the gateway: servicers, health, reflection, recovery loop."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from embedfleet import milvus
from embedfleet.apikeys import KeyStore
from embedfleet.gateway.auth import Gate
from embedfleet.gateway.collections import CollectionsCore
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.embedding import EmbedCore
from embedfleet.gateway.feeding import run_dispatch_loop
from embedfleet.gateway.interceptors import RpcMetricsInterceptor, TenantInterceptor
from embedfleet.gateway.jobs import JobsCore
from embedfleet.gateway.keys import KeysCore
from embedfleet.gateway.models import ModelsCore
from embedfleet.gateway.openai_http import OpenAIEndpoint
from embedfleet.gateway.queue import make_dispatcher
from embedfleet.gateway.quotas import RateLimiter
from embedfleet.gateway.retention import run_retention_loop
from embedfleet.gateway.search import SearchCore
from embedfleet.gateway.servicers import SERVICE_NAMES, add_key_service, add_services
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.gateway.status import StatusCore
from embedfleet.jobstore import JobStore
from embedfleet.metrics_server import MetricsServer, gateway_registry, serve_metrics

log = logging.getLogger(__name__)


@dataclass
class RunningGateway:
    server: grpc.Server
    ctx: GatewayContext
    jobs: JobsCore
    port: int
    _stop: threading.Event
    openai: OpenAIEndpoint | None = None
    metrics: MetricsServer | None = None

    @property
    def address(self) -> str:
        return f"{self.ctx.settings.host}:{self.port}"

    def stop(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        if self.openai is not None:
            self.openai.stop()
        self.server.stop(grace_s).wait()
        self.ctx.dispatcher.close()
        if self.metrics is not None:
            self.metrics.stop()


def _bind(server: grpc.Server, settings: GatewaySettings) -> int:
    """Listen on host:port, with TLS (and client certificates) when configured."""
    address = f"{settings.host}:{settings.port}"
    if settings.tls_cert_file is None and settings.tls_key_file is None:
        return server.add_insecure_port(address)
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        raise ValueError("TLS needs both tls_cert_file and tls_key_file")
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file else None
    credentials = grpc.ssl_server_credentials(
        [(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    return server.add_secure_port(address, credentials)


def start_gateway(settings: GatewaySettings) -> RunningGateway:
    """Start serving (non-blocking). Port 0 binds a free port, reported in ``RunningGateway.port``."""
    store = JobStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_seconds)
    store.r.ping()  # fail at start-up, with the URL in the message, rather than on the first RPC
    ctx = GatewayContext(
        settings=settings,
        store=store,
        dispatcher=make_dispatcher(settings, store),
        milvus_factory=lambda: milvus.connect(settings.milvus_uri, settings.milvus_token),
    )
    jobs = JobsCore(ctx)
    embedder = EmbedCore(ctx)
    keys = KeyStore(store.r, settings.key_prefix)
    gate = Gate(settings, keys, RateLimiter(store.r, store.prefix))
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers),
        options=options,
        interceptors=[RpcMetricsInterceptor(), TenantInterceptor(gate)],
    )
    models = ModelsCore(ctx)
    add_services(server, jobs, embedder, models, SearchCore(ctx, embedder), StatusCore(ctx), CollectionsCore(ctx))
    add_key_service(server, KeysCore(keys))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*SERVICE_NAMES, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = _bind(server, settings)
    if port == 0:
        raise OSError(f"cannot bind the gateway to {settings.host}:{settings.port}")
    server.start()
    openai = None
    if settings.openai_port is not None:
        openai = OpenAIEndpoint(embedder, models, settings.host, settings.openai_port, settings.max_message_bytes, gate)
        openai.start()
        log.info("OpenAI-compatible endpoint on http://%s:%d/v1/embeddings", settings.host, openai.port)
    stop = threading.Event()
    threading.Thread(
        target=run_dispatch_loop, args=(jobs.feeder, stop), name="embedfleet-dispatch", daemon=True
    ).start()
    metrics = serve_metrics(settings.metrics_host, settings.metrics_port, gateway_registry(store))
    sweep = (ctx.datastore, ctx.store, settings.data_sweep_interval_seconds, settings.data_grace_seconds, stop)
    threading.Thread(target=run_retention_loop, args=sweep, name="embedfleet-retention", daemon=True).start()
    log.info("gateway serving on %s:%d (backend %s)", settings.host, port, settings.backend)
    if not settings.auth:
        log.warning(
            "auth is OFF: every caller is the one local admin and no API key is asked for; run like this on "
            "loopback only (EMBEDFLEET_AUTH=true turns API keys on)"
        )
    return RunningGateway(server=server, ctx=ctx, jobs=jobs, port=port, _stop=stop, openai=openai, metrics=metrics)
