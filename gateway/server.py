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
from embedfleet.gateway.queue import make_dispatcher
from embedfleet.gateway.service import GatewayCore, run_recovery_loop
from embedfleet.gateway.servicers import EmbedServicer, JobServicer, ModelServicer, SearchServicer
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.jobstore import JobStore
from embedfleet.v1 import (
    embed_pb2,
    embed_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    embed_pb2.DESCRIPTOR.services_by_name["EmbedService"].full_name,
    models_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name,
    search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name,
)


@dataclass
class RunningGateway:
    server: grpc.Server
    core: GatewayCore
    port: int
    _stop: threading.Event

    @property
    def address(self) -> str:
        return f"{self.core.settings.host}:{self.port}"

    def stop(self, grace_s: float = 5.0) -> None:
        self._stop.set()
        self.server.stop(grace_s).wait()
        self.core.dispatcher.close()


def start_gateway(settings: GatewaySettings) -> RunningGateway:
    """Start serving (non-blocking). Port 0 binds a free port, reported in ``RunningGateway.port``."""
    store = JobStore.from_url(settings.redis_url, settings.key_prefix, settings.job_ttl_seconds)
    store.r.ping()  # fail at start-up, with the URL in the message, rather than on the first RPC
    core = GatewayCore(
        settings=settings,
        store=store,
        dispatcher=make_dispatcher(settings, store),
        milvus_client=lambda: milvus.connect(settings.milvus_uri, settings.milvus_token),
    )
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=settings.max_workers), options=options)
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(core), server)
    embed_pb2_grpc.add_EmbedServiceServicer_to_server(EmbedServicer(core), server)
    models_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(core), server)
    search_pb2_grpc.add_SearchServiceServicer_to_server(SearchServicer(core), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*SERVICE_NAMES, ""):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
    if port == 0:
        raise OSError(f"cannot bind the gateway to {settings.host}:{settings.port}")
    server.start()
    stop = threading.Event()
    threading.Thread(target=run_recovery_loop, args=(core, stop), name="embedfleet-recovery", daemon=True).start()
    log.info("gateway serving on %s:%d (backend %s)", settings.host, port, settings.backend)
    return RunningGateway(server=server, core=core, port=port, _stop=stop)
