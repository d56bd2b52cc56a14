"""Search: embed the queries with the collection's own model (version-checked against the binding),
then run the requested mode's strategy, found in one table."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet import errors
from embedfleet.corpus import check_text
from embedfleet.domain import EmbeddingOptions, InputType, Precision, SearchHit, SearchMode
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.embedding import EmbedCore
from embedfleet.gateway.search.base import SearchQuery, SearchStrategy
from embedfleet.gateway.search.binary import BinarySearch
from embedfleet.gateway.search.full import FullSearch
from embedfleet.gateway.search.funnel import FunnelSearch
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.storable import utf8_size
from embedfleet.wire import unpack_vectors

STRATEGIES: dict[SearchMode, SearchStrategy] = {
    SearchMode.FULL: FullSearch(),
    SearchMode.FUNNEL: FunnelSearch(),
    SearchMode.BINARY: BinarySearch(),
}
MAX_TOP_K = 1000
MAX_CANDIDATES = 10_000
DEFAULT_CANDIDATES_PER_HIT = 10
DEFAULT_TOP_K = 10

__all__ = ["STRATEGIES", "SearchCore", "SearchRequest", "check_request"]


@dataclass(frozen=True)
class SearchRequest:
    collection: str
    queries: tuple[str, ...]
    top_k: int = 0
    filter: str = ""
    mode: SearchMode = SearchMode.FULL
    candidates: int = 0
    ef: int = 0
    nprobe: int = 0


@dataclass(frozen=True)
class SearchAnswer:
    results: list[list[SearchHit]]  # one list per query, in request order
    model: str


def check_request(request: SearchRequest, settings: GatewaySettings) -> tuple[int, int]:
    """The checks a search passes before anything is looked up; returns (top_k, candidates) with the
    defaults applied (top_k 0 means 10, candidates 0 means 10 x top_k). Queries are named as such in
    errors: they are not documents."""
    if not request.queries:
        raise errors.InvalidArgument("no query: set query (or queries)", "query")
    if len(request.queries) > settings.max_embed_texts:
        raise errors.InvalidArgument(
            f"{len(request.queries)} queries in one call; at most {settings.max_embed_texts}", "queries"
        )
    for i, text in enumerate(request.queries):
        check_text(text, "query" if i == 0 else f"query {i}", settings.max_text_bytes, "query" if i == 0 else "queries")
    top_k = request.top_k or DEFAULT_TOP_K
    if not 0 < top_k <= MAX_TOP_K:
        raise errors.InvalidArgument(f"top_k must be between 1 and {MAX_TOP_K} (0 means {DEFAULT_TOP_K})", "top_k")
    candidates = request.candidates or min(MAX_CANDIDATES, DEFAULT_CANDIDATES_PER_HIT * top_k)
    if not top_k <= candidates <= MAX_CANDIDATES:
        raise errors.InvalidArgument(f"candidates must be between top_k ({top_k}) and {MAX_CANDIDATES}", "candidates")
    if utf8_size(request.filter, "filter") > settings.max_filter_bytes:
        raise errors.InvalidArgument(f"filter is longer than {settings.max_filter_bytes} bytes", "filter")
    return top_k, candidates


class SearchCore:
    def __init__(self, ctx: GatewayContext, embedder: EmbedCore) -> None:
        self.ctx = ctx
        self.embedder = embedder

    def search(self, request: SearchRequest) -> SearchAnswer:
        top_k, candidates = check_request(request, self.ctx.settings)
        strategy = STRATEGIES[request.mode]
        collection = self.ctx.collection(request.collection)
        binding = self.ctx.binding(collection)
        if binding is None:
            raise errors.NotFound(f"collection {request.collection!r} does not exist; run an index job to create it")
        strategy.check(binding)
        options = EmbeddingOptions(model=binding.model, dimensions=binding.dimensions, input_type=InputType.QUERY)
        embedded = self.embedder.embed(list(request.queries), options)
        if binding.model_version and embedded.version != binding.model_version:
            raise errors.FailedPrecondition(
                f"collection {request.collection!r} was filled by {binding.model!r} version "
                f"{binding.model_version}; the workers now serve version {embedded.version}, whose vectors are not "
                "comparable. Re-index the collection with the current model."
            )
        vectors = unpack_vectors(embedded.data, embedded.rows, embedded.dimensions, Precision.FLOAT32)
        query = SearchQuery(collection, binding, vectors, top_k, request.filter, candidates, request.ef, request.nprobe)
        return SearchAnswer(strategy.search(self.ctx.milvus_client(), query), binding.model)
