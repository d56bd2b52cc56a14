"""The one error table, and the rich details the SDK turns into typed exceptions. Pure: no services."""

from __future__ import annotations

import grpc
import pytest
import redis
from google.rpc import error_details_pb2

from embedfleet import errors
from embedfleet.client import errors as client_errors
from embedfleet.gateway.errors import MAX_MESSAGE_CHARS, STATUS_BY_ERROR, rich_status, status_for
from embedfleet.tasks import ErrorKind, error_for, error_kind


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.InvalidArgument("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.NotFound("x"), grpc.StatusCode.NOT_FOUND),
        (errors.FailedPrecondition("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.ResourceExhausted("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.Retryable("x"), grpc.StatusCode.UNAVAILABLE),
        (errors.DeadlineExceeded("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (redis.exceptions.ConnectionError("down"), grpc.StatusCode.UNAVAILABLE),
        (KeyError("bug"), grpc.StatusCode.INTERNAL),
        (errors.EmbedfleetError("x"), grpc.StatusCode.INTERNAL),
    ],
)
def test_error_table(exc: BaseException, code: grpc.StatusCode) -> None:
    assert status_for(exc)[0] == code


def test_every_domain_error_has_a_status_and_a_wire_kind() -> None:
    for cls in STATUS_BY_ERROR:
        assert error_kind(cls("m")) != ErrorKind.INTERNAL
        assert isinstance(error_for(error_kind(cls("m")).value, "m"), errors.EmbedfleetError)
    assert type(error_for("not_found", "gone")) is errors.NotFound
    assert type(error_for("from-a-newer-worker", "x")) is errors.EmbedfleetError


def test_internal_errors_do_not_leak_details() -> None:
    code, message = status_for(RuntimeError("/secret/path"))
    assert code == grpc.StatusCode.INTERNAL and "/secret/path" not in message


def test_long_messages_are_clipped() -> None:
    _, message = status_for(errors.InvalidArgument("x" * 100_000))
    assert len(message) <= MAX_MESSAGE_CHARS and message.endswith("(truncated)")


class _FakeCall(grpc.RpcError):
    """What a failed call looks like to the client: code, details, trailing metadata."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return tuple(self._status.trailing_metadata)


def test_field_violations_reach_the_sdk() -> None:
    status = rich_status(errors.InvalidArgument("chunk_size 9999 exceeds the limit 4096", "config.chunk_size"))
    typed = client_errors.from_rpc_error(_FakeCall(status))
    assert isinstance(typed, client_errors.InvalidArgument) and isinstance(typed, grpc.RpcError)
    assert typed.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert typed.field_violations == {"config.chunk_size": "chunk_size 9999 exceeds the limit 4096"}


def test_retry_info_reaches_the_sdk() -> None:
    typed = client_errors.from_rpc_error(_FakeCall(rich_status(errors.Unavailable("Milvus down", retry_after_s=2.5))))
    assert isinstance(typed, client_errors.Unavailable) and typed.retry_after == 2.5
    exhausted = client_errors.from_rpc_error(_FakeCall(rich_status(errors.ResourceExhausted("quota"))))
    assert isinstance(exhausted, client_errors.ResourceExhausted) and exhausted.retry_after == 1.0
    plain = client_errors.from_rpc_error(_FakeCall(rich_status(errors.NotFound("job x"))))
    assert isinstance(plain, client_errors.NotFound) and plain.retry_after is None and not plain.field_violations
    assert error_details_pb2.RetryInfo  # the detail type the gateway sends
