"""Domain errors shared by every process.

Code raises these instead of transport-specific errors; the gateway maps each class to one gRPC
status code in a single table (``embedfleet.gateway.errors``), so the mapping cannot drift between
RPCs. Messages are written for the person who sent the request: they say what to change.
"""


class EmbedfleetError(Exception):
    """Base of every error embedfleet raises on purpose."""


class InvalidArgument(EmbedfleetError):
    """The request itself is wrong (empty text, malformed corpus line, unsupported dimension)."""


class NotFound(EmbedfleetError):
    """A named thing (job, model, collection, file) does not exist."""


class FailedPrecondition(EmbedfleetError):
    """The request is valid but the system is not in a state to honour it (model/collection mismatch)."""


class ResourceExhausted(EmbedfleetError):
    """The request is larger than a configured limit."""


class Unavailable(EmbedfleetError):
    """A dependency (Redis, Milvus, the worker pool) cannot be reached now; retrying later may work."""


class DeadlineExceeded(EmbedfleetError):
    """Work did not finish within the time allowed."""


class Retryable(EmbedfleetError):
    """Raised inside a worker for a transient failure: the chunk is retried, not failed."""
