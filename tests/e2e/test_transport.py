"""Transport options end to end against the real system: TLS and mutual TLS with a CA the test makes,
and the SDK's retries carrying a call across a gateway restart."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from certs import make_pki

from embedfleet.client import errors
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.gateway.server import start_gateway
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.local import LocalCluster, free_port


def _settings(cluster: LocalCluster, **overrides: object) -> GatewaySettings:
    return GatewaySettings(
        redis_url=cluster.redis_url,
        key_prefix=cluster.key_prefix,
        milvus_uri=cluster.milvus_uri,
        backend="celery",
        auth=False,
        **overrides,  # type: ignore[arg-type]
    )


def test_tls_and_mutual_tls(celery_system: LocalCluster, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = start_gateway(_settings(celery_system, port=0, tls_cert_file=pki.server_cert, tls_key_file=pki.server_key))
    try:
        with EmbedfleetClient(f"grpcs://127.0.0.1:{tls.port}", ca_file=pki.ca) as client:
            assert client.embed(["over TLS"]).vectors.shape == (1, 384)
        plain = EmbedfleetClient(f"127.0.0.1:{tls.port}", timeout=5, retries=0)  # plaintext to a TLS port
        with plain, pytest.raises(errors.Unavailable):
            plain.list_models()
    finally:
        tls.stop()
    mtls = start_gateway(
        _settings(
            celery_system,
            port=0,
            tls_cert_file=pki.server_cert,
            tls_key_file=pki.server_key,
            tls_client_ca_file=pki.ca,
        )
    )
    try:
        target = f"grpcs://127.0.0.1:{mtls.port}"
        with EmbedfleetClient(target, ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key) as client:
            assert client.list_models()[0].name == "all-MiniLM-L6-v2"
        anonymous = EmbedfleetClient(target, ca_file=pki.ca, timeout=5, retries=0)  # no client certificate
        with anonymous, pytest.raises(errors.Unavailable):
            anonymous.list_models()
    finally:
        mtls.stop()


def test_a_call_is_retried_across_a_gateway_restart(celery_system: LocalCluster) -> None:
    port = free_port()
    first = start_gateway(_settings(celery_system, port=port))
    first.stop()
    restarted: list[object] = []

    def restart() -> None:
        time.sleep(1.5)
        restarted.append(start_gateway(_settings(celery_system, port=port)))

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        with EmbedfleetClient(f"127.0.0.1:{port}", timeout=10, retries=8) as client:
            started = time.monotonic()
            assert client.list_models()[0].name == "all-MiniLM-L6-v2"  # UNAVAILABLE, backoff, then answered
            assert time.monotonic() - started >= 1.0
    finally:
        thread.join()
        for gateway in restarted:
            gateway.stop()  # type: ignore[attr-defined]
