"""The Ray backend's durable queue (the job store's queue section and ``PartQueue``) against the real
Redis: items move pending -> in flight -> done, and a dead owner's items come back, a live one's never."""

import time

import pytest

from embedfleet.domain import EmbeddingOptions, EmbedParams, JobSpec
from embedfleet.gateway.queue.ray.queue import PartQueue, decode, encode
from embedfleet.jobstore import JobStore
from embedfleet.tasks import PartTask


def test_items_move_from_pending_to_in_flight_to_done(store: JobStore) -> None:
    store.queue_push([b"a", b"b", b"c"])
    assert store.queue_length() == 3
    assert store.queue_take("me") == b"a"
    assert store.queue_take("me") == b"b"
    store.queue_done("me", b"a")
    assert store.queue_length() == 1
    assert store.r.lrange(f"{store.prefix}ray:inflight:me", 0, -1) == [b"b"]


def test_only_an_expired_owners_items_are_reclaimed_to_the_head(store: JobStore) -> None:
    store.queue_push([b"1", b"2", b"3", b"4"])
    store.refresh_lease("alive", ttl_s=30)
    store.refresh_lease("dying", ttl_s=0.05)
    store.queue_take("alive")
    store.queue_take("dying")
    store.queue_take("dying")
    assert store.reclaim_orphans("me") == 0  # both leases still hold
    time.sleep(0.1)
    assert store.reclaim_orphans("me") == 2
    assert store.r.lrange(f"{store.prefix}ray:pending", 0, -1) == [b"2", b"3", b"4"]
    assert store.reclaim_orphans("alive") == 0  # its own list is never reclaimed by itself


def test_return_all_hands_back_an_owners_items_despite_its_lease(store: JobStore) -> None:
    store.queue_push([b"x", b"y"])
    store.refresh_lease("me", ttl_s=30)
    store.queue_take("me")
    assert store.queue_return_all("me") == 1
    assert store.queue_length() == 2
    assert not store.r.exists(f"{store.prefix}ray:lease:me")


def test_job_is_active_until_cancelled(store: JobStore) -> None:
    spec = JobSpec(params=EmbedParams(), embedding=EmbeddingOptions(model="m"), output_dimensions=4, part_size=1)
    store.create_job("j1", spec, total=1, parts=1)
    assert store.job_is_active("j1")
    store.cancel("j1")
    assert not store.job_is_active("j1")
    assert not store.job_is_active("no-such-job")


def test_part_queue_round_trips_parts_and_drops_malformed_items(store: JobStore) -> None:
    queue = PartQueue(store)
    store.queue_push([b"not json", encode(PartTask("j", -1))])  # neither can ever run
    queue.push("j1", [0, 1])
    taken = queue.take()
    assert taken is not None and taken.task == PartTask("j1", 0)
    queue.done(taken)
    assert store.r.llen(f"{store.prefix}ray:inflight:{queue.owner}") == 0
    assert queue.pending() == 1
    with pytest.raises(ValueError):
        decode(b'["j", true]')
