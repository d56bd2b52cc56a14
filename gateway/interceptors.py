"""gRPC server interceptors: counts and latency of every RPC by method and final status code; the
tenant gate (API key, role, per-call quotas) every call passes before its servicer.

The servicers answer errors through ``context.abort`` (``gateway/errors.py``), which sets the code on
the context before raising; the interceptor reads it there, so it records exactly the code the
client receives without knowing the error table. Streaming responses are timed until their last
message (or until the call ends without one: CANCELLED).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from embedfleet.gateway import quotas, tenancy
from embedfleet.gateway.auth import Gate
from embedfleet.gateway.errors import rich_status
from embedfleet.metrics import RPC_DURATION, RPC_REQUESTS, TENANT_RPC_REQUESTS

Behavior = Callable[[Any, grpc.ServicerContext], Any]


def _final_code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    # Set by abort/set_code, else None. grpc's server context has code() (1.38+); its stubs lack it.
    code = context.code()  # type: ignore[attr-defined]
    if isinstance(code, grpc.StatusCode):
        return code.name
    return grpc.StatusCode.UNKNOWN.name if error is not None else grpc.StatusCode.OK.name


def _record(method: str, started: float, code: str) -> None:
    RPC_REQUESTS.labels(method, code).inc()
    TENANT_RPC_REQUESTS.labels(tenancy.current().tenant, method, code).inc()  # set by the tenant gate
    RPC_DURATION.labels(method).observe(time.perf_counter() - started)


def _unary_response(method: str, behavior: Behavior) -> Behavior:
    def measured(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            response = behavior(request, context)
        except BaseException as exc:
            _record(method, started, _final_code(context, exc))
            raise
        _record(method, started, _final_code(context, None))
        return response

    return measured


def _streaming_response(method: str, behavior: Behavior) -> Behavior:
    """A stream is recorded once: when its generator ends, or when the call ends without that (the
    client went away and gRPC stopped iterating it: CANCELLED), whichever comes first."""

    def measured(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        recorded = threading.Lock()  # taken by whichever records first

        def record_once(code: str) -> None:
            if recorded.acquire(blocking=False):
                _record(method, started, code)

        context.add_callback(lambda: record_once(grpc.StatusCode.CANCELLED.name))
        try:
            yield from behavior(request, context)
        except BaseException as exc:
            record_once(_final_code(context, exc))
            raise
        record_once(_final_code(context, None))

    return measured


# (request streaming, response streaming) -> a wrapper of the method's behaviour.
Wrap = Callable[[Behavior, bool, bool], Behavior]
Continuation = Callable[[grpc.HandlerCallDetails], "grpc.RpcMethodHandler[Any, Any] | None"]


def _rewrapped(handler: grpc.RpcMethodHandler[Any, Any], wrap: Wrap) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler (codecs, streaming kind) with its behaviour wrapped."""
    codecs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary, False, False), **codecs)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary, True, False), **codecs)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream, False, True), **codecs)
    assert handler.stream_stream is not None
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream, True, True), **codecs)


class RpcMetricsInterceptor(grpc.ServerInterceptor):
    """Wraps each method's handler so its calls land in ``embedfleet_rpc_*`` (unary and streaming)."""

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method: gRPC answers UNIMPLEMENTED itself
        method = handler_call_details.method.lstrip("/")

        def wrap(behavior: Behavior, _requests: bool, responses: bool) -> Behavior:
            return (_streaming_response if responses else _unary_response)(method, behavior)

        return _rewrapped(handler, wrap)


class TenantInterceptor(grpc.ServerInterceptor):
    """Every call but health and reflection passes the gate (``gateway/auth.py``) first: refused ones
    are answered UNAUTHENTICATED, PERMISSION_DENIED or RESOURCE_EXHAUSTED through the error table and
    never reach a servicer. Each request message (each streamed one too) is held to the tenant's
    message size; the servicer answers a streamed one that is too large."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method.lstrip("/")
        if handler is None:
            return None
        gate = self.gate
        public = gate.public(method)

        def admitted(request: Any, context: grpc.ServicerContext, requests: bool) -> Any:
            """The request, once the call is admitted; aborts the call otherwise."""
            if public:
                tenancy.act_as(tenancy.ANONYMOUS)
                return request
            try:
                principal = gate.admit(method, context.invocation_metadata())
                if requests:
                    return quotas.checked_messages(principal.tenant, gate.quota(), request)
                quotas.check_message(principal.tenant, gate.quota(), request.ByteSize())
                return request
            except Exception as exc:
                context.abort_with_status(rich_status(exc))

        def wrap(behavior: Behavior, requests: bool, responses: bool) -> Behavior:
            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                return behavior(admitted(request, context, requests), context)

            def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                yield from behavior(admitted(request, context, requests), context)

            return stream if responses else unary

        return _rewrapped(handler, wrap)
