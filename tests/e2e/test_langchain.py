"""The LangChain adapter against the real system: documents and queries (sync and async) get the
vectors the SDK gives for the same input types, in order, across batches."""

from __future__ import annotations

import asyncio

import numpy as np

from embedfleet.client.langchain import EmbedfleetEmbeddings
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.local import LocalCluster


def test_langchain_embeddings(celery_system: LocalCluster) -> None:
    texts = [f"sentence number {i} about a different topic" for i in range(5)]
    embeddings = EmbedfleetEmbeddings(target=celery_system.gateway_address, batch_size=2)  # three batches
    with EmbedfleetClient(celery_system.gateway_address) as client:
        documents = client.embed(texts, input_type="document").vectors
        query = client.embed([texts[0]], input_type="query").vectors[0]
    assert np.allclose(embeddings.embed_documents(texts), documents, atol=1e-6)
    assert np.allclose(embeddings.embed_query(texts[0]), query, atol=1e-6)
    assert np.allclose(asyncio.run(embeddings.aembed_documents(texts)), documents, atol=1e-6)
    assert np.allclose(asyncio.run(embeddings.aembed_query(texts[0])), query, atol=1e-6)
