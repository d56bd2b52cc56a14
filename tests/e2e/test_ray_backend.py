"""The Ray backend against the real system: a local Ray instance on 127.0.0.1 started by the gateway's
RayDispatcher, real Redis, a Milvus Lite server and the packaged model.

What only Ray has is tested here (actor death, the Redis-backed queue's bound, taking over a dead
gateway's chunks); the behaviours both backends share are the lead's parametrized e2e suite.
One cluster for the module (a pool of 2 actors); the backpressure test adds a second gateway with a
pool of 1 on the same Ray instance.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from embedfleet import milvus
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.client.types import Job
from embedfleet.domain import Document, EmbeddingOptions, EmbedParams, JobSnapshot, JobSpec, JobState
from embedfleet.gateway.queue.ray.dispatcher import RayDispatcher
from embedfleet.jobstore import JobStore
from embedfleet.local import LocalCluster
from embedfleet.registry import DEFAULT_MODELS, ModelRole, ModelSpec
from embedfleet.settings import CommonSettings

REDIS_URL = os.environ.get("EMBEDFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POOL = 2


def _dispatcher(cluster: LocalCluster) -> RayDispatcher:
    dispatcher = cluster.gateway.ctx.dispatcher
    assert isinstance(dispatcher, RayDispatcher)
    return dispatcher


def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _wait(client: EmbedfleetClient, job_id: str, timeout_s: float = 120) -> Job:
    """The finished job; fails the test (instead of hanging) if it does not finish in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get_job(job_id)
        if job.state.terminal:
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job.state.value} ({job.done}/{job.total}) after {timeout_s:.0f} s")
        time.sleep(0.1)


def _stage_embed_job(store: JobStore, model: str, parts: int, part_size: int) -> str:
    """An embed job created straight in the job store (as a gateway would), its parts claimed and
    marked dispatched but queued nowhere: the test decides which queue, if any, holds them."""
    job_id = uuid.uuid4().hex
    docs = [Document(id=f"{job_id}-{i}", text=f"sentence number {i} of a staged job") for i in range(parts * part_size)]
    for part in range(parts):
        store.put_part_input(job_id, part, docs[part * part_size : (part + 1) * part_size])
    width = DEFAULT_MODELS[0].dimensions  # the packaged model's, or whatever a test's failing model claims
    options = EmbeddingOptions(model=model)
    spec = JobSpec(params=EmbedParams(), embedding=options, output_dimensions=width, part_size=part_size)
    store.create_job(job_id, spec, total=len(docs), parts=parts)
    store.mark_dispatched(job_id, list(store.claim_parts(job_id, 0)))
    return job_id


def _wait_in_store(store: JobStore, job_id: str, timeout_s: float) -> JobSnapshot:
    """``_wait`` for a job that no gateway serves: read straight from the job store."""
    deadline = time.monotonic() + timeout_s
    while not (snap := store.get(job_id)).state.terminal:
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {snap.state.value} ({snap.done}/{snap.total}) after {timeout_s:.0f} s")
        time.sleep(0.1)
    return snap


def _stored(cluster: LocalCluster, collection: str) -> tuple[int, list[str]]:
    """Row count and every stored document id of a collection."""
    client = milvus.connect(cluster.milvus_uri)
    try:
        client.load_collection(collection)  # a restarted Milvus Lite server starts with it released
        [count] = client.query(collection, filter="", output_fields=["count(*)"])
        rows = client.query(collection, filter="", output_fields=[milvus.ID_FIELD], limit=16384)
    finally:
        client.close()
    return int(count["count(*)"]), [row[milvus.ID_FIELD] for row in rows]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis) -> Iterator[LocalCluster]:
    data_dir = tmp_path_factory.mktemp("ray-cluster")
    local = LocalCluster(
        data_dir=data_dir,
        redis_url=REDIS_URL,
        key_prefix=f"eftest-ray-{uuid.uuid4().hex[:10]}:",
        backend="ray",
        workers=POOL,
        gateway_port=0,
        milvus_port=0,
        log_dir=data_dir / "logs",
        extra_env={
            # Half a logical CPU each: the pool also fits beside another pool of one actor in the same
            # Ray instance (a backend-parametrized session cluster). Torch gets one thread per actor.
            "EMBEDFLEET_RAY_NUM_CPUS_PER_ACTOR": "0.5",
            "EMBEDFLEET_RAY_MAX_QUEUED_CHUNKS": "2",
            "EMBEDFLEET_RECOVERY_INTERVAL_SECONDS": "2",
        },
    )
    try:
        with local:
            yield local
    finally:
        local.clear_redis()  # after stop: closing the dispatcher hands unfinished chunks back to Redis


