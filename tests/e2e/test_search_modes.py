"""Search modes through the gRPC API, the SDK and the CLI, on real embeddings and both backends:
binary (rotated bits then float rescoring) equals full when the shortlist covers the collection and
finds a document's own text in a default shortlist (the query's bits rotated as the stored ones were),
a batch of queries is answered in order, and a mode the collection cannot serve is FAILED_PRECONDITION."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

from embedfleet.client import errors
from embedfleet.client.cli import main
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import BitBasis, JobState, Precision
from embedfleet.local import LocalCluster


@pytest.fixture(scope="module")
def indexed(client: EmbedfleetClient, wordnet_docs: list[dict]) -> tuple[str, list[dict]]:
    docs = wordnet_docs[:200]
    collection = f"modes_{uuid.uuid4().hex[:8]}"
    bits = [{"name": "bits", "precision": "binary", "bits": "rotated"}]  # asked for: MiniLM defaults to axes
    job = client.index(docs, collection, extra_fields=bits)
    assert job.state == JobState.SUCCEEDED, job.error
    (field,) = client.get_collection(collection).fields
    assert (field.name, field.precision, field.bits) == ("bits", Precision.BINARY, BitBasis.ROTATED)
    return collection, docs


def test_binary_equals_full_when_the_shortlist_covers_the_collection(
    client: EmbedfleetClient, indexed: tuple[str, list[dict]]
) -> None:
    collection, docs = indexed
    queries = [str(docs[i]["text"]) for i in (3, 77, 150)]
    full = client.search_many(collection, queries, top_k=5)
    binary = client.search_many(collection, queries, top_k=5, mode="binary", candidates=len(docs))
    assert [[h.id for h in hits] for hits in binary] == [[h.id for h in hits] for hits in full]
    assert [hits[0].id for hits in full] == [docs[i]["id"] for i in (3, 77, 150)]
    default = client.search(collection, queries[0], top_k=5, mode="binary")  # candidates 10 x top_k
    assert default[0].id == docs[3]["id"]


def test_a_mode_the_collection_lacks_is_refused(client: EmbedfleetClient, indexed: tuple[str, list[dict]]) -> None:
    collection, _ = indexed
    with pytest.raises(errors.FailedPrecondition, match="Matryoshka prefix field"):
        client.search(collection, "a query", mode="funnel")
    with pytest.raises(errors.InvalidArgument) as info:
        client.search(collection, "a query", top_k=50, candidates=10)
    assert "candidates" in info.value.field_violations


def test_cli_search_mode(cluster: LocalCluster, indexed: tuple[str, list[dict]]) -> None:
    collection, docs = indexed
    result = CliRunner().invoke(
        main, ["--gateway", cluster.gateway_address, "search", collection, str(docs[9]["text"]), "--mode", "binary"]
    )
    assert result.exit_code == 0, result.output
    assert str(docs[9]["id"]) in result.output
