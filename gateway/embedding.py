"""Interactive embedding: a few texts, answered by a worker through the interactive queue.

The worker's packed bytes are passed through to the reply untouched (no unpack and re-pack here).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from embedfleet import errors
from embedfleet.corpus import check_text
from embedfleet.domain import EmbeddingOptions, Precision
from embedfleet.gateway.context import GatewayContext
from embedfleet.tasks import error_for


@dataclass(frozen=True)
class EmbedResult:
    data: bytes  # EmbeddingBatch.data layout (see embedfleet.wire)
    rows: int
    dimensions: int
    precision: Precision
    model: str
    version: str
    truncated: int


class EmbedCore:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def embed(self, texts: list[str], options: EmbeddingOptions, timeout_s: float | None = None) -> EmbedResult:
        settings = self.ctx.settings
        if not texts:
            raise errors.InvalidArgument("texts is empty: send at least one text", "texts")
        if len(texts) > settings.max_embed_texts:
            raise errors.ResourceExhausted(
                f"{len(texts)} texts exceed the Embed limit of {settings.max_embed_texts}; "
                "submit an embed job for larger batches"
            )
        for i, text in enumerate(texts):
            check_text(text, f"text {i}", settings.max_text_bytes, "texts")
        model = self.ctx.resolve(options)
        request_id = uuid.uuid4().hex
        wait_s = min(timeout_s or settings.embed_timeout_seconds, settings.embed_timeout_seconds)
        payload = {
            "texts": texts,
            "options": model.options.model_dump(mode="json"),
            "dimensions": model.output_dimensions,
        }
        self.ctx.store.put_request(request_id, payload, ttl_s=int(wait_s) + 5)
        self.ctx.dispatcher.dispatch_request(request_id)
        reply = self.ctx.store.wait_reply(request_id, wait_s)
        if reply is None:
            raise errors.DeadlineExceeded(
                f"no worker answered within {wait_s:.0f} s; check that workers are running (embedfleet worker)"
            )
        header, data = reply
        if "error" in header:
            raise error_for(str(header["error"]), str(header["message"]))
        return EmbedResult(
            data=data,
            rows=len(texts),
            dimensions=int(header["dimensions"]),  # type: ignore[call-overload]
            precision=Precision(str(header["precision"])),
            model=str(header["model"]),
            version=str(header["version"]),
            truncated=int(header["truncated"]),  # type: ignore[call-overload]
        )
