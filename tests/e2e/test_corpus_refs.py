"""Corpora by reference end to end (Celery worker, real model, Milvus Lite): the gateway plans parts
from the files, the worker reads them; Milvus row counts are exact and a bad record fails only its
part, named by file and line."""

from __future__ import annotations

import gzip
import json
import uuid

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from embedfleet import milvus
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster


def _count(cluster: LocalCluster, collection: str) -> int:
    client = milvus.connect(cluster.milvus_uri)
    return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


@pytest.fixture(scope="module")
def celery_client(celery_system: LocalCluster) -> EmbedfleetClient:
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as c:
        yield c  # type: ignore[misc]


def test_a_multi_file_parquet_corpus_in_the_store_with_renamed_columns_and_a_repeated_id(
    celery_client: EmbedfleetClient, celery_system: LocalCluster, wordnet_docs: list[dict]
) -> None:
    folder = celery_system.data_dir / "data" / "corpora" / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    docs = [dict(d) for d in wordnet_docs[:230]]
    docs[150]["id"] = docs[10]["id"]  # a repeat across files and parts: counted, the collection keeps one row
    for i, start in enumerate(range(0, 230, 60)):
        shard = docs[start : start + 60]
        rows = [{"key": d["id"], "body": d["text"], "meta": json.dumps(d["metadata"])} for d in shard]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"shard-{i}.parquet", row_group_size=25)
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    job = celery_client.submit_index(
        None,
        collection,
        source_uri=f"corpora/{folder.name}/*.parquet",
        columns={"id": "key", "text": "body", "metadata": "meta"},
        chunk_size=64,
    )
    assert (job.total, job.chunks_total) == (230, 4)
    final = celery_client.wait(job.id)
    assert (final.state, final.done, final.failed) == (JobState.SUCCEEDED, 230, 0), final.error
    assert _count(celery_system, collection) == 229
    assert final.metrics["repeated_ids"] == 1
    assert final.outputs["first_repeated_id"] == f"document 150: id {docs[10]['id']!r} was already used by document 10"
    hit = celery_client.search(collection, str(docs[100]["text"]), top_k=1)[0]
    assert hit.id == docs[100]["id"] and json.loads(hit.metadata_json) == docs[100]["metadata"]


