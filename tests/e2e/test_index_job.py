"""An index job end to end: SDK -> gateway -> Celery -> real worker and model -> Milvus Lite."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import grpc
import pytest

from embedfleet import milvus
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster


def _count(cluster: LocalCluster, collection: str) -> int:
    client = milvus.connect(cluster.milvus_uri)
    return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def test_index_job_writes_every_document_once_and_is_searchable(
    client: EmbedfleetClient, cluster: LocalCluster, wordnet_docs: list[dict], tmp_path: Path
) -> None:
    docs = wordnet_docs[:300]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    collection = f"e2e_{uuid.uuid4().hex[:8]}"

    updates = []
    job = client.submit_index(corpus, collection, chunk_size=64, display_name="wordnet-300")
    assert job.state == JobState.QUEUED and job.total == 300 and job.chunks_total == 5
    for update in client.watch(job.id):
        updates.append(update)
    final = updates[-1]
    assert final.state == JobState.SUCCEEDED, final.error
    assert (final.done, final.failed) == (300, 0)
    assert final.docs_per_second > 0
    assert [u.done for u in updates] == sorted(u.done for u in updates)  # progress only moves forward
    assert _count(cluster, collection) == 300

    # The same corpus again is an upsert: still 300 rows.
    assert client.index(corpus, collection).state == JobState.SUCCEEDED
    assert _count(cluster, collection) == 300

    target = docs[42]
    hits = client.search(collection, str(target["text"]), top_k=3)
    assert hits[0].id == target["id"] and hits[0].score > 0.95
    assert json.loads(hits[0].metadata_json) == target["metadata"]
    lexname = target["metadata"]["lexname"]  # type: ignore[index]
    filtered = client.search(collection, "anything", top_k=5, filter=f'metadata["lexname"] == "{lexname}"')
    assert filtered and all(json.loads(h.metadata_json)["lexname"] == lexname for h in filtered)


def test_collection_of_another_model_is_refused(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    milvus.ensure_collection(
        milvus.connect(cluster.milvus_uri), collection, milvus.CollectionBinding("some-other-model", "v1", 768)
    )
    with pytest.raises(grpc.RpcError) as err:
        client.submit_index([{"id": "a", "text": "hello"}], collection)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "768-d vectors of model 'some-other-model'" in err.value.details()


def test_server_side_corpus_and_truncation(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    corpora = cluster.corpus_dirs[0]
    corpora.mkdir(parents=True, exist_ok=True)
    path = corpora / "long.jsonl"
    long_text = "the quick brown fox jumps over the lazy dog " * 80  # ~800 tokens > 256-token window
    path.write_text(json.dumps({"id": "long", "text": long_text}) + "\n" + json.dumps({"id": "short", "text": "hi"}))
    job = client.wait(client.submit_index(None, f"e2e_{uuid.uuid4().hex[:8]}", server_path=str(path)).id)
    assert (job.state, job.done, job.truncated) == (JobState.SUCCEEDED, 2, 1)


def test_extra_representations_through_the_api(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    docs = [{"id": f"x{i}", "text": f"representation test sentence {i}"} for i in range(20)]
    fields = [{"name": "bits", "precision": "binary"}, {"name": "codes", "precision": "int8"}]
    job = client.index(docs, collection, extra_fields=fields)
    assert job.state == JobState.SUCCEEDED, job.error
    row = milvus.connect(cluster.milvus_uri).query(collection, filter='doc_id == "x1"', output_fields=["bits", "codes"])
    assert len(row[0]["bits"]) == 6 and len(row[0]["codes"]) == 384  # 384 bits in six int64 words
    with pytest.raises(grpc.RpcError) as err:
        client.submit_index(docs, collection)  # the collection carries bits and codes: a job must write them
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "must write exactly those" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.submit_index(docs, collection, extra_fields=[{"name": "v128", "dimensions": 128}, *fields])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot output 128 dimensions" in err.value.details()
