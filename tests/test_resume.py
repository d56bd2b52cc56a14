"""Resuming a job in the job store (real Redis): parts not done go back to pending, done parts and
their counts stay, failures are cleared; only FAILED or CANCELLED jobs qualify."""

import pytest

from embedfleet.domain import (
    ClusterParams,
    CorpusFormat,
    CorpusRef,
    DedupParams,
    DistillParams,
    EmbeddingOptions,
    EmbedParams,
    EvaluateParams,
    IndexParams,
    JobSpec,
    JobState,
    ResultsRef,
)
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


def test_a_job_whose_every_part_finished_is_not_resumed(store: JobStore) -> None:
    """A part running at the cancel finishes and is counted; when it was the last one, resuming would leave a
    QUEUED job with nothing to run (stuck for ever): refused, and the job stays as it was."""
    job = _job(store, parts=2)
    store.start_part(job, 0)
    store.finish_part(job, 0, done=2, failed=0, truncated=0)
    store.start_part(job, 1)
    store.cancel(job)
    store.finish_part(job, 1, done=2, failed=0, truncated=0)
    with pytest.raises(FailedPrecondition, match="no part left to run"):
        store.resume(job)
    assert store.get(job).state == JobState.CANCELLED and job not in store.active_jobs()


def test_which_kinds_resume() -> None:
    """ResumeJob needs inputs that outlive the parts: a corpus by reference or a collection, not texts staged
    with a part (index/embed without a reference, distill)."""
    ref = ResultsRef(filesystem="/tmp", directory="/tmp/r")
    corpus = CorpusRef(filesystem="/tmp", format=CorpusFormat.JSONL, files=(), max_text_bytes=1)
    assert IndexParams(collection="c", corpus=corpus).resumable and EmbedParams(corpus=corpus).resumable
    assert not IndexParams(collection="c").resumable and not EmbedParams().resumable
    assert ClusterParams(collection="c", results=ref).resumable
    assert DedupParams(collection="c", threshold=0.9, output=ref).resumable
    assert EvaluateParams(model="m", eval_limit=10).resumable
    distill = DistillParams(
        teacher="t", student_name="s", keep_layers=1, steps=1, batch_size=1, learning_rate=1e-4,
        min_quality_fraction=0.9, eval_limit=1,
    )  # fmt: skip
    assert not distill.resumable
