"""The index and search paths on the real Milvus 2.3 engine (the C++ standalone server), not only on
Milvus Lite: an index job with bits and int8 codes writes every row once, full and binary search and
filters agree, and what 2.3 cannot store (a second vector field) is refused at submission."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from embedfleet import milvus
from embedfleet.client import errors
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster


@pytest.fixture(scope="module")
def server_client(milvus_server_system: LocalCluster) -> Iterator[EmbedfleetClient]:
    with EmbedfleetClient(milvus_server_system.gateway_address, timeout=120) as c:
        yield c


def _count(cluster: LocalCluster, collection: str) -> int:
    client = milvus.connect(cluster.milvus_uri)
    rows = client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


def test_index_and_search_on_the_real_engine(
    server_client: EmbedfleetClient, milvus_server_system: LocalCluster, wordnet_docs: list[dict]
) -> None:
    docs = wordnet_docs[:200]
    collection = f"srv_{uuid.uuid4().hex[:8]}"
    fields = [{"name": "bits", "precision": "binary"}, {"name": "codes", "precision": "int8"}]
    index = {"type": "IVF_FLAT", "params": {"nlist": 16}}
    job = server_client.index(docs, collection, chunk_size=64, extra_fields=fields, index=index)
    assert job.state == JobState.SUCCEEDED, [c.message for c in job.failed_chunks]
    assert server_client.index(docs, collection, extra_fields=fields).state == JobState.SUCCEEDED  # upserts
    assert _count(milvus_server_system, collection) == len(docs)
    built = milvus.connect(milvus_server_system.milvus_uri).describe_index(collection, index_name=milvus.VECTOR_FIELD)
    assert (built["index_type"], str(built["nlist"])) == ("IVF_FLAT", "16")

    queries = [str(docs[i]["text"]) for i in (5, 88, 190)]
    full = server_client.search_many(collection, queries, top_k=5, nprobe=16)  # every list: exact
    binary = server_client.search_many(collection, queries, top_k=5, mode="binary", candidates=len(docs))
    assert [[h.id for h in hits] for hits in binary] == [[h.id for h in hits] for hits in full]
    assert [hits[0].id for hits in full] == [docs[i]["id"] for i in (5, 88, 190)]

    lexname = docs[5]["metadata"]["lexname"]
    where = f'metadata["lexname"] == "{lexname}"'
    for mode in ("full", "binary"):
        hits = server_client.search(collection, queries[0], top_k=5, filter=where, mode=mode, candidates=len(docs))
        assert hits and hits[0].id == docs[5]["id"]
        assert all(json.loads(h.metadata_json)["lexname"] == lexname for h in hits)


def test_a_second_vector_field_is_refused_on_milvus_2_3(server_client: EmbedfleetClient) -> None:
    with pytest.raises(errors.FailedPrecondition, match=r"Milvus 2\.3\.5 allows one vector field.*2\.4.*copy"):
        server_client.submit_index(
            [{"id": "a", "text": "hello"}],
            f"srv_{uuid.uuid4().hex[:8]}",
            extra_fields=[{"name": "copy"}],
        )
