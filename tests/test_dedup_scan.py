"""Reading a collection back from a real Milvus Lite server: every row once in bounded batches, with a
filter; a uniform reservoir sample; filters checked before they reach Milvus."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from fakes import FAKE_SPEC, HashEncoder
from pymilvus import MilvusClient

from embedfleet import collection_scan, milvus
from embedfleet.domain import Document, InputType, Precision
from embedfleet.errors import InvalidArgument
from embedfleet.ids import primary_key
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.postprocess import postprocess

N = 250


@pytest.fixture
def client(milvus_uri: str) -> MilvusClient:
    return milvus.connect(milvus_uri)


@pytest.fixture
def collection(client: MilvusClient) -> Iterator[str]:
    name = f"scan_{uuid.uuid4().hex[:10]}"
    docs = [Document(id=f"d{i}", text=f"text {i}", metadata_json=f'{{"i": {i}}}') for i in range(N)]
    encoder = HashEncoder()
    raw = encoder.encode([d.text for d in docs], InputType.DOCUMENT).vectors
    vectors = postprocess(raw, dimensions=16, normalize=True, precision=Precision.FLOAT32)
    binding = milvus.CollectionBinding(FAKE_SPEC.name, encoder.version, 16)
    MilvusSink(client, max_batch_bytes=1 << 20).write(name, binding, docs, vectors, {}, {})
    yield name
    client.drop_collection(name)


def test_a_scan_reads_every_row_once_in_bounded_batches(client: MilvusClient, collection: str) -> None:
    batches = list(collection_scan.scan(client, collection, with_text=True, batch_rows=64))
    assert max(len(b) for b in batches) <= 64 and len(batches) >= 4
    rows = collection_scan.RowBatch.concat(batches, 16)
    assert sorted(rows.ids) == sorted(f"d{i}" for i in range(N))
    assert rows.texts[rows.ids.index("d7")] == "text 7"
    assert rows.pks[rows.ids.index("d7")] == primary_key(collection, "d7")
    np.testing.assert_allclose(np.linalg.norm(rows.vectors, axis=1), 1.0, atol=1e-5)
    assert collection_scan.count(client, collection) == N


def test_a_filter_selects_the_subset(client: MilvusClient, collection: str) -> None:
    rows = collection_scan.RowBatch.concat(
        list(collection_scan.scan(client, collection, expr="metadata['i'] < 10")), 16
    )
    assert sorted(rows.ids) == sorted(f"d{i}" for i in range(10))
    assert collection_scan.count(client, collection, "metadata['i'] < 10") == 10


def test_a_bad_filter_is_invalid_argument_at_the_probe(client: MilvusClient, collection: str) -> None:
    with pytest.raises(InvalidArgument, match="fix the expression"):
        collection_scan.probe(client, collection, "no_such_field >>> 3")
    with pytest.raises(InvalidArgument, match="control characters"):
        collection_scan.check_filter("i < 3\n or 1")
    with pytest.raises(InvalidArgument, match="longer than"):
        collection_scan.check_filter("x" * 5000)


def test_the_reservoir_sample_is_uniform_and_bounded() -> None:
    n, size = 20_000, 500
    batches = (
        collection_scan.RowBatch(
            np.arange(s, s + 1000, dtype=np.int64),
            [str(i) for i in range(s, s + 1000)],
            np.full((1000, 2), s, np.float32),
            [],
        )
        for s in range(0, n, 1000)
    )
    sample = collection_scan.sample(batches, size, 2, seed=1)
    assert len(sample) == size and len(set(sample.pks.tolist())) == size
    assert sample.ids == [str(p) for p in sample.pks]  # rows stay whole
    # Uniform: each half of the stream holds about half the sample (binomial sd ~11).
    assert abs(int((sample.pks < n // 2).sum()) - size // 2) < 60
