"""gRPC server interceptors: counts and latency of every RPC by method and final status code.

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

from embedfleet.metrics import RPC_DURATION, RPC_REQUESTS

Behavior = Callable[[Any, grpc.ServicerContext], Any]


def _final_code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    # Set by abort/set_code, else None. grpc's server context has code() (1.38+); its stubs lack it.
    code = context.code()  # type: ignore[attr-defined]
    if isinstance(code, grpc.StatusCode):
        return code.name
    return grpc.StatusCode.UNKNOWN.name if error is not None else grpc.StatusCode.OK.name


def _record(method: str, started: float, code: str) -> None:
    RPC_REQUESTS.labels(method, code).inc()
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


class RpcMetricsInterceptor(grpc.ServerInterceptor):
    """Wraps each method's handler so its calls land in ``embedfleet_rpc_*`` (unary and streaming)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # an unknown method: gRPC answers UNIMPLEMENTED itself
        method = handler_call_details.method.lstrip("/")
        codecs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(_unary_response(method, handler.unary_unary), **codecs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(_unary_response(method, handler.stream_unary), **codecs)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(_streaming_response(method, handler.unary_stream), **codecs)
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(_streaming_response(method, handler.stream_stream), **codecs)
