"""The search strategy seam: one class per search mode, chosen per request.

A strategy gets the queries already embedded exactly like the collection's main field and the
collection's binding (the fields its rows carry), checks that the collection can serve it, and
returns hits per query. ``full`` searches the main vector; ``funnel`` shortlists on a Matryoshka
prefix field and rescores; ``binary`` shortlists by Hamming distance on the bits and rescores.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import errors, milvus
from embedfleet.domain import SearchHit
from embedfleet.vectors import matryoshka_prefix

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


# Primary keys per read of a shortlist: bounds the filter expression (and Milvus' 16,384-row result window).
PK_READ_BATCH = 4096
Scored = list[tuple[int, float]]  # (primary key, score), best first


def _rows_by_pk(
    client: MilvusClient, query: SearchQuery, pks: set[int], fields: Sequence[str], filtered: bool
) -> dict[int, Any]:
    """``fields`` of the rows with these primary keys, in as few reads as the batch allows; with
    ``filtered`` the request's filter applies to them too (a shortlist built outside Milvus has not seen
    it; rows that already passed it need not be filtered again)."""
    ordered = sorted(pks)
    found: dict[int, Any] = {}
    for start in range(0, len(ordered), PK_READ_BATCH):
        chunk = ordered[start : start + PK_READ_BATCH]
        expr = f"{milvus.PK_FIELD} in [{', '.join(str(pk) for pk in chunk)}]"
        if filtered and query.filter:
            expr = f"({query.filter}) and {expr}"
        read = functools.partial(client.query, query.collection, filter=expr, output_fields=[milvus.PK_FIELD, *fields])
        found.update((int(row[milvus.PK_FIELD]), row) for row in run_on_collection(client, query.collection, read))
    return found


def rescore(
    client: MilvusClient,
    query: SearchQuery,
    shortlists: Sequence[Sequence[int]],
    field: str,
    keep: Sequence[int],
    filtered: bool,
) -> list[Scored]:
    """Each query's ``keep[i]`` best of its shortlist by cosine on ``field`` (a prefix of the query where the
    field is shorter; stored vectors are normalized). The whole batch's shortlists are read in one go,
    and only that field: the texts are read for the final hits alone (``hits``). ``filtered``: apply the
    request's filter here, to a shortlist made without it."""
    rows = _rows_by_pk(client, query, {pk for shortlist in shortlists for pk in shortlist}, [field], filtered)
    dimensions = next((f.dimensions for f in query.binding.fields if f.name == field), query.binding.dimensions)
    scored: list[Scored] = []
    for vector, shortlist, count in zip(query.vectors, shortlists, keep, strict=True):
        present = [pk for pk in shortlist if pk in rows]
        if not present:
            scored.append([])
            continue
        matrix = np.asarray([rows[pk][field] for pk in present], dtype=np.float32)
        scores = matrix @ matryoshka_prefix(vector, dimensions, True)
        order = np.argsort(-scores, kind="stable")[:count]
        scored.append([(present[i], float(scores[i])) for i in order])
    return scored


def hits(client: MilvusClient, query: SearchQuery, scored: Sequence[Scored]) -> list[list[SearchHit]]:
    """The hits of every query's final rows (scored on the full vector, past the filter already), their texts
    read in one go."""
    rows = _rows_by_pk(client, query, {pk for best in scored for pk, _ in best}, ROW_FIELDS, filtered=False)
    return [[hit(rows[pk], score) for pk, score in best if pk in rows] for best in scored]
