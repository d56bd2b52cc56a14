"""Shared fixtures: the real Redis, one local cluster (Milvus Lite server, a Celery worker process with
the packaged model, the gateway) per test session, each under its own Redis key prefix.

Missing services are failures, not skips: CI has every one of them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import redis

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.jobstore import JobStore
from embedfleet.local import LocalCluster

REDIS_URL = os.environ.get("EMBEDFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"the tests need Redis at {REDIS_URL}: {exc}")
    return client


@pytest.fixture(scope="session")
def redis_url(redis_client: redis.Redis) -> str:
    """The URL of the real Redis the tests use (for processes and servers a test starts itself)."""
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A fresh prefix for one test; its keys are deleted afterwards (and only those)."""
    prefix = f"eftest-{uuid.uuid4().hex[:10]}:"
    yield prefix
    _delete_prefix(redis_client, prefix)


@pytest.fixture
def store(redis_client: redis.Redis, key_prefix: str) -> JobStore:
    return JobStore(redis_client, key_prefix, ttl_seconds=600)


def _local_cluster(data_dir: Path, backend: str, milvus: Literal["lite", "server"] = "lite") -> LocalCluster:
    return LocalCluster(
        milvus=milvus,
        data_dir=data_dir,
        redis_url=REDIS_URL,
        key_prefix=f"eftest-{uuid.uuid4().hex[:10]}:",
        backend=backend,
        workers=1,
        gateway_port=0,
        milvus_port=0,
        log_dir=data_dir / "logs",
        corpus_dirs=(data_dir / "corpora",),
        metrics=True,
        extra_env={
            "EMBEDFLEET_LOG_FORMAT": "json",
            "EMBEDFLEET_VISIBILITY_TIMEOUT_SECONDS": "60",
            "EMBEDFLEET_RECOVERY_INTERVAL_SECONDS": "2",
            "EMBEDFLEET_DISTILL_CHECKPOINT_STEPS": "5",  # test_faults kills a distill part mid-training
            # Half a CPU per Ray actor: this pool fits in one local Ray next to test_ray_backend's pools.
            "EMBEDFLEET_RAY_NUM_CPUS_PER_ACTOR": "0.5",
        },
    )


@pytest.fixture(scope="session")
def celery_system(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis) -> Iterator[LocalCluster]:
    """Milvus Lite server + one real Celery worker process + the gateway, for the whole session."""
    local = _local_cluster(tmp_path_factory.mktemp("celery-system"), "celery")
    try:
        with local:
            yield local
    finally:
        local.clear_redis()  # after stop: a worker's warm shutdown hands unacknowledged tasks back


@pytest.fixture(scope="session")
def ray_system(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis) -> Iterator[LocalCluster]:
    """The same system with the gateway dispatching to one Ray actor in a local Ray on 127.0.0.1."""
    local = _local_cluster(tmp_path_factory.mktemp("ray-system"), "ray")
    try:
        with local:
            yield local
    finally:
        local.clear_redis()  # after stop: closing the dispatcher hands unfinished chunks back to Redis


@pytest.fixture(scope="session")
def milvus_server_system(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis) -> Iterator[LocalCluster]:
    """The Celery system on the real Milvus 2.3 engine instead of Milvus Lite (its data dir, with
    ~450 MB of unpacked binaries and preallocated logs, is deleted afterwards)."""
    data_dir = tmp_path_factory.mktemp("milvus-server-system")
    local = _local_cluster(data_dir, "celery", milvus="server")
    try:
        with local:
            yield local
    finally:
        local.clear_redis()
        shutil.rmtree(data_dir / "milvus-server", ignore_errors=True)


@pytest.fixture(scope="session", params=["celery", "ray"])
def cluster(request: pytest.FixtureRequest) -> LocalCluster:
    """The system on each queue backend: tests that use it run against Celery and against Ray."""
    return request.getfixturevalue(f"{request.param}_system")


@pytest.fixture(scope="session")
def client(cluster: LocalCluster) -> Iterator[EmbedfleetClient]:
    """A client of ``cluster`` (so, of each backend in turn)."""
    with EmbedfleetClient(cluster.gateway_address, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def wordnet_docs() -> list[dict[str, object]]:
    """Real short documents: WordNet definitions, with metadata."""
    import json

    path = SHARED_DATA / "wordnet-glosses" / "wordnet_synsets.jsonl"
    if not path.is_file():
        pytest.fail(f"evaluation data missing at {path}")
    docs = []
    with path.open() as fh:
        for line in fh:
            row = json.loads(line)
            docs.append({"id": row["id"], "text": row["definition"], "metadata": {"lexname": row["lexname"]}})
            if len(docs) == 2000:
                break
    return docs


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Milvus Lite server of its own, for tests that need Milvus but no workers."""
    server = LocalCluster(data_dir=tmp_path_factory.mktemp("milvus"), milvus_port=0)
    server.start_milvus()
    try:
        yield server.milvus_uri
    finally:
        server.stop()
