"""Cluster jobs end to end with the real model on a real slice (WordNet glosses of three lexical
categories): SDK (sync and asyncio) -> gateway -> Celery and Ray -> worker -> Milvus Lite -> Parquet
beside the collection; the CLI and the map; and the statuses of bad requests."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.metrics import normalized_mutual_info_score

from embedfleet import milvus
from embedfleet.client import cli
from embedfleet.client.aio import AsyncEmbedfleetClient
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import ClusterMethod, JobState
from embedfleet.errors import FailedPrecondition
from embedfleet.gateway.kinds.base import PartStager, Submission
from embedfleet.gateway.kinds.cluster import ClusterPlanner, ClusterRequest
from embedfleet.local import LocalCluster

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
CATEGORIES = ("noun.animal", "noun.food", "verb.motion")
PER_CATEGORY = 60


def _slice(per_category: int = PER_CATEGORY) -> list[dict[str, object]]:
    kept: dict[str, list[dict[str, object]]] = {c: [] for c in CATEGORIES}
    with (SHARED_DATA / "wordnet-glosses" / "wordnet_synsets.jsonl").open() as fh:
        for line in fh:
            row = json.loads(line)
            bucket = kept.get(row["lexname"])
            if bucket is not None and len(bucket) < per_category:
                bucket.append({"id": row["id"], "text": row["definition"], "metadata": {"lexname": row["lexname"]}})
    return [d for c in CATEGORIES for d in kept[c]]


@pytest.fixture(scope="module")
def indexed(client: EmbedfleetClient) -> tuple[str, dict[str, str]]:
    """A collection of the slice (once per backend), and each document's category."""
    docs = _slice()
    collection = f"e2e_cl_{uuid.uuid4().hex[:8]}"
    assert client.index(docs, collection, chunk_size=90).state == JobState.SUCCEEDED
    return collection, {str(d["id"]): d["metadata"]["lexname"] for d in docs}  # type: ignore[index]


