"""Search: embed the queries with the collection's own model (version-checked against the binding),
then run the requested mode's strategy, found in one table."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet import errors
from embedfleet.domain import EmbeddingOptions, InputType, Precision, SearchHit, SearchMode
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.embedding import EmbedCore
from embedfleet.gateway.search.base import SearchQuery, SearchStrategy
from embedfleet.gateway.search.binary import BinarySearch
from embedfleet.gateway.search.full import FullSearch
from embedfleet.gateway.search.funnel import FunnelSearch
from embedfleet.wire import unpack_vectors

STRATEGIES: dict[SearchMode, SearchStrategy] = {
    SearchMode.FULL: FullSearch(),
    SearchMode.FUNNEL: FunnelSearch(),
    SearchMode.BINARY: BinarySearch(),
}
MAX_TOP_K = 1000
MAX_CANDIDATES = 10_000
DEFAULT_CANDIDATES_PER_HIT = 10

__all__ = ["STRATEGIES", "SearchCore", "SearchRequest"]


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


class SearchCore:
    def __init__(self, ctx: GatewayContext, embedder: EmbedCore) -> None:
        self.ctx = ctx
        self.embedder = embedder

    def _validate(self, request: SearchRequest) -> tuple[int, int]:
        """(top_k, candidates) with defaults applied; refuses what is out of bounds."""
        if not request.queries:
            raise errors.InvalidArgument("no query: set query (or queries)", "query")
        most = self.ctx.settings.max_embed_texts
        if len(request.queries) > most:
            raise errors.InvalidArgument(f"{len(request.queries)} queries in one call; at most {most}", "queries")
        for i, text in enumerate(request.queries):
            if not text.strip():
                raise errors.InvalidArgument(f"query {i} is empty", "query" if i == 0 else "queries")
        top_k = request.top_k or 10
        if top_k > MAX_TOP_K:
            raise errors.InvalidArgument(f"top_k must be at most {MAX_TOP_K}", "top_k")
        candidates = request.candidates or min(MAX_CANDIDATES, DEFAULT_CANDIDATES_PER_HIT * top_k)
        if not top_k <= candidates <= MAX_CANDIDATES:
            raise errors.InvalidArgument(
                f"candidates must be between top_k ({top_k}) and {MAX_CANDIDATES}", "candidates"
            )
        limit = self.ctx.settings.max_filter_bytes
        if len(request.filter.encode()) > limit:
            raise errors.InvalidArgument(f"filter is longer than {limit} bytes", "filter")
        return top_k, candidates

    def search(self, request: SearchRequest) -> SearchAnswer:
        top_k, candidates = self._validate(request)
        strategy = STRATEGIES[request.mode]
        binding = self.ctx.binding(request.collection)
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
        query = SearchQuery(
            request.collection, binding, vectors, top_k, request.filter, candidates, request.ef, request.nprobe
        )
        return SearchAnswer(strategy.search(self.ctx.milvus_client(), query), binding.model)