def test_gzip_jsonl_files_by_path_and_a_bad_line_in_file_three(
    celery_client: EmbedfleetClient, celery_system: LocalCluster, wordnet_docs: list[dict]
) -> None:
    folder = celery_system.corpus_dirs[0] / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    docs = wordnet_docs[300:420]
    for i, name in enumerate("abc"):
        lines = [json.dumps(d) for d in docs[i * 40 : (i + 1) * 40]]
        if name == "c":
            lines[9] = '{"id": "broken", "text": '  # line 10 of file 3: row 89, in part 4 (rows 80-99)
        (folder / f"{name}.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    job = celery_client.submit_index(None, collection, source_uri=str(folder), chunk_size=20)
    assert (job.total, job.chunks_total) == (120, 6)
    final = celery_client.wait(job.id)
    assert (final.state, final.done, final.failed) == (JobState.FAILED, 100, 20)
    [failure] = final.failed_chunks
    assert failure.chunk_index == 4 and "c.jsonl.gz:10: not valid JSON" in failure.message
    assert _count(celery_system, collection) == 100


def test_references_outside_the_store_and_allowed_dirs_are_refused(celery_client: EmbedfleetClient) -> None:
    cases = [
        ("/etc/passwd", grpc.StatusCode.FAILED_PRECONDITION, "outside the gateway's allowed corpus dirs"),
        ("../../etc", grpc.StatusCode.INVALID_ARGUMENT, "inside the dataset store"),
        ("s3://elsewhere/x.parquet", grpc.StatusCode.FAILED_PRECONDITION, "not in this gateway's dataset store"),
        ("nothing-here/*.parquet", grpc.StatusCode.NOT_FOUND, "matches no corpus files"),
    ]
    for uri, code, message in cases:
        with pytest.raises(grpc.RpcError) as err:
            celery_client.submit_embed(None, source_uri=uri)
        assert (err.value.code(), message in err.value.details()) == (code, True), err.value.details()


def test_a_streamed_submission_lands_as_shards_and_a_refused_one_leaves_none(
    celery_client: EmbedfleetClient, celery_system: LocalCluster, wordnet_docs: list[dict], redis_client: redis.Redis
) -> None:
    jobs_dir = celery_system.data_dir / "data" / "jobs"
    before = set(jobs_dir.iterdir()) if jobs_dir.is_dir() else set()
    docs = [dict(d) for d in wordnet_docs[500:800]]
    docs[250] = {"id": "blank", "text": "   "}
    with pytest.raises(grpc.RpcError) as err:
        celery_client.submit_embed(docs, chunk_size=64)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "document 250" in err.value.details()
    assert (set(jobs_dir.iterdir()) if jobs_dir.is_dir() else set()) == before

    job = celery_client.submit_embed(docs[:250], chunk_size=64)
    shard = jobs_dir / job.id / "input" / "shard-00000.parquet"
    table = pq.read_table(shard)
    assert table.num_rows == 250 and pq.ParquetFile(shard).num_row_groups == 4  # one row group per part
    assert table.column("id").to_pylist() == [d["id"] for d in docs[:250]]
    keys = {k.decode() for k in redis_client.scan_iter(match=f"{celery_system.key_prefix}job:{job.id}*")}
    assert not [k for k in keys if ":in:" in k]  # no document text in Redis
    assert celery_client.wait(job.id).state == JobState.SUCCEEDED


def test_embed_results_are_parquet_files_in_the_store_equal_to_the_model(
    celery_client: EmbedfleetClient, celery_system: LocalCluster, wordnet_docs: list[dict], redis_client: redis.Redis
) -> None:
    from sentence_transformers import SentenceTransformer

    from embedfleet.registry import DEFAULT_MODELS

    docs = wordnet_docs[900:1000]
    output = f"results/{uuid.uuid4().hex[:8]}"
    job = celery_client.submit_embed(docs, chunk_size=32, output_uri=output)
    final = celery_client.wait(job.id)
    assert final.state == JobState.SUCCEEDED, final.error
    directory = celery_system.data_dir / "data" / output
    assert final.results_uri == str(directory)
    files = sorted(directory.glob("part-*.parquet"))
    assert [f.name for f in files] == [f"part-{i:05d}.parquet" for i in range(4)]
    table = pa.concat_tables(pq.read_table(f) for f in files)
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    model = SentenceTransformer(str(DEFAULT_MODELS[0].local_path()), device="cpu")
    expected = model.encode([d["text"] for d in docs], normalize_embeddings=True)
    assert table.column("id").to_pylist() == [d["id"] for d in docs]
    assert np.min(np.sum(vectors * expected, axis=1)) >= 0.999
    streamed = np.concatenate([v for _, _, _, v in celery_client.results(job.id)])
    assert np.array_equal(streamed, vectors)
    assert not list(redis_client.scan_iter(match=f"{celery_system.key_prefix}job:{job.id}:out:*"))
    with pytest.raises(grpc.RpcError) as err:
        celery_client.submit_embed(docs[:5], output_uri=output)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "already holds files" in err.value.details()


def test_resume_after_cancel_writes_only_the_rest(
    celery_client: EmbedfleetClient, celery_system: LocalCluster, wordnet_docs: list[dict]
) -> None:
    import time

    store = celery_system.gateway.ctx.store
    docs = wordnet_docs[1000:1640]
    job = celery_client.submit_embed(docs, chunk_size=8)  # 80 parts
    while celery_client.get_job(job.id).done < 24:
        time.sleep(0.05)
    assert celery_client.cancel_job(job.id).state == JobState.CANCELLED
    while any(store.part_state(job.id, p) == "running" for p in range(80)):
        time.sleep(0.2)  # a part running at the cancel finishes and is counted
    directory = celery_system.data_dir / "data" / "jobs" / job.id / "results"
    written = {f.name: f.stat().st_mtime_ns for f in directory.glob("part-*.parquet")}
    assert 3 <= len(written) < 80
    with pytest.raises(grpc.RpcError) as err:
        celery_client.resume_job(uuid.uuid4().hex)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    resumed = celery_client.resume_job(job.id)
    # Counted from where the cancel left it (a resumed part may already have finished by the reply).
    assert resumed.state in (JobState.QUEUED, JobState.RUNNING) and resumed.done >= 8 * len(written)
    final = celery_client.wait(job.id)
    assert (final.state, final.done, final.chunks_finished) == (JobState.SUCCEEDED, 640, 80)
    after = {f.name: f.stat().st_mtime_ns for f in directory.glob("part-*.parquet")}
    assert len(after) == 80 and all(after[name] == mtime for name, mtime in written.items())  # not rewritten
    ids = [i for _, _, chunk_ids, _ in celery_client.results(job.id) for i in chunk_ids]
    assert ids == [d["id"] for d in docs]
    with pytest.raises(grpc.RpcError) as err:
        celery_client.resume_job(job.id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "is SUCCEEDED" in err.value.details()


def test_redis_holds_only_control_state_for_a_100k_document_job(
    celery_client: EmbedfleetClient, celery_system: LocalCluster, redis_client: redis.Redis
) -> None:
    folder = celery_system.data_dir / "data" / "big"
    folder.mkdir(parents=True, exist_ok=True)
    n = 100_000
    texts = [f"document {i} about the weather, markets and {i % 97} other things" for i in range(n)]
    pq.write_table(pa.table({"id": [f"b{i}" for i in range(n)], "text": texts}), folder / "big.parquet")
    job = celery_client.submit_index(None, f"e2e_{uuid.uuid4().hex[:8]}", source_uri="big/big.parquet")
    celery_client.cancel_job(job.id)
    # Parts are cut by estimated tokens (about 16k a part): fewer than 391 parts of the 256-document default.
    assert job.total == n and 1 < job.chunks_total < 391
    keys = list(redis_client.scan_iter(match=f"{celery_system.key_prefix}job:{job.id}*"))
    used = sum(int(redis_client.memory_usage(k) or 0) for k in keys)
    assert len(keys) <= 6  # record, part states, failures, metrics, outputs, events: not one per document
    assert used < 64 * job.chunks_total + 16_384, used  # part states and the spec: ~0.1 byte per document
