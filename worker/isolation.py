"""Poison documents: when a batch fails because of what one document holds, find it by bisection
and fail that document alone, so the rest of its part is still written.

A part of 256 documents used to fail whole because one text made the model or Milvus raise; its
255 good documents were reported failed with it. Both document kinds (index, embed) run their
per-batch work through ``isolate``: the batch is tried whole, and on an error that may belong to
one document it is split in halves, recursively, down to single documents.

Which errors split:

* a refusal of the input (``InvalidArgument``, ``ResourceExhausted``): at once, on any attempt;
* a transient or unexpected error (``Retryable``, any non-domain exception): only once the part's
  retries are spent (``retries_spent``); before that the runner retries the whole part, as ever;
* never an error about the whole part (``FailedPrecondition``, ``NotFound``, a cancel): splitting
  cannot help and would only multiply the work.

An error that is not one document's (Milvus down on the last attempt) fails both halves of a
range entirely; ``isolate`` then re-raises it as the part's failure instead of reporting every
document on its own, so the cost of trying is a handful of calls, not one per document.
Retrying halves is safe: index writes are upserts by document id, embed outputs are kept only for
the batches that succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from embedfleet.domain import Document, DocumentFailure
from embedfleet.errors import EmbedfleetError, InvalidArgument, ResourceExhausted, Retryable

T = TypeVar("T")

MAX_REASON_CHARS = 500  # a failure's reason is stored per document: keep it a sentence, not a dump


@dataclass
class Isolated(Generic[T]):
    """The batches that succeeded, in document order, each with what the work returned for it, and
    the documents that failed on their own."""

    done: list[tuple[list[Document], T]] = field(default_factory=list)
    failures: list[DocumentFailure] = field(default_factory=list)

    @property
    def documents(self) -> list[Document]:
        return [doc for batch, _ in self.done for doc in batch]

    def extend(self, other: Isolated[T]) -> None:
        self.done.extend(other.done)
        self.failures.extend(other.failures)


def _splits(exc: Exception, retries_spent: bool) -> bool:
    """Whether ``exc`` may be one document's fault (see the module docstring)."""
    if isinstance(exc, InvalidArgument | ResourceExhausted):
        return True
    if isinstance(exc, Retryable) or not isinstance(exc, EmbedfleetError):
        return retries_spent
    return False


def _reason(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, EmbedfleetError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def isolate(docs: Sequence[Document], work: Callable[[list[Document]], T], *, retries_spent: bool) -> Isolated[T]:
    """Run ``work`` on ``docs``, failing only the documents that make it raise (see the module docstring).

    Raises what ``work`` raised when the error is not one documents' (or all of them fail with it)."""
    batch = list(docs)
    try:
        return Isolated(done=[(batch, work(batch))])
    except Exception as exc:
        if not _splits(exc, retries_spent):
            raise
        if len(batch) == 1:
            return Isolated(failures=[DocumentFailure(id=batch[0].id, message=_reason(exc))])
        middle = len(batch) // 2
        left = isolate(batch[:middle], work, retries_spent=retries_spent)
        right = isolate(batch[middle:], work, retries_spent=retries_spent)
        if len(batch) > 2 and not left.done and not right.done:
            raise  # every document fails alike: the fault is the part's, not a document's
        left.extend(right)
        return left
