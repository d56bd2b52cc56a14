"""Search strategies against a real Milvus Lite server, on vectors written by the real sink: funnel
and binary equal full when the shortlist covers the collection, and refuse collections that lack
their field."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from fakes import FAKE_SPEC, HashEncoder
from pymilvus import MilvusClient

from embedfleet import milvus
from embedfleet.domain import BitBasis, Document, InputType, Precision, VectorField
from embedfleet.errors import FailedPrecondition
from embedfleet.gateway.search import STRATEGIES
from embedfleet.gateway.search.base import SearchQuery
from embedfleet.gateway.search.binary import BinarySearch
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.postprocess import postprocess

N = 120
FIELDS = (
    VectorField(name="v4", dimensions=4),
    VectorField(name="v8", dimensions=8),
    VectorField(name="bits", precision=Precision.BINARY),
)


def _write(client: MilvusClient, collection: str, docs: list[Document], fields: tuple[VectorField, ...]) -> None:
    encoder = HashEncoder()
    raw = encoder.encode([d.text for d in docs], InputType.DOCUMENT).vectors
    stored = milvus.stored_fields(FAKE_SPEC, fields)
    extra = {
        f.name: postprocess(raw, dimensions=f.dimensions, normalize=True, precision=f.precision, bits=f.bits)
        for f in stored
    }
    full = postprocess(raw, dimensions=16, normalize=True, precision=Precision.FLOAT32)
    binding = milvus.CollectionBinding(FAKE_SPEC.name, encoder.version, 16, stored)
    MilvusSink(client, max_batch_bytes=1 << 20).write(collection, binding, docs, full, extra, {})


@pytest.fixture
def client(milvus_uri: str) -> MilvusClient:
    return milvus.connect(milvus_uri)


@pytest.fixture
def collection(client: MilvusClient) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    docs = [
        Document(id=f"d{i}", text=f"text {i}", metadata_json=f'{{"even": {str(i % 2 == 0).lower()}}}') for i in range(N)
    ]
    _write(client, name, docs, FIELDS)
    yield name
    client.drop_collection(name)


def _query(
    client: MilvusClient,
    collection: str,
    candidates: int,
    filter: str = "",
    texts: tuple[str, ...] = ("query one", "query two"),
    input_type: InputType = InputType.QUERY,
) -> SearchQuery:
    binding = milvus.read_binding(client, collection)
    assert binding is not None
    raw = HashEncoder().encode(list(texts), input_type).vectors
    vectors = postprocess(raw, dimensions=16, normalize=True, precision=Precision.FLOAT32)
    return SearchQuery(collection, binding, vectors, 10, filter, candidates)


def _ids(results: list[list[object]]) -> list[list[str]]:
    return [[h.id for h in hits] for hits in results]  # type: ignore[attr-defined]


def _single_prefix(client: MilvusClient) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:10]}"
    _write(client, name, [Document(id=f"d{i}", text=f"text {i}") for i in range(N)], (FIELDS[0],))
    yield name
    client.drop_collection(name)


def test_funnel_and_binary_equal_full_when_the_shortlist_covers_everything(
    client: MilvusClient, collection: str
) -> None:
    query = _query(client, collection, candidates=N)
    full = STRATEGIES["full"].search(client, query)  # type: ignore[index]
    binary = STRATEGIES["binary"].search(client, query)  # type: ignore[index]
    assert _ids(binary) == _ids(full)
    assert np.allclose([h.score for h in binary[0]], [h.score for h in full[0]], atol=1e-5)
    for name in _single_prefix(client):  # one prefix field: no intermediate halving
        single = _query(client, name, candidates=N)
        assert _ids(STRATEGIES["funnel"].search(client, single)) == _ids(STRATEGIES["full"].search(client, single))  # type: ignore[index]


def test_multi_stage_funnel_keeps_most_of_the_full_results(client: MilvusClient, collection: str) -> None:
    query = _query(client, collection, candidates=N)
    full = _ids(STRATEGIES["full"].search(client, query))  # type: ignore[index]
    funnel = _ids(STRATEGIES["funnel"].search(client, query))  # type: ignore[index]
    overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(full, funnel, strict=True)])
    assert overlap >= 0.5 and all(len(ids) == 10 for ids in funnel)


def test_binary_applies_the_filter_and_follows_new_rows(client: MilvusClient, collection: str) -> None:
    strategy = BinarySearch()
    hits = strategy.search(client, _query(client, collection, candidates=N, filter='metadata["even"] == true'))
    assert hits[0] and all(int(h.id[1:]) % 2 == 0 for h in hits[0])
    _write(client, collection, [Document(id="late", text="a late text")], FIELDS)
    late = strategy.search(
        client, _query(client, collection, N + 1, texts=("a late text",), input_type=InputType.DOCUMENT)
    )
    assert late[0][0].id == "late"  # the cached bits index was rebuilt for the new row


@pytest.mark.parametrize("bits", list(BitBasis))
def test_binary_reads_the_bits_in_the_basis_they_were_written_in(client: MilvusClient, bits: BitBasis) -> None:
    """A document's own text finds it through a short Hamming shortlist only if the query's bits are
    taken in the field's basis; the field lists it (a Matryoshka model, as here, defaults to rotated)."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    docs = [Document(id=f"d{i}", text=f"text {i}") for i in range(N)]
    _write(client, name, docs, (VectorField(name="bits", precision=Precision.BINARY, bits=bits),))
    try:
        binding = milvus.read_binding(client, name)
        assert binding is not None and binding.fields[0].bits == bits
        own = tuple(docs[i].text for i in range(0, N, 7))
        query = _query(client, name, candidates=4, texts=own, input_type=InputType.DOCUMENT)
        found = [hits[0].id for hits in BinarySearch().search(client, query)]
        assert found == [docs[i].id for i in range(0, N, 7)]
    finally:
        client.drop_collection(name)
    default = milvus.stored_fields(FAKE_SPEC, (VectorField(name="bits", precision=Precision.BINARY),))
    assert default[0].bits == BitBasis.ROTATED


