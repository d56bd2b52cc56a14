"""Domain errors shared by every process.

Code raises these instead of transport-specific errors; the gateway maps each class to one gRPC
status code in a single table (``embedfleet.gateway.errors``), so the mapping cannot drift between
RPCs. Messages are written for the person who sent the request: they say what to change.
"""

# The most characters of one user-supplied value an error message quotes.
MAX_ECHO_CHARS = 80


def echo(value: str) -> str:
    """``value`` quoted for an error message, cut to ``MAX_ECHO_CHARS``: a 10 kB name must not push the
    advice that follows it out of a message the gateway clips, nor out of the reader's view."""
    if len(value) <= MAX_ECHO_CHARS:
        return repr(value)
    return f"{value[:MAX_ECHO_CHARS]!r}… ({len(value)} characters)"


class EmbedfleetError(Exception):
    """Base of every error embedfleet raises on purpose."""


class InvalidArgument(EmbedfleetError):
    """The request itself is wrong (empty text, malformed corpus line, unsupported dimension).

    ``field`` names the request field at fault (``config.chunk_size``) when there is one: the gateway
    sends it as a ``google.rpc.BadRequest`` field violation, so a client can point at it.
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class NotFound(EmbedfleetError):
    """A named thing (job, model, collection, file) does not exist."""


class FailedPrecondition(EmbedfleetError):
    """The request is valid but the system is not in a state to honour it (model/collection mismatch)."""


class _RetryLater(EmbedfleetError):
    """An error after which the same request may succeed later; ``retry_after_s`` says when to try
    (sent as ``google.rpc.RetryInfo``; 0 lets the client choose its backoff)."""

    def __init__(self, message: str, retry_after_s: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ResourceExhausted(_RetryLater):
    """The request is larger than a configured limit, or a quota is used up."""


class Unavailable(_RetryLater):
    """A dependency (Redis, Milvus, the worker pool) cannot be reached now; retrying later may work."""


class Unauthenticated(EmbedfleetError):
    """The call carries no API key, or one that is unknown, malformed or revoked."""


class PermissionDenied(EmbedfleetError):
    """The caller's key is valid but its role does not allow this call."""


class DeadlineExceeded(EmbedfleetError):
    """Work did not finish within the time allowed."""


class Retryable(EmbedfleetError):
    """Raised inside a worker for a transient failure: the chunk is retried, not failed."""