@pytest.fixture(scope="module")
def ray_client(ray_cluster: LocalCluster) -> Iterator[EmbedfleetClient]:
    with EmbedfleetClient(ray_cluster.gateway_address, timeout=120) as c:
        yield c


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _listening_sockets(pids: set[int]) -> list[tuple[str, str]]:
    """(table, local address in /proc/net hex) of every listening TCP socket the processes hold."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        except OSError:
            continue
    found = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                found.append((table, fields[1].split(":")[0]))
    return found


def _is_loopback(table: str, address_hex: str) -> bool:
    if table == "tcp":
        return address_hex.endswith("7F")  # little-endian: the first octet is the last byte, 127
    return address_hex in ("00000000000000000000000001000000", "0000000000000000FFFF00000100007F")


def _is_milvus_server(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return argv0.endswith(b"/bin/milvus")


def test_ray_listens_on_loopback_only(ray_cluster: LocalCluster) -> None:
    """Every port of this process and its children (GCS, raylet, actors, Milvus) is on 127.0.0.1."""
    import ray

    assert all(node["NodeManagerAddress"] == "127.0.0.1" for node in ray.nodes())
    # The Milvus 2.3 C++ server of another session fixture (tests/e2e/test_milvus_server.py) is a child
    # too; it cannot be bound to loopback (documented in docs/ARCHITECTURE.md), and it is not Ray's.
    pids = {pid for pid in {os.getpid(), *_descendants(os.getpid())} if not _is_milvus_server(pid)}
    sockets = _listening_sockets(pids)
    assert len(sockets) >= 5  # the gateway, Milvus, the GCS, the raylet, the actors' workers
    assert [s for s in sockets if not _is_loopback(*s)] == []


def test_index_job_writes_every_document(
    ray_cluster: LocalCluster, ray_client: EmbedfleetClient, wordnet_docs: list[dict]
) -> None:
    docs = wordnet_docs[:300]
    collection = f"e2e_ray_{uuid.uuid4().hex[:8]}"
    job = ray_client.submit_index(docs, collection, chunk_size=32)
    final = _wait(ray_client, job.id)
    assert final.state == JobState.SUCCEEDED, final.error
    assert (final.done, final.failed, final.chunks_finished) == (300, 0, 10)
    count, ids = _stored(ray_cluster, collection)
    assert count == 300 and sorted(ids) == sorted(d["id"] for d in docs)

    [model] = ray_client.list_models()
    assert model.workers == POOL  # both actors' heartbeats
    hits = ray_client.search(collection, docs[7]["text"], top_k=3)  # the query goes through Embed on an actor
    assert hits[0].id == docs[7]["id"]
    assert _dispatcher(ray_cluster).in_flight() == 0


def test_killed_actor_mid_job_loses_and_duplicates_nothing(
    ray_cluster: LocalCluster, ray_client: EmbedfleetClient, wordnet_docs: list[dict]
) -> None:
    dispatcher = _dispatcher(ray_cluster)
    before = dispatcher.stats()
    docs = wordnet_docs[300:900]
    collection = f"e2e_ray_kill_{uuid.uuid4().hex[:8]}"
    job = ray_client.submit_index(docs, collection, chunk_size=20)  # 30 chunks; both actors stay busy
    _until(lambda: ray_client.get_job(job.id).done >= 60, 60, "the first chunks to finish")
    victim = dispatcher.actor_pids()[0]
    os.kill(victim, signal.SIGKILL)

    final = _wait(ray_client, job.id)
    assert final.state == JobState.SUCCEEDED, final.error
    assert (final.done, final.failed, final.chunks_finished) == (600, 0, 30)
    after = dispatcher.stats()
    assert after["actor_deaths"] == before["actor_deaths"] + 1
    assert after["resubmitted"] > before["resubmitted"]  # the victim's chunk(s) went to another actor
    count, ids = _stored(ray_cluster, collection)
    assert count == 600  # nothing lost, and no second copy of a re-run chunk (deterministic keys, upsert)
    assert sorted(ids) == sorted(d["id"] for d in docs)
    # The pool is whole again: a fresh actor took the dead one's place.
    _until(lambda: len(dispatcher.actor_pids()) == POOL, 120, "the replacement actor")
    assert victim not in dispatcher.actor_pids()


def test_cancel_drops_queued_chunks_before_they_reach_an_actor(
    ray_cluster: LocalCluster, ray_client: EmbedfleetClient, wordnet_docs: list[dict]
) -> None:
    dispatcher = _dispatcher(ray_cluster)
    before = dispatcher.stats()
    job = ray_client.submit_embed(wordnet_docs[:800], chunk_size=20)  # 40 chunks
    _until(lambda: ray_client.get_job(job.id).done >= 40, 60, "two chunks to finish")
    assert ray_client.cancel_job(job.id).state == JobState.CANCELLED
    _until(lambda: dispatcher.in_flight() == 0 and dispatcher.stats()["pending"] == 0, 60, "the queue to drain")
    settled = ray_client.get_job(job.id)
    time.sleep(1.5)
    assert ray_client.get_job(job.id).done == settled.done  # nothing ran after the queue drained
    assert settled.state == JobState.CANCELLED and settled.chunks_finished < 40
    after = dispatcher.stats()
    sent, dropped, again = (
        sum(after[k] - before[k] for k in keys)
        for keys in (("submitted",), ("dropped",), ("retries", "resubmitted", "reclaimed"))
    )
    claimed = int(
        ray_cluster.gateway.ctx.store.r.hget(ray_cluster.gateway.ctx.store.job_key(job.id), "dispatch_cursor")
    )
    # Each claimed chunk was sent or dropped once, plus once more for each time it came back (a retry, a dead
    # actor's resubmission, a reclaim; a loaded machine makes one now and then). Chunks never claimed (past
    # the job's window) never reached the queue.
    assert sent + dropped == claimed + again and claimed <= 40
    # Only what was already out when the cancel landed reached an actor (to finish or be skipped).
    assert sent - settled.chunks_finished <= dispatcher.capacity


def test_a_dead_gateways_chunks_are_taken_over(ray_cluster: LocalCluster, ray_client: EmbedfleetClient) -> None:
    """A gateway that died with chunks out leaves them in its in-flight list; once its lease is gone
    (here: it never had one) a live dispatcher moves them back to the queue and they run."""
    ctx = ray_cluster.gateway.ctx
    store = ctx.store
    job_id = _stage_embed_job(store, ctx.registry.default, parts=3, part_size=10)
    dead_list = f"{ray_cluster.key_prefix}ray:inflight:deadgateway"
    store.r.rpush(dead_list, *[json.dumps([job_id, c]) for c in range(3)])

    final = _wait(ray_client, job_id, 60)
    assert final.state == JobState.SUCCEEDED and final.done == 30
    assert not store.r.exists(dead_list)
    assert _dispatcher(ray_cluster).stats()["reclaimed"] >= 3


def test_transient_milvus_outage_is_retried_after_backoff(
    ray_cluster: LocalCluster, ray_client: EmbedfleetClient, wordnet_docs: list[dict]
) -> None:
    """Milvus goes away mid-job for a few seconds: the runner's RetryPart comes back as ``retry``,
    the dispatcher runs those chunks again after its backoff, and the job still writes every
    document exactly once."""
    dispatcher = _dispatcher(ray_cluster)
    before = dispatcher.stats()
    docs = wordnet_docs[900:1500]
    collection = f"e2e_ray_outage_{uuid.uuid4().hex[:8]}"
    job = ray_client.submit_index(docs, collection, chunk_size=20)
    _until(lambda: ray_client.get_job(job.id).done >= 60, 60, "the first chunks to finish")
    server = ray_cluster.processes["milvus"]
    server.kill()
    server.wait()
    time.sleep(3)  # well inside the retry budget: backoffs 1 + 2 + 4 + 8 s before the last attempt
    ray_cluster.start_milvus()  # same port and data directory

    final = _wait(ray_client, job.id)
    assert final.state == JobState.SUCCEEDED, final.error
    assert (final.done, final.failed) == (600, 0)
    after = dispatcher.stats()
    assert after["retries"] > before["retries"]
    assert after["actor_deaths"] == before["actor_deaths"]
    count, ids = _stored(ray_cluster, collection)
    assert count == 600 and sorted(ids) == sorted(d["id"] for d in docs)


def test_backpressure_bounds_chunks_in_flight(
    ray_cluster: LocalCluster, wordnet_docs: list[dict], tmp_path: Path
) -> None:
    """Pool of 1, 1 queued: never more than 2 chunks out of Redis; a later job waits QUEUED with its
    chunks in the Redis list; an interactive Embed does not wait for the backlog."""
    small = LocalCluster(
        data_dir=tmp_path,
        redis_url=REDIS_URL,
        key_prefix=f"eftest-ray-bp-{uuid.uuid4().hex[:10]}:",
        backend="ray",
        workers=1,
        gateway_port=0,
        milvus_port=0,
        log_dir=tmp_path / "logs",
        # The module's pool holds the instance's CPUs; this actor needs none of them to be placed.
        extra_env={"EMBEDFLEET_RAY_MAX_QUEUED_CHUNKS": "1", "EMBEDFLEET_RAY_NUM_CPUS_PER_ACTOR": "0"},
    )
    try:
        with small, EmbedfleetClient(small.gateway_address, timeout=120) as client:
            dispatcher = _dispatcher(small)
            assert dispatcher.capacity == 2
            big = client.submit_embed(wordnet_docs[:400], chunk_size=20)  # 20 chunks
            later = client.submit_embed(wordnet_docs[400:460], chunk_size=20)  # 3 chunks, behind them
            samples: list[int] = []
            later_waited = False
            embed_s: float | None = None
            while not (snap := client.get_job(big.id)).state.terminal:
                samples.append(dispatcher.in_flight())
                waiting = client.get_job(later.id)
                if snap.state == JobState.RUNNING and waiting.state == JobState.QUEUED and waiting.done == 0:
                    later_waited = later_waited or dispatcher.stats()["pending"] >= 3
                if embed_s is None and snap.done >= 40:
                    started = time.monotonic()
                    assert client.embed(["a quick interactive request"]).vectors.shape == (1, 384)
                    embed_s = time.monotonic() - started
                    assert not client.get_job(big.id).state.terminal  # it did not wait for the backlog
                time.sleep(0.02)
            assert snap.state == JobState.SUCCEEDED
            assert _wait(client, later.id).state == JobState.SUCCEEDED
            assert samples and max(samples) <= 2
            assert dispatcher.stats()["max_in_flight"] == 2  # the bound was reached, and held
            assert later_waited
            assert embed_s is not None and embed_s < 5
    finally:
        small.clear_redis()


class FlakyStore(JobStore):
    """The real job store, except that the named methods raise ``redis.ConnectionError`` on their
    first calls (``faults``: method name -> how many calls fail), as during a Redis blip."""

    def __init__(self, client: redis.Redis, prefix: str, faults: dict[str, int]) -> None:
        super().__init__(client, prefix, ttl_seconds=600)
        self.faults = dict(faults)

    def _maybe_fail(self, method: str) -> None:
        if self.faults.get(method, 0) > 0:
            self.faults[method] -= 1
            raise redis.ConnectionError(f"injected fault in {method}")

    def queue_take(self, owner: str) -> bytes | None:
        self._maybe_fail("queue_take")
        return super().queue_take(owner)

    def job_is_active(self, job_id: str) -> bool:
        self._maybe_fail("job_is_active")
        return super().job_is_active(job_id)

    def queue_done(self, owner: str, item: bytes) -> None:
        self._maybe_fail("queue_done")
        super().queue_done(owner, item)


def _lone_dispatcher(store: JobStore, **settings: object) -> RayDispatcher:
    """A dispatcher of its own (one actor, one part queued on it) on the store's key prefix, beside
    whatever gateway runs in this Ray instance; half a CPU, so it fits next to the module's pool."""
    common = CommonSettings(
        redis_url=REDIS_URL,
        key_prefix=store.prefix,
        backend="ray",
        ray_pool_size=1,
        ray_max_queued_chunks=1,
        ray_num_cpus_per_actor=0.5,
        **settings,
    )
    return RayDispatcher(common, store)


