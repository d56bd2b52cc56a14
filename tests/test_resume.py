"""Resuming a job in the job store (real Redis): parts not done go back to pending, done parts and
their counts stay, failures are cleared; only FAILED or CANCELLED jobs qualify."""

import pytest

from embedfleet.domain import EmbeddingOptions, EmbedParams, JobSpec, JobState
from embedfleet.errors import FailedPrecondition, NotFound
from embedfleet.jobstore import JobStore


def _job(store: JobStore, parts: int = 4) -> str:
    spec = JobSpec(params=EmbedParams(), embedding=EmbeddingOptions(model="m"), output_dimensions=3, part_size=2)
    store.create_job("r1", spec, total=2 * parts, parts=parts)
    store.claim_parts("r1", 0)  # handed to the queue, as the gateway's feeder does
    return "r1"


def test_a_failed_job_resumes_only_its_failed_parts(store: JobStore) -> None:
    job = _job(store)
    with pytest.raises(FailedPrecondition, match="is QUEUED; only FAILED or CANCELLED"):
        store.resume(job)
    for part in range(4):
        store.start_part(job, part)
        if part == 2:
            store.finish_part(job, part, done=0, failed=2, truncated=0, error="bad record")
        else:
            store.finish_part(job, part, done=2, failed=0, truncated=1)
    assert store.get(job).state == JobState.FAILED
    assert store.resume(job) == [2]
    snap = store.get(job)
    assert (snap.state, snap.done, snap.failed, snap.truncated, snap.parts_finished) == (JobState.QUEUED, 6, 0, 3, 3)
    assert snap.failed_parts == [] and snap.error == "" and snap.finished_at is None
    assert store.pending_parts(job) == [2] and job in store.active_jobs()
    store.start_part(job, 2)
    store.finish_part(job, 2, done=2, failed=0, truncated=0)
    assert (store.get(job).state, store.get(job).done) == (JobState.SUCCEEDED, 8)
    assert store.get(job).error == ""


def test_a_cancelled_job_resumes_its_unstarted_and_interrupted_parts(store: JobStore) -> None:
    job = _job(store)
    store.start_part(job, 0)
    store.finish_part(job, 0, done=2, failed=0, truncated=0)
    store.start_part(job, 1)  # running when the job is cancelled
    store.cancel(job)
    assert store.resume(job) == [1, 2, 3]
    assert (store.get(job).state, store.get(job).done) == (JobState.QUEUED, 2)
    with pytest.raises(NotFound):
        store.resume("nope")
