"""A collection's index is chosen at creation (SDK and CLI), recorded with the collection and kept:
HNSW with its parameters is built on Milvus Lite and searched with a per-request ef, a later job that
asks for another index is FAILED_PRECONDITION, one that leaves it unset uses the collection's, and bad
settings are INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from embedfleet import milvus
from embedfleet.client import errors
from embedfleet.client.cli import main
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import IndexSpec, JobState
from embedfleet.local import LocalCluster


@pytest.fixture(scope="module")
def lite_client(celery_system: LocalCluster) -> Iterator[EmbedfleetClient]:
    """Index settings are checked by the gateway and built by Milvus: one queue backend is enough."""
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as c:
        yield c


def test_the_index_is_built_recorded_and_kept(
    lite_client: EmbedfleetClient, celery_system: LocalCluster, wordnet_docs: list[dict], tmp_path: Path
) -> None:
    docs = wordnet_docs[:60]
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    collection = f"idx_{uuid.uuid4().hex[:8]}"
    args = ["--gateway", celery_system.gateway_address, "index", str(corpus), "--collection", collection]
    result = CliRunner().invoke(main, [*args, "--index-type", "hnsw", "--index-param", "M=8"])
    assert result.exit_code == 0, result.output

    client = milvus.connect(celery_system.milvus_uri)
    binding = milvus.read_binding(client, collection)
    assert binding is not None and binding.index == IndexSpec(type="HNSW", params={"M": 8, "efConstruction": 200})
    built = client.describe_index(collection, index_name=milvus.VECTOR_FIELD)
    assert built["index_type"] == "HNSW"  # Milvus Lite does not report build parameters back; the binding has them

    hits = lite_client.search(collection, str(docs[7]["text"]), top_k=3, ef=32)
    assert hits[0].id == docs[7]["id"]
    assert lite_client.index(docs[:5], collection).state == JobState.SUCCEEDED  # unset: the collection's index
    with pytest.raises(errors.FailedPrecondition, match=r"indexed with HNSW\(M=8, efConstruction=200\).*IVF_FLAT"):
        lite_client.submit_index(docs[:5], collection, index={"type": "IVF_FLAT"})
    bad = CliRunner().invoke(main, [*args, "--index-type", "HNSW", "--index-param", "M"])
    assert bad.exit_code == 2 and "KEY=INT" in bad.output


def test_bad_index_settings_are_refused_with_the_field(lite_client: EmbedfleetClient) -> None:
    docs = [{"id": "a", "text": "hello"}]
    with pytest.raises(errors.InvalidArgument, match=r"M must be in \[2, 2048\]") as info:
        lite_client.submit_index(docs, f"idx_{uuid.uuid4().hex[:8]}", index={"type": "HNSW", "params": {"M": 1}})
    assert "config.index.params" in info.value.field_violations
    with pytest.raises(errors.InvalidArgument, match="DISKANN is not supported on Milvus Lite") as info:
        lite_client.submit_index(docs, f"idx_{uuid.uuid4().hex[:8]}", index={"type": "DISKANN"})
    assert "config.index.type" in info.value.field_violations
