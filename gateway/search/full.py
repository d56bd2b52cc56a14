"""``full`` mode: nearest neighbours on the full-dimension main vector field."""

from __future__ import annotations

import json

from pymilvus import MilvusClient

from embedfleet import milvus
from embedfleet.domain import SearchHit
from embedfleet.gateway.search.base import SearchQuery, run_on_collection

OUTPUT_FIELDS = [milvus.ID_FIELD, milvus.TEXT_FIELD, milvus.METADATA_FIELD]


def hits_from_milvus(result: list[dict[str, object]]) -> list[SearchHit]:
    """Milvus result rows -> hits (shared by every strategy that returns Milvus rows)."""
    hits = []
    for hit in result:
        entity = hit["entity"]
        assert isinstance(entity, dict)
        hits.append(
            SearchHit(
                id=entity[milvus.ID_FIELD],
                score=float(hit["distance"]),  # type: ignore[arg-type]
                text=entity[milvus.TEXT_FIELD],
                metadata_json=json.dumps(entity.get(milvus.METADATA_FIELD) or {}, ensure_ascii=False),
            )
        )
    return hits


class FullSearch:
    def check(self, binding: milvus.CollectionBinding) -> None:
        """Every collection has its main vector field."""

    def search(self, client: MilvusClient, query: SearchQuery) -> list[SearchHit]:
        results = run_on_collection(
            client,
            query.collection,
            lambda: client.search(
                query.collection,
                data=[query.vector.tolist()],
                limit=query.top_k,
                filter=query.filter,
                anns_field=milvus.VECTOR_FIELD,
                output_fields=OUTPUT_FIELDS,
            ),
        )
        return hits_from_milvus(results[0])
