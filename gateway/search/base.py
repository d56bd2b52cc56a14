"""The search strategy seam: one class per search mode, chosen per request.

A strategy gets the queries already embedded exactly like the collection's main field and the
collection's binding (the fields its rows carry), checks that the collection can serve it, and
returns hits per query. ``full`` searches the main vector; ``funnel`` shortlists on a Matryoshka
prefix field and rescores; ``binary`` shortlists by Hamming distance on the bits and rescores.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus
from embedfleet.domain import SearchHit

# Milvus' code for "collection is released; call load() first" (after a server restart).
_COLLECTION_NOT_LOADED = 101
# Milvus error codes that mean the server (not the request) is the problem.
_SERVER_SIDE_CODES = frozenset({1, 2, 90, 100})
ROW_FIELDS = [milvus.ID_FIELD, milvus.TEXT_FIELD, milvus.METADATA_FIELD]

T = TypeVar("T")


@dataclass(frozen=True)
class SearchQuery:
    collection: str
    binding: milvus.CollectionBinding
    vectors: np.ndarray  # (queries, binding.dimensions) float32, normalized like the stored vectors
    top_k: int
    filter: str
    candidates: int  # shortlist size for the rescoring modes (>= top_k)
    ef: int = 0
    nprobe: int = 0

    def search_params(self) -> dict[str, Any]:
        """Per-request index parameters (the index's defaults when 0)."""
        params = {k: v for k, v in (("ef", self.ef), ("nprobe", self.nprobe)) if v}
        return {"params": params} if params else {}


class SearchStrategy(Protocol):
    def check(self, binding: milvus.CollectionBinding) -> None:
        """Raise FailedPrecondition (naming the index option that adds what is missing) if the
        collection cannot be searched this way."""

    def search(self, client: MilvusClient, query: SearchQuery) -> list[list[SearchHit]]: ...


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


def hit(entity: dict[str, Any], score: float) -> SearchHit:
    return SearchHit(
        id=entity[milvus.ID_FIELD],
        score=score,
        text=entity[milvus.TEXT_FIELD],
        metadata_json=json.dumps(entity.get(milvus.METADATA_FIELD) or {}, ensure_ascii=False),
    )


def fetch_rows(client: MilvusClient, query: SearchQuery, pks: Sequence[int], fields: Sequence[str]) -> dict[int, Any]:
    """Rows by primary key (with the hit fields and ``fields``), for rescoring a shortlist; the request's
    filter applies to them too (a shortlist built outside Milvus has not seen it)."""
    if not pks:
        return {}
    expr = f"{milvus.PK_FIELD} in [{', '.join(str(int(pk)) for pk in pks)}]"
    if query.filter:
        expr = f"({query.filter}) and {expr}"
    rows = run_on_collection(
        client,
        query.collection,
        lambda: client.query(query.collection, filter=expr, output_fields=[milvus.PK_FIELD, *ROW_FIELDS, *fields]),
    )
    return {int(row[milvus.PK_FIELD]): row for row in rows}


def rescore(query_vector: np.ndarray, rows: dict[int, Any], pks: Sequence[int], field: str, keep: int) -> list[int]:
    """The ``keep`` best of ``pks`` by cosine on ``field`` (stored vectors are normalized)."""
    present = [pk for pk in pks if pk in rows]
    if not present:
        return []
    matrix = np.asarray([rows[pk][field] for pk in present], dtype=np.float32)
    scores = matrix @ query_vector
    order = np.argsort(-scores, kind="stable")[:keep]
    return [present[i] for i in order]


def final_hits(query_vector: np.ndarray, rows: dict[int, Any], pks: Sequence[int], top_k: int) -> list[SearchHit]:
    """Rescore a shortlist with the full vector: the hits, scored like ``full`` mode."""
    best = rescore(query_vector, rows, pks, milvus.VECTOR_FIELD, top_k)
    vectors = {pk: np.asarray(rows[pk][milvus.VECTOR_FIELD], dtype=np.float32) for pk in best}
    return [hit(rows[pk], float(vectors[pk] @ query_vector)) for pk in best]