def test_transient_redis_errors_while_dispatching_lose_no_part(redis_client: redis.Redis, key_prefix: str) -> None:
    """Redis fails a few of the dispatcher's calls (taking a part, checking its job, finishing it):
    every part is kept and retried, the job completes with exact counts, and each part's place in
    the backpressure count is given back once (more failures than the capacity of 2 would otherwise
    stop the dispatcher for good)."""
    store = FlakyStore(redis_client, key_prefix, {"queue_take": 1, "job_is_active": 3, "queue_done": 2})
    dispatcher = _lone_dispatcher(store)
    try:
        job_id = _stage_embed_job(store, DEFAULT_MODELS[0].name, parts=6, part_size=5)
        dispatcher.dispatch_parts(job_id, range(6))
        final = _wait_in_store(store, job_id, 120)
        assert final.state == JobState.SUCCEEDED, final.error
        assert (final.done, final.failed, final.parts_finished) == (30, 0, 6)
        assert store.faults == {"queue_take": 0, "job_is_active": 0, "queue_done": 0}  # every fault was hit
        _until(lambda: dispatcher.in_flight() == 0, 10, "every part's place to be given back")
        assert dispatcher.stats()["pending"] == 0
        assert redis_client.llen(f"{key_prefix}ray:inflight:{dispatcher.queue.owner}") == 0
    finally:
        dispatcher.close()


