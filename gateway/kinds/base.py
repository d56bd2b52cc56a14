"""What a job kind's gateway module implements: validate its request and plan the job.

A plan is the fully resolved ``JobSpec`` (so workers never resolve anything again), the number of
parts and the job's total in the kind's progress unit. Inputs a part needs are staged through the
``PartStager`` while planning; if planning fails, the jobs core discards everything staged, so a
refused submission leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from embedfleet.datastore import DataStore
from embedfleet.domain import Document, JobParams, JobSpec, ProgressUnit
from embedfleet.gateway.context import GatewayContext, ResolvedModel
from embedfleet.gateway.kinds.spill import ShardWriter
from embedfleet.jobstore import JobStore


@dataclass(frozen=True)
class JobPlan:
    spec: JobSpec
    total: int
    parts: int
    # Set for jobs that destroy data (a dedup run that deletes rows): the audit action and its details,
    # recorded with the job id once the job exists.
    audit: tuple[str, dict[str, str]] | None = None


class PartStager:
    """Stages part inputs of a job that does not exist yet, and can take them all back: small inputs
    (a distillation's texts) as Redis keys, streamed corpora as Parquet shards in the dataset store."""

    def __init__(self, store: JobStore, job_id: str, data: DataStore, shard_rows: int) -> None:
        self.store = store
        self.job_id = job_id
        self.staged = 0
        self.data = data
        self.shard_rows = shard_rows
        self._shards: ShardWriter | None = None

    def stage(self, part: int, documents: Sequence[Document]) -> None:
        self.store.put_part_input(self.job_id, part, documents)
        self.staged = max(self.staged, part + 1)

    def shards(self) -> ShardWriter:
        """The writer of this submission's corpus shards (one per submission)."""
        if self._shards is None:
            self._shards = ShardWriter(self.data, self.job_id, self.shard_rows)
        return self._shards

    def discard(self) -> None:
        self.store.discard_inputs(self.job_id, self.staged)
        if self._shards is not None:
            self._shards.abandon()
            self.data.remove_job(self.job_id)


@dataclass(frozen=True)
class Submission:
    """What a planner works with besides its request: the gateway's context, the streamed corpus
    (empty for kinds that take none) and where to stage part inputs."""

    ctx: GatewayContext
    stager: PartStager
    documents: Iterator[Document]


R_contra = TypeVar("R_contra", contravariant=True)


class JobPlanner(Protocol[R_contra]):
    """One job kind's gateway side."""

    def plan(self, request: R_contra, sub: Submission) -> JobPlan: ...


def job_spec(
    params: JobParams,
    model: ResolvedModel,
    *,
    unit: ProgressUnit,
    part_size: int = 0,
    part_starts: tuple[int, ...] = (),
    display_name: str = "",
) -> JobSpec:
    """The spec every kind builds the same way from what it resolved."""
    return JobSpec(
        params=params,
        embedding=model.options,
        model_version=model.version,
        output_dimensions=model.output_dimensions,
        part_size=part_size,
        part_starts=part_starts,
        unit=unit,
        display_name=display_name,
    )
