"""Search: embed the query with the collection's own model (version-checked against the binding),
then run the requested mode's strategy, found in one table."""

from __future__ import annotations

from embedfleet import errors
from embedfleet.domain import EmbeddingOptions, InputType, Precision, SearchHit
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.embedding import EmbedCore
from embedfleet.gateway.search.base import SearchQuery, SearchStrategy
from embedfleet.gateway.search.full import FullSearch
from embedfleet.wire import unpack_vectors

STRATEGIES: dict[str, SearchStrategy] = {"full": FullSearch()}
MAX_TOP_K = 1000

__all__ = ["STRATEGIES", "SearchCore"]


class SearchCore:
    def __init__(self, ctx: GatewayContext, embedder: EmbedCore) -> None:
        self.ctx = ctx
        self.embedder = embedder

    def search(
        self, collection: str, query: str, top_k: int, filter_expr: str, mode: str = "full"
    ) -> tuple[list[SearchHit], str]:
        if not query.strip():
            raise errors.InvalidArgument("query is empty", "query")
        top_k = top_k or 10
        if top_k > MAX_TOP_K:
            raise errors.InvalidArgument(f"top_k must be at most {MAX_TOP_K}", "top_k")
        limit = self.ctx.settings.max_filter_bytes
        if len(filter_expr.encode()) > limit:
            raise errors.InvalidArgument(f"filter is longer than {limit} bytes", "filter")
        strategy = STRATEGIES.get(mode)
        if strategy is None:
            raise errors.InvalidArgument(f"unknown search mode {mode!r}; use one of {', '.join(STRATEGIES)}", "mode")
        binding = self.ctx.binding(collection)
        if binding is None:
            raise errors.NotFound(f"collection {collection!r} does not exist; run an index job to create it")
        strategy.check(binding)
        options = EmbeddingOptions(model=binding.model, dimensions=binding.dimensions, input_type=InputType.QUERY)
        embedded = self.embedder.embed([query], options)
        if binding.model_version and embedded.version != binding.model_version:
            raise errors.FailedPrecondition(
                f"collection {collection!r} was filled by {binding.model!r} version {binding.model_version}; the "
                f"workers now serve version {embedded.version}, whose vectors are not comparable. Re-index the "
                "collection with the current model."
            )
        vector = unpack_vectors(embedded.data, 1, embedded.dimensions, Precision.FLOAT32)[0]
        hits = strategy.search(self.ctx.milvus_client(), SearchQuery(collection, binding, vector, top_k, filter_expr))
        return hits, binding.model
