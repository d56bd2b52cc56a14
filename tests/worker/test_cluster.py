"""The cluster part on a real Milvus Lite server and the real Redis, with planted clusters written by
the real sink: k-means (k given and chosen) and HDBSCAN recover them exactly, every row gets one
assignment, summaries name each cluster's own words, and a selection larger than the sample is
sampled, then assigned in a second pass."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq
import pytest
from fakes import FAKE_SPEC, fake_context, planted
from pymilvus import MilvusClient
from sklearn.metrics import adjusted_rand_score

from embedfleet import milvus
from embedfleet.cluster_store import read_assignments, read_map, read_summaries, results_directory
from embedfleet.domain import ClusterMethod, ClusterParams, Document, EmbeddingOptions, JobSpec, JobState, ResultsRef
from embedfleet.jobstore import JobStore
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.runner import PartRunner, PartStatus

WORDS = ["apple banana cherry", "violin cello flute", "granite basalt marble", "falcon heron sparrow"]
PER_CLUSTER = 60


@pytest.fixture
def client(milvus_uri: str) -> MilvusClient:
    return milvus.connect(milvus_uri)


@pytest.fixture
def collection(client: MilvusClient) -> Iterator[tuple[str, np.ndarray]]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    vectors, labels = planted(len(WORDS), PER_CLUSTER)
    docs = [
        Document(id=f"d{i}", text=f"{WORDS[c]} item {i}", metadata_json=f'{{"c": {c}}}') for i, c in enumerate(labels)
    ]
    binding = milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", FAKE_SPEC.dimensions)
    MilvusSink(client, max_batch_bytes=1 << 20).write(name, binding, docs, vectors, {}, {})
    yield name, labels
    client.drop_collection(name)


def _run(store: JobStore, client: MilvusClient, tmp_path: object, params: ClusterParams) -> tuple[str, ResultsRef]:
    job_id = uuid.uuid4().hex
    ref = ResultsRef(filesystem=str(tmp_path), directory=results_directory(str(tmp_path), params.collection, job_id))
    params = params.model_copy(update={"results": ref})
    spec = JobSpec(
        params=params, embedding=EmbeddingOptions(model=FAKE_SPEC.name), output_dimensions=FAKE_SPEC.dimensions
    )
    store.create_job(job_id, spec, total=params.rows, parts=1)
    sink = MilvusSink(client, max_batch_bytes=1 << 20)
    ctx = fake_context(store, lambda: sink)
    assert PartRunner(ctx, max_attempts=1, owner="t", lease_s=30).run_part(job_id, 0).status == PartStatus.DONE
    return job_id, ref


def _params(collection: str, **kw: object) -> ClusterParams:
    base = {
        "collection": collection,
        "rows": len(WORDS) * PER_CLUSTER,
        "results": ResultsRef(filesystem="", directory=""),
    }
    return ClusterParams.model_validate(base | kw)


def _labels(ref: ResultsRef) -> dict[str, int]:
    rows, more = read_assignments(ref, 0, 10_000)
    assert not more
    return {r.id: r.cluster for r in rows}


def _check_recovered(ref: ResultsRef, truth: np.ndarray) -> None:
    found = _labels(ref)
    assert len(found) == len(truth)  # every row once
    predicted = [found[f"d{i}"] for i in range(len(truth))]
    assert adjusted_rand_score(truth, predicted) == 1.0
    summaries = read_summaries(ref)
    assert [s.size for s in summaries] == [PER_CLUSTER] * len(WORDS)
    for s in summaries:  # each cluster's terms are its own three words, its representatives its own documents
        words = WORDS[truth[int(s.representatives[0].id[1:])]].split()
        assert {t for t, _ in s.terms[:3]} == set(words)
        assert all(r.text.startswith(" ".join(words)) for r in s.representatives)
        sims = [r.similarity for r in s.representatives]
        assert sims == sorted(sims, reverse=True) and len(sims) == 5
    points = read_map(ref)
    assert len(points) == len(truth) and {p.cluster for p in points} == set(range(len(WORDS)))


def test_kmeans_with_k_given_recovers_planted_clusters(
    store: JobStore, client: MilvusClient, collection: tuple[str, np.ndarray], tmp_path: object
) -> None:
    name, truth = collection
    job_id, ref = _run(store, client, tmp_path, _params(name, k=len(WORDS)))
    _check_recovered(ref, truth)
    snap = store.get(job_id)
    assert (snap.state, snap.done, snap.outputs["k"], snap.metrics["clusters"]) == (
        JobState.SUCCEEDED,
        len(truth),
        "4",
        4.0,
    )


def test_kmeans_chooses_k_by_silhouette(
    store: JobStore, client: MilvusClient, collection: tuple[str, np.ndarray], tmp_path: object
) -> None:
    name, truth = collection
    job_id, ref = _run(store, client, tmp_path, _params(name, k_min=2, k_max=9))
    _check_recovered(ref, truth)
    metrics = store.get(job_id).metrics
    assert metrics["silhouette"] == max(v for k, v in metrics.items() if k.startswith("silhouette.k"))


def test_hdbscan_recovers_planted_clusters(
    store: JobStore, client: MilvusClient, collection: tuple[str, np.ndarray], tmp_path: object
) -> None:
    name, truth = collection
    _, ref = _run(store, client, tmp_path, _params(name, method=ClusterMethod.HDBSCAN, min_cluster_size=20))
    _check_recovered(ref, truth)


def test_large_selection_is_sampled_then_assigned_and_filtered(
    store: JobStore, client: MilvusClient, collection: tuple[str, np.ndarray], tmp_path: object
) -> None:
    """rows > sample_size: two passes (sample, then assign every row); the filter keeps two clusters."""
    name, truth = collection
    params = _params(name, k=2, sample_size=50, rows=2 * PER_CLUSTER, filter='metadata["c"] <= 1')
    _, ref = _run(store, client, tmp_path, params)
    found = _labels(ref)
    assert sorted(found, key=lambda i: int(i[1:])) == [f"d{i}" for i in range(2 * PER_CLUSTER)]
    assert adjusted_rand_score(truth[: 2 * PER_CLUSTER], [found[f"d{i}"] for i in range(2 * PER_CLUSTER)]) == 1.0
    table = pq.read_table(f"{ref.directory}/assignments.parquet")
    assert table.column_names == ["id", "pk", "cluster", "similarity"]
