"""How the SDK talks to a gateway: the channel (plain or TLS, keepalive, message limits) and the five
v1 service stubs with one call policy, shared by the sync and asyncio clients.

The policy, applied to every call: the API key travels as ``authorization: Bearer <key>`` metadata;
server errors become the typed exceptions of ``embedfleet.client.errors``; unary calls answered
UNAVAILABLE or RESOURCE_EXHAUSTED are retried with exponential backoff and full jitter, waiting at
least what the server's ``RetryInfo`` asks. Streaming calls are not retried (a consumed request
stream cannot be replayed); a watch cut by UNAVAILABLE is opened again by the client's ``watch``
(``WatchReopener``): a watch answers the job as it is now and then each change, so reopening loses nothing.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from embedfleet.client.errors import EmbedfleetRpcError, from_rpc_error
from embedfleet.v1 import (
    collections_pb2_grpc,
    embed_pb2_grpc,
    jobs_pb2_grpc,
    keys_pb2_grpc,
    models_pb2_grpc,
    search_pb2_grpc,
    status_pb2_grpc,
)

if TYPE_CHECKING:
    from embedfleet.client.calls import Paged, Unary

_AIO_CALLABLES = (
    grpc.aio.UnaryUnaryMultiCallable,
    grpc.aio.UnaryStreamMultiCallable,
    grpc.aio.StreamUnaryMultiCallable,
    grpc.aio.StreamStreamMultiCallable,
)
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
TLS_SCHEME = "grpcs://"
PLAIN_SCHEME = "grpc://"


@dataclass(frozen=True)
class Connection:
    """Where and how to reach a gateway. ``target`` is ``host:port``, ``grpc://host:port`` or
    ``grpcs://host:port`` (TLS; ``ca_file`` when the server's certificate is not in the system's trust
    store; ``cert_file``/``key_file`` for mutual TLS)."""

    target: str = "127.0.0.1:50051"
    api_key: str = ""
    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    retries: int = 4
    backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    max_message_bytes: int = 64 * 1024 * 1024
    keepalive_s: float = 30.0

    @property
    def address(self) -> str:
        return self.target.removeprefix(TLS_SCHEME).removeprefix(PLAIN_SCHEME)

    @property
    def tls(self) -> bool:
        return self.target.startswith(TLS_SCHEME) or self.ca_file is not None or self.cert_file is not None

    def options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 0),
        ]

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: str | Path | None) -> bytes | None:
            return Path(path).read_bytes() if path is not None else None

        return grpc.ssl_channel_credentials(read(self.ca_file), read(self.key_file), read(self.cert_file))

    def channel(self) -> grpc.Channel:
        if self.tls:
            return grpc.secure_channel(self.address, self.credentials(), options=self.options())
        return grpc.insecure_channel(self.address, options=self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls:
            return grpc.aio.secure_channel(self.address, self.credentials(), options=self.options())
        return grpc.aio.insecure_channel(self.address, options=self.options())

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def delay(self, attempt: int, error: EmbedfleetRpcError) -> float:
        """Seconds before retry ``attempt`` (1-based): full jitter over an exponential ceiling, never
        less than the server's RetryInfo."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return max(error.retry_after or 0.0, random.uniform(0, ceiling))


class WatchReopener:
    """When ``watch`` opens a cut watch again: on UNAVAILABLE (a gateway restarting, a proxy's GOAWAY),
    after the retry backoff, at most ``connection.retries`` times in a row (an update resets the count),
    and never past the caller's ``timeout``, which spans every reopening."""

    def __init__(self, connection: Connection, timeout: float | None) -> None:
        self._connection = connection
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._failures = 0

    def remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def received(self) -> None:
        self._failures = 0

    def delay(self, error: EmbedfleetRpcError) -> float | None:
        """Seconds to wait before reopening after ``error``, or None: give up and raise it."""
        if error.code() != grpc.StatusCode.UNAVAILABLE or self._failures >= self._connection.retries:
            return None
        self._failures += 1
        delay = self._connection.delay(self._failures, error)
        remaining = self.remaining()
        return None if remaining is not None and delay >= remaining else delay


