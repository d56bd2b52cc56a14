"""The job store's state machine against the real Redis."""

import time

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


def test_an_unfinished_chunk_is_a_retry_once_its_lease_lapsed(store: JobStore) -> None:
    _job(store)
    first = store.start_part("j1", 1, owner="w1", lease_s=0.2)
    assert (first.outcome, first.attempts) == (StartOutcome.FIRST, 1)
    busy = store.start_part("j1", 1, owner="w2")  # a second delivery while w1 runs it
    assert busy.outcome == StartOutcome.BUSY and 0 < busy.busy_for_ms <= 200
    assert store.refresh_part_lease("j1", 1, "w1", 0.2) and not store.refresh_part_lease("j1", 1, "w2", 0.2)
    time.sleep(0.3)  # w1 died: nothing refreshes its lease
    again = store.start_part("j1", 1, owner="w2")
    assert (again.outcome, again.attempts) == (StartOutcome.RETRY, 2)  # the busy refusal was not an attempt


def test_a_backoff_lease_waits_for_the_retry(store: JobStore) -> None:
    _job(store)
    store.start_part("j1", 0, owner="w1")
    store.end_part_lease("j1", 0, "w1", backoff_s=0.2)  # a transient error: a retry is scheduled
    assert store.reclaim_parts("j1") == []  # nobody else queues it meanwhile
    assert store.start_part("j1", 0, owner="w2").outcome == StartOutcome.RETRY  # the retry takes it over
    store.end_part_lease("j1", 0, "w2", backoff_s=0.05)  # fails again, and its retry message is lost
    time.sleep(0.1)
    assert store.reclaim_parts("j1") == [0]


def test_a_part_whose_lease_lapsed_is_reclaimed_once(store: JobStore) -> None:
    _job(store)
    store.claim_parts("j1", 0)  # handed to the queue, as a gateway does before any worker runs them
    store.start_part("j1", 0, owner="dead", lease_s=0.1)
    store.start_part("j1", 1, owner="alive", lease_s=30)
    store.start_part("j1", 2, owner="done", lease_s=0.1)
    store.finish_part("j1", 2, done=1, failed=0, truncated=0)
    time.sleep(0.2)
    assert store.reclaim_parts("j1") == [0]
    assert store.reclaim_parts("j1") == []  # a second gateway gets nothing
    assert store.pending_parts("j1") == [0]
    store.cancel("j1")
    store.r.pexpire(store._lease_key("j1", 1), 1)
    time.sleep(0.05)
    assert store.reclaim_parts("j1") == []  # parts of a cancelled job are never queued again


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


def test_scripts_never_recreate_a_gone_job(store: JobStore) -> None:
    _job(store)
    store.start_part("j1", 0)
    store.r.delete(store._parts_key("j1"))  # one key of the job expired before the others
    assert store.start_part("j1", 1).outcome == StartOutcome.MISSING
    assert not store.finish_part("j1", 0, done=2, failed=0, truncated=0)
    assert not store.r.exists(store._parts_key("j1"))
    store.r.delete(store.job_key("j1"))
    store.report("j1", done=3, metrics={"loss": 0.5}, outputs={"model": "m"})
    assert not store.r.exists(store.job_key("j1"), store._metrics_key("j1"), store._outputs_key("j1"))


def test_list_skips_an_unreadable_job(store: JobStore) -> None:
    for i in range(3):
        _job(store, job_id=f"j{i}", total=1)
    store.r.hdel(store.job_key("j1"), "spec")  # a partial record
    jobs, _ = store.list(10, None, None)
    assert [j.id for j in jobs] == ["j2", "j0"]


def test_every_key_of_a_live_job_has_its_ttl_refreshed(store: JobStore) -> None:
    _job(store)
    store.start_part("j1", 0)
    vectors = PartVectors(["a"], 3, Precision.FLOAT32, pack_vectors(np.ones((1, 3), np.float32), Precision.FLOAT32))
    store.put_part_output("j1", 0, vectors)
    keys = [*store._own_keys("j1"), store._input_key("j1", 1), store._output_key("j1", 0)]
    for key in keys:
        store.r.expire(key, 5)
    assert store.touch("j1")
    assert all(store.r.ttl(k) > 500 for k in keys if store.r.exists(k))
    assert store.r.exists(store._attempts_key("j1"), store._running_key("j1"), store._input_key("j1", 1)) == 3
    store.r.delete(*store._own_keys("j1"))
    assert not store.touch("j1") and not store.r.exists(store.job_key("j1"))


def test_cancel_drops_the_staged_inputs(store: JobStore) -> None:
    _job(store)
    store.cancel("j1")
    assert not any(store.r.exists(store._input_key("j1", c)) for c in range(3))


def test_inputs_of_an_abandoned_submission_are_reaped(store: JobStore) -> None:
    store.put_part_input("gone", 0, [Document(id="a", text="t")])
    store.mark_staging("gone", lease_s=0.1)  # its gateway died mid-stream: no refresh follows
    store.put_part_input("streaming", 0, [Document(id="b", text="t")])
    store.mark_staging("streaming", lease_s=30)
    _job(store, job_id="created")  # staged, marked and then created: not abandoned
    store.mark_staging("created", lease_s=0.1)
    time.sleep(0.2)
    assert store.reap_abandoned_staging() == 1
    assert not store.r.exists(store._input_key("gone", 0))
    assert store.r.exists(store._input_key("streaming", 0), store._input_key("created", 0)) == 2


def test_specs_of_many_jobs_at_once_leave_gone_ones_out(store: JobStore) -> None:
    """What the collections listing reads of every active job: the specs, in one pipeline."""
    for job_id in ("a", "b"):
        _job(store, job_id)
    specs = store.specs(["a", "gone", "b"])
    assert list(specs) == ["a", "b"] and specs["a"] == store.get("a").spec
    assert store.specs([]) == {}
