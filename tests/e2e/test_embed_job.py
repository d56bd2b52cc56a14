"""Embed jobs and the unary Embed RPC against the real model: vectors equal SentenceTransformer's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sentence_transformers import SentenceTransformer

from embedfleet.client.aio import AsyncEmbedfleetClient
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster
from embedfleet.registry import DEFAULT_MODELS


@pytest.fixture(scope="module")
def reference_model() -> SentenceTransformer:
    return SentenceTransformer(str(DEFAULT_MODELS[0].local_path()), device="cpu")


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_embed_job_matches_sentence_transformers(
    client: EmbedfleetClient, reference_model: SentenceTransformer, wordnet_docs: list[dict], tmp_path: Path
) -> None:
    docs = wordnet_docs[300:500]
    vectors = client.embed_corpus(docs, chunk_size=48)
    assert isinstance(vectors, np.ndarray) and vectors.shape == (200, 384)
    expected = reference_model.encode([d["text"] for d in docs], normalize_embeddings=True)
    assert _cosines(vectors, expected).min() >= 0.999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    parquet = client.embed_corpus(docs[:50], output=tmp_path / "v.parquet", chunk_size=16)
    table = pq.read_table(parquet)
    assert table.column("id").to_pylist() == [d["id"] for d in docs[:50]]
    assert np.allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), vectors[:50], atol=1e-6)
    npy = client.embed_corpus(docs[:50], output=tmp_path / "v.npy", chunk_size=16)
    assert np.allclose(np.load(npy), vectors[:50], atol=1e-6)


def test_unary_embed_and_precisions(client: EmbedfleetClient, reference_model: SentenceTransformer) -> None:
    texts = ["A cat sat on the mat.", "Stock markets fell sharply today."]
    result = client.embed(texts)
    expected = reference_model.encode(texts, normalize_embeddings=True)
    assert result.model == "all-MiniLM-L6-v2" and result.model_version.startswith("sha256:")
    assert _cosines(result.vectors, expected).min() >= 0.999
    binary = client.embed(texts, precision="binary").vectors
    assert binary.shape == (2, 48) and np.array_equal(np.unpackbits(binary, axis=1), (expected > 0).astype(np.uint8))
    half = client.embed(texts, precision="float16").vectors
    assert half.dtype == np.float16 and np.allclose(half, expected, atol=2e-3)
    int8 = client.embed(texts, precision="int8").vectors
    assert int8.dtype == np.int8 and int8.shape == (2, 384)


def test_list_models_reports_the_hosting_worker(client: EmbedfleetClient) -> None:
    [model] = client.list_models()
    assert (model.name, model.role, model.dimensions, model.max_seq_length) == ("all-MiniLM-L6-v2", "teacher", 384, 256)
    assert model.is_default and model.workers == 1 and model.version.startswith("sha256:")


def test_async_client(cluster: LocalCluster) -> None:
    async def scenario() -> None:
        async with AsyncEmbedfleetClient(cluster.gateway_address) as aclient:
            job = await aclient.submit_embed([{"id": str(i), "text": f"sentence {i}"} for i in range(10)])
            final = await aclient.wait(job.id)
            assert final.state == JobState.SUCCEEDED
            chunks = [c async for c in aclient.results(job.id)]
            assert [ids for _, _, ids, _ in chunks] == [[str(i) for i in range(10)]]
            assert (await aclient.embed(["hello"])).vectors.shape == (1, 384)
            assert (await aclient.get_job(job.id)).done == 10

    asyncio.run(scenario())