def test_kmeans_and_hdbscan_jobs_through_the_sdk(
    client: EmbedfleetClient, cluster: LocalCluster, indexed: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    collection, truth = indexed
    job = client.cluster(collection, k=3, display_name="wordnet-3")
    assert job.state == JobState.SUCCEEDED, job.error
    assert (job.kind, job.collection, job.done, job.outputs["k"]) == ("cluster", collection, len(truth), "3")
    summaries = client.clusters(job.id, page_size=2)  # two pages
    assert [s.cluster for s in summaries] == [0, 1, 2] and sum(s.size for s in summaries) == len(truth)
    assert all(s.terms and len(s.representatives) == 5 for s in summaries)
    rows = list(client.cluster_assignments(job.id, page_size=50))
    assert sorted(r.id for r in rows) == sorted(truth)
    predicted = {r.id: r.cluster for r in rows}
    ids = sorted(truth)
    assert normalized_mutual_info_score([truth[i] for i in ids], [predicted[i] for i in ids]) > 0.8
    first = list(client.cluster_assignments(job.id, cluster=0))
    assert len(first) == summaries[0].size and {r.cluster for r in first} == {0}
    # The tables are where the job says, beside the collection, readable by any Parquet reader.
    assert job.results_uri == job.outputs["results_uri"]
    assert job.results_uri.endswith(f"/collections/{collection}/clusters/{job.id}")
    assert pq.read_table(f"{job.results_uri}/assignments.parquet").num_rows == len(truth)

    async def through_asyncio() -> tuple[list[object], list[object], object]:
        async with AsyncEmbedfleetClient(cluster.gateway_address) as aio:
            rows = [r async for r in aio.cluster_assignments(job.id, page_size=50)]
            return await aio.clusters(job.id), rows, await aio.cluster_map(job.id)

    aio_summaries, aio_rows, aio_map = asyncio.run(through_asyncio())
    assert aio_summaries == summaries and aio_rows == rows and aio_map == client.cluster_map(job.id)

    hdbscan = client.cluster(collection, method="hdbscan", min_cluster_size=10)
    assert hdbscan.state == JobState.SUCCEEDED, hdbscan.error
    found = client.clusters(hdbscan.id)
    assert len([s for s in found if s.cluster >= 0]) >= 2 and sum(s.size for s in found) == len(truth)
    assert int(hdbscan.outputs["noise"]) == sum(s.size for s in found if s.cluster == -1)


def _run(cluster: LocalCluster, *args: str) -> tuple[int, str]:
    cli.console.width = 200
    result = CliRunner().invoke(cli.main, ["--gateway", cluster.gateway_address, *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_cluster_and_map(celery_system: LocalCluster, tmp_path: Path) -> None:
    docs = _slice(per_category=40)
    collection = f"e2e_cl_{uuid.uuid4().hex[:8]}"
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as client:
        assert client.index(docs, collection).state == JobState.SUCCEEDED
    code, out = _run(celery_system, "cluster", collection, "-k", "3")
    assert code == 0 and "SUCCEEDED" in out and "top terms" in out
    job_id = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("id "))
    code, out = _run(celery_system, "clusters", job_id, "--rows", str(tmp_path / "rows.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert code == 0 and len(rows) == len(docs) and set(rows[0]) == {"id", "cluster", "similarity"}
    for name in ("map.png", "map.html"):
        code, out = _run(celery_system, "cluster-map", job_id, "-o", str(tmp_path / name))
        assert code == 0, out
    png = (tmp_path / "map.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    page = (tmp_path / "map.html").read_text()
    assert (
        page.count("<circle") == len(docs)
        and "<script src" not in page
        and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert str(docs[0]["text"])[:40] in page  # the document's text, shown on hover
    counts = Counter(r["cluster"] for r in rows)
    assert sorted(counts) == [0, 1, 2]


@pytest.mark.parametrize(
    ("options", "code", "message"),
    [
        ({"k": 1}, grpc.StatusCode.INVALID_ARGUMENT, "k 1 must be between 2 and 1000"),
        ({"k_min": 10, "k_max": 5}, grpc.StatusCode.INVALID_ARGUMENT, "k_max 5 must be between 10"),
        ({"method": "hdbscan", "k": 4}, grpc.StatusCode.INVALID_ARGUMENT, "HDBSCAN finds k itself"),
        ({"min_cluster_size": 5}, grpc.StatusCode.INVALID_ARGUMENT, "are HDBSCAN settings"),
        ({"sample_size": 10}, grpc.StatusCode.INVALID_ARGUMENT, "sample_size 10 must be between 1000"),
        ({"filter": "metadata[ == "}, grpc.StatusCode.INVALID_ARGUMENT, "Milvus refused the filter"),
        ({"k": 50}, grpc.StatusCode.INVALID_ARGUMENT, "more than the 12 rows"),
        ({"model": "no-such-model"}, grpc.StatusCode.NOT_FOUND, "no-such-model"),
    ],
)
def test_bad_requests_get_the_right_status(
    celery_system: LocalCluster, small_collection: str, options: dict[str, object], code: grpc.StatusCode, message: str
) -> None:
    with EmbedfleetClient(celery_system.gateway_address) as client, pytest.raises(grpc.RpcError) as err:
        client.submit_cluster(small_collection, **options)
    assert err.value.code() == code and message in err.value.details(), err.value.details()


@pytest.fixture(scope="module")
def small_collection(celery_system: LocalCluster) -> str:
    collection = f"e2e_cl_{uuid.uuid4().hex[:8]}"
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as client:
        docs = [{"id": f"s{i}", "text": f"short text number {i}"} for i in range(12)]
        assert client.index(docs, collection).state == JobState.SUCCEEDED
    return collection


def test_unknown_and_foreign_collections_and_other_jobs(celery_system: LocalCluster, small_collection: str) -> None:
    foreign = f"e2e_cl_{uuid.uuid4().hex[:8]}"
    milvus.ensure_collection(
        milvus.connect(celery_system.milvus_uri), foreign, milvus.CollectionBinding("some-other-model", "v1", 768)
    )
    with EmbedfleetClient(celery_system.gateway_address) as client:
        with pytest.raises(grpc.RpcError) as err:
            client.submit_cluster("no_such_collection_here", k=2)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "run an index job" in err.value.details()
        for model in ("", "all-MiniLM-L6-v2"):  # the default model, or named
            with pytest.raises(grpc.RpcError) as err:
                client.submit_cluster(foreign, k=2, model=model)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "holds vectors of 'some-other-model'" in err.value.details()
        index_job = next(j for j in client.list_jobs(state=JobState.SUCCEEDED) if j.kind == "index")
        with pytest.raises(grpc.RpcError) as err:
            client.clusters(index_job.id)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "not a cluster job" in err.value.details()
        job = client.cluster(small_collection, k=2)
        with pytest.raises(grpc.RpcError) as err:
            list(client.cluster_assignments(job.id, page_size=20_000))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "page_size" in err.value.details()


def test_hdbscan_above_the_row_limit_is_refused(celery_system: LocalCluster, small_collection: str) -> None:
    """The gateway's planner with the limit set below the collection's 12 rows (the shared system's is 50,000)."""
    ctx = dataclasses.replace(
        celery_system.gateway.ctx,
        settings=celery_system.gateway.ctx.settings.model_copy(update={"max_hdbscan_rows": 5}),
    )
    stager = PartStager(ctx.store, uuid.uuid4().hex, ctx.datastore, 100)
    request = ClusterRequest(collection=small_collection, method=ClusterMethod.HDBSCAN)
    with pytest.raises(FailedPrecondition, match=r"has 12 rows; HDBSCAN takes at most 5.*use method KMEANS"):
        ClusterPlanner().plan(request, Submission(ctx, stager, iter(())))
    # Under the limit (a filter selecting 4 rows), the same request plans a job of those rows.
    selected = dataclasses.replace(request, filter='doc_id in ["s0", "s1", "s2", "s3"]', min_cluster_size=2)
    plan = ClusterPlanner().plan(selected, Submission(ctx, stager, iter(())))
    assert (plan.total, plan.parts, plan.spec.params.rows) == (4, 1, 4)
