"""The job store's state machine against the real Redis."""

import numpy as np
import pytest

from embedfleet.domain import Document, EmbeddingOptions, EmbedParams, JobSpec, JobState, Precision
from embedfleet.errors import InvalidArgument, NotFound
from embedfleet.jobstore import JobStore, PartVectors, StartOutcome
from embedfleet.wire import pack_vectors


def _job(store: JobStore, job_id: str = "j1", total: int = 5, chunk_size: int = 2) -> None:
    spec = JobSpec(
        params=EmbedParams(), embedding=EmbeddingOptions(model="m"), output_dimensions=3, part_size=chunk_size
    )
    chunks = -(-total // chunk_size)
    for c in range(chunks):
        count = min(chunk_size, total - c * chunk_size)
        store.put_part_input(job_id, c, [Document(id=f"{c}-{i}", text="t") for i in range(count)])
    store.create_job(job_id, spec, total=total, parts=chunks)


def test_lifecycle_to_succeeded(store: JobStore) -> None:
    _job(store)
    snap = store.get("j1")
    assert (snap.state, snap.parts_total, snap.total) == (JobState.QUEUED, 3, 5)
    assert store.start_part("j1", 0).outcome == StartOutcome.FIRST
    assert store.get("j1").state == JobState.RUNNING
    assert store.finish_part("j1", 0, done=2, failed=0, truncated=1)
    for c, n in ((1, 2), (2, 1)):
        store.start_part("j1", c)
        store.finish_part("j1", c, done=n, failed=0, truncated=0)
    snap = store.get("j1")
    assert (snap.state, snap.done, snap.truncated, snap.parts_finished) == (JobState.SUCCEEDED, 5, 1, 3)
    assert snap.finished_at is not None and snap.docs_per_second() > 0
    assert store.active_jobs() == []


def test_a_chunk_is_counted_once(store: JobStore) -> None:
    _job(store)
    store.start_part("j1", 0)
    assert store.finish_part("j1", 0, done=2, failed=0, truncated=0)
    assert not store.finish_part("j1", 0, done=2, failed=0, truncated=0)
    assert store.get("j1").done == 2
    assert store.start_part("j1", 0).outcome == StartOutcome.FINISHED  # a duplicate delivery is skipped


def test_an_unfinished_chunk_is_a_retry(store: JobStore) -> None:
    _job(store)
    assert store.start_part("j1", 1).outcome == StartOutcome.FIRST
    assert store.start_part("j1", 1).outcome == StartOutcome.RETRY


def test_failure_names_the_chunk(store: JobStore) -> None:
    _job(store)
    for c in range(3):
        store.start_part("j1", c)
    store.finish_part("j1", 0, done=2, failed=0, truncated=0)
    store.finish_part("j1", 1, done=0, failed=2, truncated=0, error="FailedPrecondition: boom")
    store.finish_part("j1", 2, done=1, failed=0, truncated=0)
    snap = store.get("j1")
    assert snap.state == JobState.FAILED
    assert "1 of 3 chunks failed (2 documents not processed)" in snap.error
    [failure] = snap.failed_parts
    assert (failure.part, failure.first_unit, failure.units) == (1, 2, 2)
    assert failure.message == "FailedPrecondition: boom"


def test_cancel_stops_unstarted_chunks(store: JobStore) -> None:
    _job(store)
    store.start_part("j1", 0)
    assert store.cancel("j1").state == JobState.CANCELLED
    assert store.start_part("j1", 1).outcome == StartOutcome.CANCELLED
    # The running chunk may still finish; it is counted but the job stays cancelled.
    store.finish_part("j1", 0, done=2, failed=0, truncated=0)
    snap = store.get("j1")
    assert (snap.state, snap.done) == (JobState.CANCELLED, 2)
    assert store.cancel("j1").state == JobState.CANCELLED  # idempotent


def test_cancel_does_not_touch_a_finished_job(store: JobStore) -> None:
    _job(store, total=1)
    store.start_part("j1", 0)
    store.finish_part("j1", 0, done=1, failed=0, truncated=0)
    assert store.cancel("j1").state == JobState.SUCCEEDED


def test_parts_are_claimed_a_window_at_a_time(store: JobStore) -> None:
    _job(store)
    assert store.claim_parts("j1", 2) == range(0, 2)
    assert not store.claim_parts("j1", 2)  # two are out: nothing more until one finishes
    store.start_part("j1", 0)
    store.finish_part("j1", 0, done=1, failed=0, truncated=0)
    assert store.claim_parts("j1", 2) == range(2, 3)
    assert not store.claim_parts("j1", 0)  # every part is claimed
    store.cancel("j1")
    assert not store.claim_parts("j1", 2) and not store.claim_parts("gone", 2)


def test_pending_parts_until_dispatched(store: JobStore) -> None:
    _job(store)
    assert store.pending_parts("j1") == []  # nothing claimed yet: nothing lost
    assert store.claim_parts("j1", 0) == range(3)
    assert store.pending_parts("j1") == [0, 1, 2]
    store.start_part("j1", 2)  # a worker got it before the gateway marked it
    store.mark_dispatched("j1", [0, 2])
    assert store.pending_parts("j1") == [1]
    assert store.part_state("j1", 2) == "running"  # marking never rewinds a started chunk


def test_inputs_outputs_and_missing(store: JobStore) -> None:
    _job(store)
    assert [d.id for d in store.get_part_input("j1", 2)] == ["2-0"]
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    store.put_part_output(
        "j1", 0, PartVectors(["a", "b"], 3, Precision.FLOAT32, pack_vectors(vectors, Precision.FLOAT32))
    )
    out = store.get_part_output("j1", 0)
    assert out.ids == ["a", "b"]
    assert np.array_equal(np.frombuffer(out.data, "<f4").reshape(2, 3), vectors)
    store.start_part("j1", 0)
    store.finish_part("j1", 0, done=2, failed=0, truncated=0)
    with pytest.raises(NotFound, match="input expired"):
        store.get_part_input("j1", 0)  # inputs are dropped once a chunk is done
    with pytest.raises(NotFound, match="does not exist"):
        store.get("nope")
    with pytest.raises(InvalidArgument):
        store.get("")
    assert store.start_part("nope", 0).outcome == StartOutcome.MISSING


def test_list_pages_newest_first_and_filters(store: JobStore) -> None:
    for i in range(5):
        _job(store, job_id=f"j{i}", total=1)
    store.cancel("j3")
    first, cursor = store.list(2, None, None)
    assert [j.id for j in first] == ["j4", "j3"]
    second, cursor = store.list(2, cursor, None)
    assert [j.id for j in second] == ["j2", "j1"]
    third, cursor = store.list(2, cursor, None)
    assert [j.id for j in third] == ["j0"] and cursor is None
    cancelled, _ = store.list(10, None, JobState.CANCELLED)
    assert [j.id for j in cancelled] == ["j3"]


def test_watch_yields_changes_until_final(store: JobStore) -> None:
    _job(store, total=2, chunk_size=1)
    watcher = store.watch("j1", poll_s=0.2)
    assert next(watcher).state == JobState.QUEUED
    store.start_part("j1", 0)
    store.finish_part("j1", 0, done=1, failed=0, truncated=0)
    assert next(watcher).done == 1
    store.start_part("j1", 1)
    store.finish_part("j1", 1, done=1, failed=0, truncated=0)
    assert next(watcher).state == JobState.SUCCEEDED
    assert next(watcher, None) is None


def test_request_reply_roundtrip(store: JobStore) -> None:
    store.put_request("r1", {"texts": ["a"]}, ttl_s=10)
    assert store.take_request("r1") == {"texts": ["a"]}
    assert store.take_request("r1") is None
    store.reply("r1", {"model": "m"}, b"\x00\n\x01", ttl_s=10)
    assert store.wait_reply("r1", 1) == ({"model": "m"}, b"\x00\n\x01")
    assert store.wait_reply("r2", 0.1) is None
