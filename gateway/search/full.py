"""``full`` mode: nearest neighbours on the full-dimension main vector field."""

from __future__ import annotations

from pymilvus import MilvusClient

from embedfleet import milvus
from embedfleet.domain import SearchHit
from embedfleet.gateway.search.base import ROW_FIELDS, SearchQuery, hit, run_on_collection


class FullSearch:
    def check(self, binding: milvus.CollectionBinding) -> None:
        """Every collection has its main vector field."""

    def search(self, client: MilvusClient, query: SearchQuery) -> list[list[SearchHit]]:
        results = run_on_collection(
            client,
            query.collection,
            lambda: client.search(
                query.collection,
                data=query.vectors.tolist(),
                limit=query.top_k,
                filter=query.filter,
                anns_field=milvus.VECTOR_FIELD,
                output_fields=ROW_FIELDS,
                search_params=query.search_params(),
            ),
        )
        return [[hit(h["entity"], float(h["distance"])) for h in result] for result in results]
