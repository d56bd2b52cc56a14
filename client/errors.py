"""Typed exceptions for the SDK: every server error arrives as one of these (all ``grpc.RpcError``,
so code written against plain gRPC keeps working), with the ``google.rpc`` details decoded.

    try:
        client.embed(["..."], dimensions=5)
    except InvalidArgument as exc:
        print(exc.field_violations)   # {"options.dimensions": "model ... cannot output 5 dimensions"}
    except Unavailable as exc:
        time.sleep(exc.retry_after or 1)
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class EmbedfleetRpcError(grpc.RpcError):
    """A gRPC error from the gateway: ``code()``, ``details()``, and the decoded rich details."""

    def __init__(
        self, code: grpc.StatusCode, message: str, field_violations: dict[str, str], retry_after: float | None
    ):
        super().__init__(message)
        self._code = code
        self._message = message
        self.field_violations = field_violations
        self.retry_after = retry_after

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def __str__(self) -> str:
        return f"{self._code.name}: {self._message}"


class InvalidArgument(EmbedfleetRpcError):
    """The request is wrong; ``field_violations`` maps each faulty field to what is wrong with it."""


class NotFound(EmbedfleetRpcError):
    """A job, model or collection does not exist."""


class FailedPrecondition(EmbedfleetRpcError):
    """Valid request, but the system is not in a state to honour it (e.g. a collection of another model)."""


class ResourceExhausted(EmbedfleetRpcError):
    """A limit or quota; ``retry_after`` says when trying again may succeed."""


class Unavailable(EmbedfleetRpcError):
    """The gateway or a dependency is unreachable now; ``retry_after`` says when to try again."""


class DeadlineExceeded(EmbedfleetRpcError):
    """The call did not finish within its deadline."""


class Cancelled(EmbedfleetRpcError):
    """The call was cancelled."""


class Internal(EmbedfleetRpcError):
    """A server bug or an unexpected error (see the gateway log)."""


class Unauthenticated(EmbedfleetRpcError):
    """No API key, or an unknown, malformed or revoked one: pass ``api_key`` (``--api-key``)."""


class PermissionDenied(EmbedfleetRpcError):
    """The API key's role does not allow the call (reader < writer < admin)."""


_BY_CODE: dict[grpc.StatusCode, type[EmbedfleetRpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


def from_rpc_error(exc: grpc.RpcError) -> EmbedfleetRpcError:
    """The typed exception for a raw gRPC error, with BadRequest and RetryInfo details decoded."""
    if isinstance(exc, EmbedfleetRpcError):
        return exc
    code: grpc.StatusCode = exc.code()
    message: str = exc.details() or ""
    violations: dict[str, str] = {}
    retry_after: float | None = None
    status = rpc_status.from_call(exc) if hasattr(exc, "trailing_metadata") else None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.update({v.field: v.description for v in bad.field_violations})
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            retry_after = info.retry_delay.ToNanoseconds() / 1e9
    return _BY_CODE.get(code, Internal)(code, message, violations, retry_after)