class TypedStub:
    """A generated stub with the call policy applied (see the module docstring)."""

    def __init__(self, stub: Any, connection: Connection) -> None:
        self._stub = stub
        self._connection = connection

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        connection = self._connection
        unary = isinstance(method, grpc.UnaryUnaryMultiCallable | grpc.aio.UnaryUnaryMultiCallable)
        is_aio = isinstance(method, _AIO_CALLABLES)

        def invoke(*args: Any, **kwargs: Any) -> Any:
            if connection.api_key:
                kwargs["metadata"] = (*kwargs.get("metadata", ()), *connection.metadata())
            return method(*args, **kwargs)

        if is_aio:
            return functools.wraps(method)(_aio_call(invoke, connection, unary))
        return functools.wraps(method)(_sync_call(invoke, connection, unary))


def _retryable(error: EmbedfleetRpcError, attempt: int, connection: Connection, unary: bool) -> bool:
    return unary and error.code() in RETRIED_CODES and attempt <= connection.retries


def _sync_call(invoke: Callable[..., Any], connection: Connection, unary: bool) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                result = invoke(*args, **kwargs)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if not _retryable(error, attempt, connection, unary):
                    raise error from None
                time.sleep(connection.delay(attempt, error))
                continue
            return _iter(result) if isinstance(result, Iterator) else result

    return call


def _aio_call(invoke: Callable[..., Any], connection: Connection, unary: bool) -> Callable[..., Any]:
    async def call_unary(*args: Any, **kwargs: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await invoke(*args, **kwargs)
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                if not _retryable(error, attempt, connection, True):
                    raise error from None
                await asyncio.sleep(connection.delay(attempt, error))

    def call(*args: Any, **kwargs: Any) -> Any:
        if unary:
            return call_unary(*args, **kwargs)
        result = invoke(*args, **kwargs)
        return _aiter(result) if hasattr(result, "__aiter__") else _await(result)

    return call


def _iter(stream: Iterator[Any]) -> Iterator[Any]:
    try:
        yield from stream
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


async def _await(call: Any) -> Any:
    try:
        return await call
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


async def _aiter(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    try:
        async for item in stream:
            yield item
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


def service_stubs(channel: Any, connection: Connection) -> tuple[Any, Any, Any, Any, Any]:
    """(jobs, embeddings, models, searches, statuses) stubs with the call policy applied."""
    return (
        TypedStub(jobs_pb2_grpc.JobServiceStub(channel), connection),
        TypedStub(embed_pb2_grpc.EmbedServiceStub(channel), connection),
        TypedStub(models_pb2_grpc.ModelServiceStub(channel), connection),
        TypedStub(search_pb2_grpc.SearchServiceStub(channel), connection),
        TypedStub(status_pb2_grpc.StatusServiceStub(channel), connection),
    )


class ClientBase:
    """What the sync and asyncio clients share: how they are configured and their stubs."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float = 60.0,
        api_key: str = "",
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        retries: int = 4,
    ) -> None:
        """``target``: ``host:port``, or ``grpcs://host:port`` for TLS (``ca_file`` to trust a private CA;
        ``cert_file``/``key_file`` for mutual TLS). ``api_key`` is sent with every call. ``timeout`` is
        the deadline of each unary call, in seconds; ``retries`` bounds the retries of UNAVAILABLE and
        RESOURCE_EXHAUSTED answers."""
        self.timeout = timeout
        self.connection = Connection(target, api_key, ca_file, cert_file, key_file, retries)
        self.channel = self._open(self.connection)
        self.jobs, self.embeddings, self.models, self.searches, self.statuses = service_stubs(
            self.channel, self.connection
        )
        self.keys = TypedStub(keys_pb2_grpc.KeyServiceStub(self.channel), self.connection)
        self.collections = TypedStub(collections_pb2_grpc.CollectionServiceStub(self.channel), self.connection)

    def _open(self, connection: Connection) -> Any:
        raise NotImplementedError

    def _method(self, call: Unary[Any] | Paged[Any]) -> Callable[..., Any]:
        """The stub method a ``calls`` entry names, with the call policy applied."""
        return getattr(getattr(self, call.service), call.method)