def test_a_job_fails_when_no_worker_actor_can_start(
    store: JobStore, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every actor dies in ``__init__`` (its default model's package does not exist): the parts use
    up their attempts and are failed from the gateway through the job store, since no actor lives
    to run the fail path, so the job ends FAILED saying why instead of hanging."""
    monkeypatch.setenv("EMBEDFLEET_MAX_CHUNK_ATTEMPTS", "2")  # read by the actors' settings
    missing = ModelSpec(
        name="missing", role=ModelRole.TEACHER, source="package:embedfleet_no_such_package/model", dimensions=384
    )
    dispatcher = _lone_dispatcher(store, models=(missing,), default_model="missing")
    try:
        job_id = _stage_embed_job(store, "missing", parts=2, part_size=4)  # both out at once (capacity 2)
        dispatcher.dispatch_parts(job_id, range(2))
        final = _wait_in_store(store, job_id, 120)
        assert final.state == JobState.FAILED
        assert (final.done, final.failed, final.parts_finished) == (0, 8, 2)
        assert [f.units for f in final.failed_parts] == [4, 4]
        for failure in final.failed_parts:
            assert "workers could not start" in failure.message, failure.message
            assert "embedfleet_no_such_package" in failure.message, failure.message
        _until(lambda: dispatcher.in_flight() == 0, 10, "every part's place to be given back")
        assert dispatcher.actor_pids() == []
    finally:
        dispatcher.close()
