"""The search strategy seam: one class per search mode, chosen per request.

A strategy gets the query already embedded exactly like the collection's main field and the
collection's binding (the fields its rows carry), checks that the collection can serve it, and
returns hits. The Matryoshka funnel (prefix field, then full-vector rescoring) and binary search
with float rescoring are each one more class here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus
from embedfleet.domain import SearchHit

# Milvus' code for "collection is released; call load() first" (after a server restart).
_COLLECTION_NOT_LOADED = 101
# Milvus error codes that mean the server (not the request) is the problem.
_SERVER_SIDE_CODES = frozenset({1, 2, 90, 100})

T = TypeVar("T")


@dataclass(frozen=True)
class SearchQuery:
    collection: str
    binding: milvus.CollectionBinding
    vector: np.ndarray  # float32, binding.dimensions, normalized like the stored vectors
    top_k: int
    filter: str


class SearchStrategy(Protocol):
    def check(self, binding: milvus.CollectionBinding) -> None:
        """Raise FailedPrecondition (naming the index option that adds what is missing) if the
        collection cannot be searched this way."""

    def search(self, client: MilvusClient, query: SearchQuery) -> list[SearchHit]: ...


def run_on_collection(client: MilvusClient, collection: str, call: Callable[[], T]) -> T:
    """Run a Milvus read, loading the collection once if a restarted server left it released.
    Server-side failures are UNAVAILABLE; anything else (a bad filter expression) INVALID_ARGUMENT."""
    try:
        try:
            return call()
        except MilvusException as exc:
            if exc.code != _COLLECTION_NOT_LOADED:
                raise
            client.load_collection(collection)
            return call()
    except MilvusException as exc:
        if exc.code in _SERVER_SIDE_CODES:
            raise errors.Unavailable(f"Milvus could not run the search: {exc.message}") from None
        raise errors.InvalidArgument(f"search failed: {exc.message}", "filter") from None