def test_modes_refuse_collections_without_their_field(client: MilvusClient) -> None:
    for name in _single_prefix(client):
        binding = milvus.read_binding(client, name)
        assert binding is not None
        with pytest.raises(FailedPrecondition, match='"precision": "binary"'):
            STRATEGIES["binary"].check(binding)  # type: ignore[index]
    bare = milvus.CollectionBinding(FAKE_SPEC.name, "v", 16, ())
    with pytest.raises(FailedPrecondition, match='"dimensions": 128'):
        STRATEGIES["funnel"].check(bare)  # type: ignore[index]


class CountingReads:
    """The real client, with every ``query`` call's output fields recorded (what a rescoring read costs)."""

    def __init__(self, client: MilvusClient) -> None:
        self._client = client
        self.reads: list[list[str]] = []

    def query(self, *args: object, **kwargs: object) -> object:
        self.reads.append(list(kwargs.get("output_fields") or []))  # type: ignore[call-overload]
        return self._client.query(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self._client, name)


@pytest.mark.parametrize("mode", ["binary", "funnel"])
def test_a_batch_is_rescored_in_a_few_reads_and_only_its_hits_bring_their_texts(
    client: MilvusClient, collection: str, mode: str
) -> None:
    """A batch of 8 queries reads its shortlists once per stage, whatever the batch size (it read once per
    query before), and the texts and metadata only of the rows it returns."""
    texts = tuple(f"query number {i}" for i in range(8))
    query = _query(client, collection, candidates=40, texts=texts)
    counting = CountingReads(client)
    results = STRATEGIES[mode].search(counting, query)  # type: ignore[index,arg-type]
    assert [len(r) for r in results] == [10] * 8
    vector_reads = [r for r in counting.reads if milvus.VECTOR_FIELD in r or "v8" in r]
    text_reads = [r for r in counting.reads if milvus.TEXT_FIELD in r]
    assert len(vector_reads) == (1 if mode == "binary" else 2)  # funnel: v8, then the full vector
    assert len(text_reads) == 1 and not any(milvus.TEXT_FIELD in r for r in vector_reads)
    assert _ids(results) == _ids(STRATEGIES[mode].search(client, query))  # type: ignore[index]
