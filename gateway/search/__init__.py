"""Search: embed the query with the collection's own model (version-checked against the binding),
then run the requested mode's strategy, found in one table."""

from __future__ import annotations

from embedfleet import errors
from embedfleet.corpus import check_text
from embedfleet.domain import EmbeddingOptions, InputType, Precision, SearchHit
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.embedding import EmbedCore
from embedfleet.gateway.search.base import SearchQuery, SearchStrategy
from embedfleet.gateway.search.full import FullSearch
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.storable import utf8_size
from embedfleet.wire import unpack_vectors

STRATEGIES: dict[str, SearchStrategy] = {"full": FullSearch()}
MAX_TOP_K = 1000
DEFAULT_TOP_K = 10

__all__ = ["STRATEGIES", "SearchCore", "check_request"]


def check_request(
    query: str, top_k: int, filter_expr: str, mode: str, settings: GatewaySettings
) -> tuple[int, SearchStrategy]:
    """The checks a search request passes before anything is looked up: the ``top_k`` to use (0 means
    10) and the mode's strategy. The query is named as such in errors; it is not a document."""
    check_text(query, "query", settings.max_text_bytes, "query")
    top_k = top_k or DEFAULT_TOP_K
    if not 0 < top_k <= MAX_TOP_K:
        raise errors.InvalidArgument(f"top_k must be between 1 and {MAX_TOP_K} (0 means {DEFAULT_TOP_K})", "top_k")
    limit = settings.max_filter_bytes
    if utf8_size(filter_expr, "filter") > limit:
        raise errors.InvalidArgument(f"filter is longer than {limit} bytes", "filter")
    strategy = STRATEGIES.get(mode)
    if strategy is None:
        raise errors.InvalidArgument(
            f"unknown search mode {errors.echo(mode)}; use one of {', '.join(STRATEGIES)}", "mode"
        )
    return top_k, strategy


class SearchCore:
    def __init__(self, ctx: GatewayContext, embedder: EmbedCore) -> None:
        self.ctx = ctx
        self.embedder = embedder

    def search(
        self, collection: str, query: str, top_k: int, filter_expr: str, mode: str = "full"
    ) -> tuple[list[SearchHit], str]:
        top_k, strategy = check_request(query, top_k, filter_expr, mode, self.ctx.settings)
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
