"""A partitioned dedup job's centroids are trained once, on a worker, by the first part that needs them:
parts that start together get the same centroids from one training, and a claim whose part died lapses
so another part trains instead. Real Redis and Milvus Lite, planted vectors written by the real sink."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from fakes import FAKE_SPEC, fake_context, planted
from pymilvus import MilvusClient

from embedfleet import milvus
from embedfleet.dedup_store import DedupStore
from embedfleet.domain import DedupParams, Document, EmbeddingOptions, JobSpec, ResultsRef
from embedfleet.jobstore import JobStore
from embedfleet.worker.kinds import dedup as dedup_part
from embedfleet.worker.kinds.base import Part, WorkerContext
from embedfleet.worker.milvus_sink import MilvusSink

ROWS = 120
PARTS = 2


@pytest.fixture
def setup(store: JobStore, milvus_uri: str, tmp_path: Path) -> tuple[WorkerContext, list[Part], DedupStore]:
    client = milvus.connect(milvus_uri)
    collection = f"t_{uuid.uuid4().hex[:10]}"
    vectors, _ = planted(4, ROWS // 4)
    docs = [Document(id=f"d{i}", text=f"text {i}") for i in range(ROWS)]
    sink = MilvusSink(client, max_batch_bytes=1 << 20)
    sink.write(collection, milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", FAKE_SPEC.dimensions), docs, vectors)
    output = ResultsRef(filesystem=str(tmp_path), directory=f"{tmp_path}/dedup")
    params = DedupParams(collection=collection, threshold=0.95, partitions=4, rows=ROWS, output=output)
    spec = JobSpec(
        params=params, embedding=EmbeddingOptions(model=FAKE_SPEC.name), output_dimensions=FAKE_SPEC.dimensions
    )
    job_id = uuid.uuid4().hex
    store.create_job(job_id, spec, total=ROWS, parts=PARTS)
    ctx = fake_context(store, lambda: sink)
    parts = [Part(job_id, i, spec, ROWS, PARTS, attempt=1) for i in range(PARTS)]
    return ctx, parts, DedupStore(output)


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each training's part, recorded; each one slow enough that the other part starts meanwhile."""
    calls: list[str] = []
    real = dedup_part.train_centroids

    def counted(client: MilvusClient, part: Part) -> np.ndarray:
        calls.append(f"part {part.index}")
        time.sleep(0.5)
        return real(client, part)

    monkeypatch.setattr(dedup_part, "train_centroids", counted)
    return calls


def test_parts_that_start_together_share_one_training(
    setup: tuple[WorkerContext, list[Part], DedupStore], trainings: list[str]
) -> None:
    ctx, parts, store = setup
    assert store.read_centroids() is None
    got: dict[int, np.ndarray] = {}
    threads = [
        threading.Thread(
            target=lambda p=p: got.__setitem__(p.index, dedup_part.shared_centroids(p, ctx, store, ctx.sink().client))
        )
        for p in parts
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(trainings) == 1
    assert got[0].shape == (4, FAKE_SPEC.dimensions) and np.array_equal(got[0], got[1])
    stored = store.read_centroids()
    assert stored is not None and np.array_equal(stored, got[0])
    # A part run again later (a retry, a resumed job) reads them instead of training again.
    assert np.array_equal(dedup_part.shared_centroids(parts[1], ctx, store, ctx.sink().client), got[0])
    assert len(trainings) == 1


def test_a_claim_whose_part_died_lapses_and_another_part_trains(
    setup: tuple[WorkerContext, list[Part], DedupStore], trainings: list[str]
) -> None:
    ctx, parts, store = setup
    assert ctx.store.claim_task(parts[0].job_id, dedup_part.CENTROIDS_TASK, "a-dead-part", lease_s=1.0)
    started = time.monotonic()
    centroids = dedup_part.shared_centroids(parts[1], ctx, store, ctx.sink().client)
    assert time.monotonic() - started >= 0.9  # waited for the dead part's claim to lapse
    assert trainings == ["part 1"] and centroids.shape == (4, FAKE_SPEC.dimensions)


def test_a_task_claim_is_renewed_and_released_only_by_its_holder(store: JobStore) -> None:
    job_id = uuid.uuid4().hex
    assert store.claim_task(job_id, "t", "mine", lease_s=5)
    assert not store.claim_task(job_id, "t", "other", lease_s=5)
    assert not store.renew_task(job_id, "t", "other", lease_s=5)
    store.release_task(job_id, "t", "other")  # not the holder: nothing happens
    assert not store.claim_task(job_id, "t", "other", lease_s=5)
    assert store.renew_task(job_id, "t", "mine", lease_s=5)
    store.release_task(job_id, "t", "mine")
    assert store.claim_task(job_id, "t", "other", lease_s=0.2)
    time.sleep(0.3)
    assert store.claim_task(job_id, "t", "third", lease_s=5)  # the lapsed claim is free again
    store.release_task(job_id, "t", "third")
