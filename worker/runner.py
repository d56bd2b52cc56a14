"""The part lifecycle, the same for every job kind and free of any queue.

Celery tasks and Ray actors call ``run_part``/``fail_part``/``embed_request`` and do nothing else
but translate ``RetryPart`` into their own retry mechanism. Every rule about exactly-once counting,
cancellation and failure reporting is here (with the atomic steps in the job store), so both
backends behave the same; what a part *does* is its kind's module in ``worker/kinds``.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import redis

from embedfleet.domain import EmbeddingOptions
from embedfleet.errors import EmbedfleetError, Retryable, Unavailable
from embedfleet.heartbeat import Heartbeat
from embedfleet.jobstore import StartOutcome
from embedfleet.logs import in_part_context
from embedfleet.tasks import DEFAULT_PART_LEASE_S, error_kind, retry_delay
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
    """The adapter must run this part again after ``delay_s`` (a transient failure with attempts
    left, or another runner holding the part right now)."""

    def __init__(self, message: str, delay_s: float) -> None:
        super().__init__(message)
        self.delay_s = delay_s


# Errors after which the same part may well succeed later: Milvus or the job store unreachable.
_TRANSIENT = (Retryable, Unavailable, redis.RedisError)


class PartRunner:
    """Runs parts for one worker process. ``owner`` names the process in the leases it takes;
    ``lease_s`` is how long a lease lasts unless refreshed (every third of it while a part runs)."""

    def __init__(self, ctx: WorkerContext, max_attempts: int, owner: str = "", lease_s: float = DEFAULT_PART_LEASE_S):
        self.ctx = ctx
        self.store = ctx.store
        self.max_attempts = max_attempts
        self.owner = owner or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_s = lease_s

    @in_part_context
    def run_part(self, job_id: str, part_index: int) -> PartOutcome:
        """Process one part exactly once as far as anyone can observe.

        Attempts are counted by the job store at each start (so a worker killed mid-part counts too).
        On a transient failure with attempts left this raises ``RetryPart`` and counts nothing;
        otherwise the failure is recorded on the job. No error escapes as anything but ``RetryPart``
        (a job store error included): a queue must never acknowledge a part that was not recorded.
        """
        owner = f"{self.owner}:{uuid.uuid4().hex[:8]}"
        try:
            start = self.store.start_part(job_id, part_index, owner, self.lease_s)
        except redis.RedisError as exc:
            log.warning("job %s part %d: the job store could not start it: %s; will retry", job_id, part_index, exc)
            raise RetryPart(f"starting the part failed: {exc}", retry_delay(1)) from exc
        if start.outcome == StartOutcome.BUSY:
            delay = start.busy_for_ms / 1000 + 0.5
            log.info("job %s part %d: another worker runs it; trying again in %.1f s", job_id, part_index, delay)
            raise RetryPart("another worker holds the part's lease", delay)
        if start.spec is None:
            log.info("job %s part %d skipped: %s", job_id, part_index, start.outcome.value)
            return PartOutcome(PartStatus.SKIPPED, reason=start.outcome.value)
        part = Part(
            job_id,
            part_index,
            start.spec,
            start.total,
            start.parts_total,
            start.attempts,
            last_attempt=start.attempts >= self.max_attempts,
        )
        if start.attempts > self.max_attempts:
            return self._record_failure(
                part,
                owner,
                f"gave up after {start.attempts - 1} attempts: each time its worker died before finishing it "
                "(killed, e.g. out of memory); see the worker logs",
            )
        if start.outcome == StartOutcome.RETRY:
            log.warning("job %s part %d: attempt %d after an unfinished one", job_id, part_index, start.attempts)
        lease = Heartbeat(
            lambda: self.store.refresh_part_lease(job_id, part_index, owner, self.lease_s),
            self.lease_s / 3,
            f"lease-{job_id}-{part_index}",
        )
        with lease:
            return self._run(part, owner)

    def _run(self, part: Part, owner: str) -> PartOutcome:
        try:
            with self.ctx.breaker.guard():
                result = HANDLERS[part.spec.kind].run(part, self.ctx)
            self.store.finish_part(
                part.job_id,
                part.index,
                done=result.done,
                failed=len(result.failures),
                truncated=result.truncated,
                document_failures=result.failures,
            )
        except PartCancelled as exc:
            log.info("%s", exc)
            self._quietly(lambda: self.store.end_part_lease(part.job_id, part.index, owner))
            return PartOutcome(PartStatus.SKIPPED, reason="cancelled")
        except Exception as exc:
            transient = isinstance(exc, _TRANSIENT) or not isinstance(exc, EmbedfleetError)
            if not isinstance(exc, EmbedfleetError):  # a bug or an environment fault: retried, then reported
                log.exception("job %s part %d attempt %d failed", part.job_id, part.index, part.attempt)
            message = str(exc) if isinstance(exc, EmbedfleetError) else f"{type(exc).__name__}: {exc}"
            if not (transient and part.attempt < self.max_attempts):
                return self._record_failure(part, owner, message)
            log.warning("job %s part %d attempt %d: %s; will retry", part.job_id, part.index, part.attempt, message)
            delay = retry_delay(part.attempt)
            # Held until the retry arrives (or it lapses and the recovery loop queues the part again). While
            # the breaker is open, the part this process runs next may wait out the rest of the outage budget
            # before the retry's turn comes (a Celery process runs one part at a time): the lease covers that
            # wait too, or the recovery loop would queue the part a second time behind it.
            held_s = delay + self.lease_s + self.ctx.breaker.hold_left_s
            self._quietly(lambda: self.store.end_part_lease(part.job_id, part.index, owner, held_s))
            raise RetryPart(message, delay) from exc
        log.info("part done: %d %s", result.done, part.spec.unit.value)
        return PartOutcome(PartStatus.DONE, units=result.done)

    def _record_failure(self, part: Part, owner: str, message: str) -> PartOutcome:
        units = part.units[1]
        try:
            self.store.finish_part(
                part.job_id, part.index, done=0, failed=units, truncated=0, error=message, unit=part.spec.unit.value
            )
        except redis.RedisError as exc:  # not recorded: the part must come back, not be acknowledged
            self._quietly(lambda: self.store.end_part_lease(part.job_id, part.index, owner, self.lease_s))
            raise RetryPart(f"recording the failure failed: {exc}", retry_delay(part.attempt)) from exc
        return PartOutcome(PartStatus.FAILED, units=units, reason=message)

    @staticmethod
    def _quietly(step: Callable[[], object]) -> None:
        """A lease step on the way out: if Redis refuses it, the lease simply lapses on its own."""
        try:
            step()
        except redis.RedisError:
            log.warning("could not update a part's lease; it will lapse", exc_info=True)

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
