"""The sync and asyncio clients have the same methods with the same parameters (they cannot drift), and
the call policy: retries with backoff that honour RetryInfo, only for unary calls. Pure: no services."""

from __future__ import annotations

import inspect

import grpc
import pytest

from embedfleet.client import errors
from embedfleet.client.aio import AsyncEmbedfleetClient
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.client.stubs import Connection


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


def test_sync_and_async_clients_have_the_same_surface() -> None:
    sync, aio = _public(EmbedfleetClient), _public(AsyncEmbedfleetClient)
    assert sorted(sync) == sorted(aio)
    for name, signature in sync.items():
        assert list(signature.parameters) == list(aio[name].parameters), name
        for param, spec in signature.parameters.items():
            assert spec.default == aio[name].parameters[param].default, f"{name}({param})"
        assert inspect.getdoc(getattr(EmbedfleetClient, name)), f"{name} has no docstring"


def _error(code: grpc.StatusCode, retry_after: float | None) -> errors.EmbedfleetRpcError:
    return errors.Unavailable(code, "down", {}, retry_after)


def test_backoff_is_jittered_exponential_and_honours_retry_info() -> None:
    connection = Connection(backoff_s=0.1, max_backoff_s=1.0)
    delays = [connection.delay(attempt, _error(grpc.StatusCode.UNAVAILABLE, None)) for attempt in range(1, 12)]
    assert all(0 <= d <= min(1.0, 0.1 * 2 ** (i)) for i, d in enumerate(delays))
    assert connection.delay(1, _error(grpc.StatusCode.UNAVAILABLE, 2.5)) >= 2.5  # the server said when


@pytest.mark.parametrize(
    ("target", "tls", "address"),
    [("127.0.0.1:1", False, "127.0.0.1:1"), ("grpc://h:2", False, "h:2"), ("grpcs://h:3", True, "h:3")],
)
def test_targets(target: str, tls: bool, address: str) -> None:
    connection = Connection(target)
    assert (connection.tls, connection.address) == (tls, address)
    assert Connection(target, api_key="k").metadata() == (("authorization", "Bearer k"),)


def test_unary_calls_are_retried_then_raise_typed_errors() -> None:
    """Nothing listens on this port: every call is UNAVAILABLE; the client retries, then raises."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused at once
        client = EmbedfleetClient(f"127.0.0.1:{port}", timeout=5, retries=2)
        client.connection = Connection(f"127.0.0.1:{port}", retries=2, backoff_s=0.01)
        with pytest.raises(errors.Unavailable):
            client.list_models()
        client.close()


def test_on_error_hears_each_failed_part_once() -> None:
    """``wait(on_error=...)`` (both clients, through ``JobProgress``): a part is reported the first time
    an update names it, never again however many later updates carry it."""
    from dataclasses import replace

    from embedfleet.client.progress import follow
    from embedfleet.client.types import FailedChunk, Job
    from embedfleet.domain import JobState

    base = Job(
        id="j", kind="index", state=JobState.RUNNING, display_name="", model="m", collection="c", total=30,
        done=0, failed=0, truncated=0, chunks_total=3, chunks_finished=0, docs_per_second=0.0, eta_seconds=0.0,
        error="",
    )  # fmt: skip
    first, second = FailedChunk(0, 0, 10, "boom"), FailedChunk(2, 20, 10, "bang")
    updates = [
        base,
        replace(base, failed=10, failed_chunks=[first]),
        replace(base, done=10, failed=10, failed_chunks=[first]),
        replace(base, state=JobState.FAILED, done=10, failed=20, failed_chunks=[first, second]),
    ]
    heard: list[FailedChunk] = []
    final = follow(updates, enabled=False, on_error=heard.append)
    assert heard == [first, second] and final.state == JobState.FAILED


def test_every_command_exists_under_python_m() -> None:
    """``python -m embedfleet.client.cli`` (how LocalCluster starts workers) used to run ``main()`` from
    the middle of the module, before the commands defined below it existed."""
    import subprocess
    import sys

    from embedfleet.client.cli import main

    out = subprocess.run(
        [sys.executable, "-m", "embedfleet.client.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(name in out for name in main.commands), sorted(n for n in main.commands if n not in out)


def test_every_unary_rpc_is_one_calls_entry_on_the_service_the_clients_stub_names() -> None:
    """Each ``calls`` entry names a stub attribute the clients open and a method of that service; every
    unary RPC of the published services has exactly one entry (the streaming ones, uploads and watches,
    are written in each client), so a new RPC cannot be left out of one client."""
    from embedfleet.client import calls
    from embedfleet.v1 import collections_pb2, embed_pb2, jobs_pb2, keys_pb2, models_pb2, search_pb2, status_pb2

    services = {
        "jobs": jobs_pb2.DESCRIPTOR.services_by_name["JobService"],
        "embeddings": embed_pb2.DESCRIPTOR.services_by_name["EmbedService"],
        "models": models_pb2.DESCRIPTOR.services_by_name["ModelService"],
        "searches": search_pb2.DESCRIPTOR.services_by_name["SearchService"],
        "statuses": status_pb2.DESCRIPTOR.services_by_name["StatusService"],
        "keys": keys_pb2.DESCRIPTOR.services_by_name["KeyService"],
        "collections": collections_pb2.DESCRIPTOR.services_by_name["CollectionService"],
    }
    entries = [e for e in vars(calls).values() if isinstance(e, calls.Unary | calls.Paged)]
    named = [(e.service, e.method) for e in entries]
    assert len(named) == len(set(named))
    unary = {
        (attr, m.name)
        for attr, service in services.items()
        for m in service.methods
        if not (m.client_streaming or m.server_streaming)
    }
    assert set(named) == unary
    client = EmbedfleetClient("127.0.0.1:1")
    try:
        for attr, method in named:
            assert callable(getattr(getattr(client, attr), method)), (attr, method)
    finally:
        client.close()
