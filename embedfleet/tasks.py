"""The task contract between the gateway's dispatchers and the workers, whatever the queue.

Everything that crosses a queue or travels back through Redis is defined here once:

* the task names Celery routes by, and the typed payload of each (``PartTask``: a job id and a part
  index, never texts or vectors: those stay in the job store);
* ``ErrorKind``, the closed set of error categories a worker reports back (for an interactive Embed's
  reply, a failed part's record). Exception class names never travel: a renamed class would change
  the wire;
* ``retry_delay``, the one backoff both backends use before running a part again, and
  ``RETRY_OUTCOME``, how a Ray actor asks for it.

No Celery, Ray or torch import here: the gateway, the workers and the tests all read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from embedfleet import errors

# Celery task names (the Ray backend calls actor methods of the same meaning).
RUN_PART_TASK = "embedfleet.run_chunk"
EMBED_REQUEST_TASK = "embedfleet.embed_request"

# What a Ray actor's ``run_chunk`` returns for a part that should run again after ``retry_delay``
# (a Celery task schedules its own retry instead); its other outcomes are the runner's ChunkStatus values.
RETRY_OUTCOME = "retry"

MAX_RETRY_DELAY_S = 30.0
# How long a running part's lease lasts unless its owner refreshes it (a third of this apart): a part
# whose worker died is queued again this long after its last refresh, whatever the broker does.
DEFAULT_PART_LEASE_S = 6.0


@dataclass(frozen=True)
class PartTask:
    """One part of one job: what a bulk queue message carries, and all it carries."""

    job_id: str
    part: int

    def to_args(self) -> tuple[str, int]:
        return (self.job_id, self.part)

    @classmethod
    def from_args(cls, job_id: object, part: object) -> PartTask:
        if not isinstance(job_id, str) or not isinstance(part, int) or isinstance(part, bool) or part < 0:
            raise ValueError(f"malformed part task ({job_id!r}, {part!r})")
        return cls(job_id, part)


class ErrorKind(StrEnum):
    """What went wrong, as a category the gateway maps to a status code (see ``gateway/errors.py``)."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    FAILED_PRECONDITION = "failed_precondition"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNAVAILABLE = "unavailable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INTERNAL = "internal"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"


# The one table between domain error classes and their wire kinds (most specific class first wins
# through the MRO walk in ``error_kind``).
_KIND_BY_ERROR: dict[type[errors.EmbedfleetError], ErrorKind] = {
    errors.InvalidArgument: ErrorKind.INVALID_ARGUMENT,
    errors.NotFound: ErrorKind.NOT_FOUND,
    errors.FailedPrecondition: ErrorKind.FAILED_PRECONDITION,
    errors.ResourceExhausted: ErrorKind.RESOURCE_EXHAUSTED,
    errors.Unavailable: ErrorKind.UNAVAILABLE,
    errors.Retryable: ErrorKind.UNAVAILABLE,
    errors.DeadlineExceeded: ErrorKind.DEADLINE_EXCEEDED,
    errors.Unauthenticated: ErrorKind.UNAUTHENTICATED,
    errors.PermissionDenied: ErrorKind.PERMISSION_DENIED,
}
_ERROR_BY_KIND: dict[ErrorKind, type[errors.EmbedfleetError]] = {
    ErrorKind.INVALID_ARGUMENT: errors.InvalidArgument,
    ErrorKind.NOT_FOUND: errors.NotFound,
    ErrorKind.FAILED_PRECONDITION: errors.FailedPrecondition,
    ErrorKind.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    ErrorKind.UNAVAILABLE: errors.Unavailable,
    ErrorKind.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    ErrorKind.INTERNAL: errors.EmbedfleetError,
    ErrorKind.UNAUTHENTICATED: errors.Unauthenticated,
    ErrorKind.PERMISSION_DENIED: errors.PermissionDenied,
}


def error_kind(exc: BaseException) -> ErrorKind:
    """The wire category of an exception; anything that is not a domain error is INTERNAL."""
    for cls in type(exc).__mro__:
        if cls in _KIND_BY_ERROR:
            return _KIND_BY_ERROR[cls]
    return ErrorKind.INTERNAL


def error_for(kind: str, message: str) -> errors.EmbedfleetError:
    """The domain error a reported kind stands for (an unknown kind, from a newer worker, is INTERNAL)."""
    try:
        cls = _ERROR_BY_KIND[ErrorKind(kind)]
    except ValueError:
        cls = errors.EmbedfleetError
    return cls(message)


def retry_delay(failed_attempts: int) -> float:
    """Seconds to wait before running a part again after ``failed_attempts`` failures: 1, 2, 4, ... 30."""
    return min(2.0 ** max(failed_attempts - 1, 0), MAX_RETRY_DELAY_S)
