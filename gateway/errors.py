"""The one table from domain errors to gRPC status codes, and the decorator that applies it.

Servicers raise domain errors and never build statuses themselves, so every RPC answers the same
condition with the same code. Statuses carry ``google.rpc`` rich details where they help a client
act: ``BadRequest`` field violations for INVALID_ARGUMENT (when the error names a field) and
``RetryInfo`` for UNAVAILABLE and RESOURCE_EXHAUSTED; the SDK turns them into typed exceptions.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import grpc
import redis
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from embedfleet import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.EmbedfleetError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.Retryable: grpc.StatusCode.UNAVAILABLE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}
# A client retrying an UNAVAILABLE/RESOURCE_EXHAUSTED answer waits at least this long unless the
# error says otherwise.
DEFAULT_RETRY_DELAY_S = 1.0
# Error messages quote user input; past this they are cut, so a huge input cannot hide the error
# behind a message larger than the client accepts.
MAX_MESSAGE_CHARS = 2000


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls], _clip(str(exc))
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return grpc.StatusCode.UNAVAILABLE, f"the job store (Redis) is unreachable: {exc}"
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the gateway log"


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[: MAX_MESSAGE_CHARS - 15] + " … (truncated)"


def _details(exc: BaseException, code: grpc.StatusCode) -> list[any_pb2.Any]:
    details = []
    field = getattr(exc, "field", "")
    if code == grpc.StatusCode.INVALID_ARGUMENT and field:
        violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=_clip(str(exc)))
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        details.append(packed)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        delay = getattr(exc, "retry_after_s", 0.0) or DEFAULT_RETRY_DELAY_S
        retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration())
        retry.retry_delay.FromNanoseconds(int(delay * 1e9))
        packed = any_pb2.Any()
        packed.Pack(retry)
        details.append(packed)
    return details


def rich_status(exc: BaseException) -> grpc.Status:
    """The status (code, message and rich details) an exception is answered with."""
    code, message = status_for(exc)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=_details(exc, code))
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, grpc.RpcError) and not context.is_active():
        # Reading the request stream failed because the client went away: nothing to answer.
        context.abort(grpc.StatusCode.CANCELLED, "the client cancelled the call")
    status = rich_status(exc)
    if status.code == grpc.StatusCode.INTERNAL:
        log.exception("unexpected error in RPC")
    context.abort_with_status(status)


def translate_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method (unary or server-streaming) so domain errors become statuses."""
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except Exception as exc:
                _abort(context, exc)

        return stream

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _abort(context, exc)

    return unary
