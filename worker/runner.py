"""The part lifecycle, the same for every job kind and free of any queue.

Celery tasks and Ray actors call ``run_part``/``fail_part``/``embed_request`` and do nothing else
but translate ``RetryPart`` into their own retry mechanism. Every rule about exactly-once counting,
cancellation and failure reporting is here (with the atomic steps in the job store), so both
backends behave the same; what a part *does* is its kind's module in ``worker/kinds``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from embedfleet.domain import EmbeddingOptions
from embedfleet.errors import EmbedfleetError, Retryable
from embedfleet.jobstore import StartOutcome
from embedfleet.tasks import error_kind
from embedfleet.wire import pack_vectors
from embedfleet.worker.embedding import embed_texts
from embedfleet.worker.kinds import HANDLERS
from embedfleet.worker.kinds.base import Part, PartCancelled, WorkerContext

log = logging.getLogger(__name__)

REQUEST_REPLY_TTL_S = 60


class PartStatus(StrEnum):
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class PartOutcome:
    status: PartStatus
    units: int = 0
    reason: str = ""


class RetryPart(Exception):
    """The adapter must run this part again later (a transient failure, attempts left)."""


class PartRunner:
    def __init__(self, ctx: WorkerContext, max_attempts: int) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.max_attempts = max_attempts

    def run_part(self, job_id: str, part_index: int, attempt: int = 1) -> PartOutcome:
        """Process one part exactly once as far as anyone can observe.

        ``attempt`` counts from 1; on a transient failure with attempts left this raises
        ``RetryPart`` and changes nothing, otherwise the failure is recorded on the job.
        """
        start = self.store.start_part(job_id, part_index)
        if start.spec is None:
            log.info("job %s part %d skipped: %s", job_id, part_index, start.outcome.value)
            return PartOutcome(PartStatus.SKIPPED, reason=start.outcome.value)
        if start.outcome == StartOutcome.RETRY:
            log.warning("job %s part %d: running again after an unfinished attempt", job_id, part_index)
        part = Part(
            job_id, part_index, start.spec, start.total, start.parts_total, attempt, attempt >= self.max_attempts
        )
        try:
            result = HANDLERS[part.spec.kind].run(part, self.ctx)
        except PartCancelled as exc:
            log.info("%s", exc)
            return PartOutcome(PartStatus.SKIPPED, reason="cancelled")
        except EmbedfleetError as exc:
            if isinstance(exc, Retryable) and attempt < self.max_attempts:
                log.warning("job %s part %d attempt %d: %s; will retry", job_id, part_index, attempt, exc)
                raise RetryPart(str(exc)) from exc
            return self._fail(part, str(exc))
        except Exception as exc:  # a bug or an environment fault: retry, then report it on the job
            log.exception("job %s part %d attempt %d failed", job_id, part_index, attempt)
            if attempt < self.max_attempts:
                raise RetryPart(repr(exc)) from exc
            return self._fail(part, f"{type(exc).__name__}: {exc}")
        self.store.finish_part(
            job_id,
            part_index,
            done=result.done,
            failed=len(result.failures),
            truncated=result.truncated,
            document_failures=result.failures,
        )
        return PartOutcome(PartStatus.DONE, units=result.done)

    def _fail(self, part: Part, message: str) -> PartOutcome:
        units = part.units[1]
        self.store.finish_part(
            part.job_id, part.index, done=0, failed=units, truncated=0, error=message, unit=part.spec.unit.value
        )
        return PartOutcome(PartStatus.FAILED, units=units, reason=message)

    def fail_part(self, job_id: str, part_index: int, message: str) -> None:
        """Record a part as failed when the adapter gives up on it (e.g. its worker kept dying)."""
        self.store.fail_part(job_id, part_index, message)

    def embed_request(self, request_id: str) -> None:
        """Answer an interactive Embed; errors go back to the waiting gateway, never raised."""
        payload = self.store.take_request(request_id)
        if payload is None:
            return  # the caller timed out and withdrew the request
        try:
            options = EmbeddingOptions.model_validate(payload["options"])
            dimensions = int(payload["dimensions"])  # type: ignore[call-overload]
            texts = payload["texts"]
            assert isinstance(texts, list)
            encoder = self.ctx.host.get(self.ctx.registry().resolve(options.model))
            out = embed_texts(
                encoder,
                texts,
                input_type=options.input_type,
                dimensions=dimensions,
                precision=options.precision,
                normalize=options.normalize,
            )
        except Exception as exc:
            if not isinstance(exc, EmbedfleetError):
                log.exception("embed request %s failed", request_id)
            reply: dict[str, object] = {"error": error_kind(exc).value, "message": str(exc) or repr(exc)}
            self.store.reply(request_id, reply, b"", REQUEST_REPLY_TTL_S)
            return
        header: dict[str, object] = {
            "model": out.model,
            "version": out.version,
            "dimensions": dimensions,
            "precision": options.precision.value,
            "truncated": out.truncated,
        }
        self.store.reply(request_id, header, pack_vectors(out.vectors, options.precision), REQUEST_REPLY_TTL_S)
