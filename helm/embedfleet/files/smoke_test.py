"""Smoke test of a deployed gateway: the `helm test` hook and, with TLS, the gateway's exec probes.

Kubelet's native gRPC probe cannot speak TLS, so the same check runs inside the pod. It uses the generated
stubs of the project image (no grpc_health_probe binary is needed): grpc.health.v1 must answer SERVING, and,
unless --health-only, EmbedService.Embed must return one vector per text.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """A plaintext channel, or a TLS one verified against --tls-root (optionally with a client certificate)."""
    if not args.tls_root:
        return grpc.insecure_channel(args.address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(args.tls_root).read_bytes(),
        private_key=Path(args.tls_key).read_bytes() if args.tls_key else None,
        certificate_chain=Path(args.tls_cert).read_bytes() if args.tls_cert else None,
    )
    options = [("grpc.ssl_target_name_override", args.tls_server_name)] if args.tls_server_name else []
    return grpc.secure_channel(args.address, credentials, options=options)


def check(args: argparse.Namespace) -> str:
    """Run the checks; return a one-line summary or raise on the first failure."""
    with _channel(args) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
        )
        if health.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"health of {args.service or 'the server'!r} is {health.status}")
        if args.health_only:
            return "SERVING"
        from embedfleet.v1 import embed_pb2, embed_pb2_grpc

        texts = ["embedfleet smoke test", "a second short text"]
        key = os.environ.get("EMBEDFLEET_API_KEY", "")  # a writer key, when the gateway checks keys
        reply = embed_pb2_grpc.EmbedServiceStub(channel).Embed(
            embed_pb2.EmbedRequest(texts=texts),
            timeout=args.timeout,
            metadata=(("authorization", f"Bearer {key}"),) if key else None,
        )
        batch = reply.embeddings
        if len(batch.ids) != len(texts) or batch.dimensions <= 0 or not batch.data:
            raise RuntimeError(f"Embed returned {len(batch.ids)} vectors of {batch.dimensions} dimensions")
        return f"SERVING; Embed: {len(texts)} vectors of {batch.dimensions} dimensions from {reply.model}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="host:port of the gateway")
    parser.add_argument("--service", default="", help="health service name; '' = the whole server")
    parser.add_argument("--health-only", action="store_true", help="skip the Embed call (probes)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (Embed waits for a worker)")
    parser.add_argument("--tls-root", default="", help="CA bundle; enables TLS")
    parser.add_argument("--tls-server-name", default="", help="name expected in the server certificate")
    parser.add_argument("--tls-cert", default="", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", default="", help="client key (mutual TLS)")
    args = parser.parse_args(argv)
    try:
        print(check(args))
    except (grpc.RpcError, RuntimeError, OSError) as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
