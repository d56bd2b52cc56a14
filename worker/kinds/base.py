"""What a job kind's worker module implements, and the services every kind may use.

A kind's module runs *one part* of its jobs and returns what it counted; the part lifecycle (start
once, count once, retry, fail, cancel) is ``worker/runner.py``'s and is the same for every kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from embedfleet.domain import DocumentFailure, JobSpec, JobState, part_range
from embedfleet.errors import EmbedfleetError, FailedPrecondition, NotFound
from embedfleet.jobstore import JobStore
from embedfleet.model_store import ModelStore
from embedfleet.registry import ModelRegistry
from embedfleet.worker.embedding import EmbedOutput, embed_texts
from embedfleet.worker.milvus_guard import MilvusBreaker
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.models.base import Encoder
from embedfleet.worker.models.host import ModelHost


class PartCancelled(EmbedfleetError):
    """The job was cancelled while its part ran; the part stops and records nothing more."""


def check_cancelled(ctx: WorkerContext, part: Part) -> None:
    """Stop a part whose job was cancelled while it ran (raise ``PartCancelled``); called between units
    of work (a Milvus write, a batch of rows), so a cancelled job stops writing within one of them. It reads
    the state field only: it runs on the hot path, and a job's snapshot carries its whole spec."""
    state = ctx.store.job_state(part.job_id)
    if state is None:
        raise NotFound(f"job {part.job_id!r} does not exist (or expired)")
    if state == JobState.CANCELLED:
        raise PartCancelled(f"job {part.job_id} was cancelled")


@dataclass(frozen=True)
class Part:
    """One part of one job, as ``start_part`` handed it over (no further read of the job needed)."""

    job_id: str
    index: int
    spec: JobSpec
    total: int
    parts_total: int
    attempt: int
    last_attempt: bool = False  # a failure now fails the part: time to isolate a poison document

    @property
    def units(self) -> tuple[int, int]:
        """(first unit, count) of the job's progress this part covers."""
        return part_range(self.spec, self.total, self.parts_total, self.index)


@dataclass(frozen=True)
class PartResult:
    """What a finished part adds to its job's counters (units reported while running are not repeated)."""

    done: int
    truncated: int = 0
    # Documents that failed on their own (``worker/isolation.py``); counted as failed, not done.
    failures: tuple[DocumentFailure, ...] = ()


@dataclass
class WorkerContext:
    """The services of one worker process that parts use; built once per process."""

    store: JobStore
    registry: Callable[[], ModelRegistry]
    host: ModelHost
    sink: Callable[[], MilvusSink]
    model_store: ModelStore
    device: str
    data_dir: Path | None = None
    write_rows: int = 128  # documents per Milvus upsert inside a part (index parts write as they embed)
    distill_checkpoint_steps: int = 100  # training steps between a distill part's checkpoints
    # Holds parts through a Milvus outage (``sink`` waits on it); the default never opens: no server to probe.
    breaker: MilvusBreaker = field(default_factory=lambda: MilvusBreaker("", lambda: True, outage_budget_s=0))

    def encoder(self, spec: JobSpec) -> Encoder:
        """The job's model, as the gateway resolved it: a registry entry re-pinned since submission
        (a newly promoted version under the same name) would mix two vector spaces in one job."""
        model = self.registry().resolve(spec.embedding.model)
        pin = model.checksum or model.revision
        if spec.model_version and pin != spec.model_version:
            raise FailedPrecondition(
                f"model {model.name!r} is now {pin or 'unpinned'}, but the job was submitted for "
                f"{spec.model_version}; resubmit the job"
            )
        return self.host.get(model)

    def embed(self, spec: JobSpec, texts: list[str]) -> tuple[Encoder, EmbedOutput]:
        """The job's representation of ``texts`` (and the encoder, for further representations)."""
        encoder = self.encoder(spec)
        options = spec.embedding
        out = embed_texts(
            encoder,
            texts,
            input_type=options.input_type,
            dimensions=spec.output_dimensions,
            precision=options.precision,
            normalize=options.normalize,
        )
        return encoder, out


class PartHandler(Protocol):
    """One job kind's worker side: run one part, return what it counted; raise domain errors
    (``Retryable`` for transient ones) and ``PartCancelled`` when the job was cancelled under it."""

    def run(self, part: Part, ctx: WorkerContext) -> PartResult: ...
