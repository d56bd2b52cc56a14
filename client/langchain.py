"""A LangChain ``Embeddings`` backed by embedfleet (``pip install "embedfleet[langchain]"``):

    from embedfleet.client.langchain import EmbedfleetEmbeddings
    embeddings = EmbedfleetEmbeddings(target="127.0.0.1:50051", model="all-MiniLM-L6-v2")
    vectors = embeddings.embed_documents(["first text", "second text"])
    EmbedfleetEmbeddings("grpcs://embedfleet.example.com:443", api_key="efk_...", ca_file="ca.pem")

Documents are embedded as ``document`` inputs and queries as ``query`` inputs, so models with
prompts get the right one; long lists go in batches of ``batch_size`` (the gateway's Embed limit).
"""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

from embedfleet.client.aio import AsyncEmbedfleetClient
from embedfleet.client.sdk import EmbedfleetClient


class EmbedfleetEmbeddings(Embeddings):
    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        model: str = "",
        dimensions: int = 0,
        batch_size: int = 128,
        **client_options: Any,
    ) -> None:
        """``client_options`` configure the SDK's clients as for ``EmbedfleetClient``: ``api_key`` (a gateway
        with auth on, the default, refuses calls without one), ``ca_file``, ``cert_file``/``key_file``,
        ``timeout``, ``retries``."""
        self.target = target
        self.options: dict[str, Any] = {"model": model, "dimensions": dimensions}
        self.batch_size = batch_size
        self.client_options = client_options
        self._client = EmbedfleetClient(target, **client_options)

    def _embed(self, texts: list[str], input_type: str) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            vectors.extend(self._client.embed(batch, input_type=input_type, **self.options).vectors.tolist())
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts, "document")

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], "query")[0]

    async def _aembed(self, texts: list[str], input_type: str) -> list[list[float]]:
        vectors: list[list[float]] = []
        async with AsyncEmbedfleetClient(self.target, **self.client_options) as client:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                result = await client.embed(batch, input_type=input_type, **self.options)
                vectors.extend(result.vectors.tolist())
        return vectors

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self._aembed(texts, "document")

    async def aembed_query(self, text: str) -> list[float]:
        return (await self._aembed([text], "query"))[0]
