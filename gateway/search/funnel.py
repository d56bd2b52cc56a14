"""``funnel`` mode (adaptive retrieval with Matryoshka prefixes): shortlist ``candidates`` rows by ANN
search on the shortest float prefix field, halve the shortlist through each longer prefix field (never
below ``top_k``), and rank the survivors by the full vector. With one prefix field and ``candidates``
covering the collection, the result is exactly ``full``'s."""

from __future__ import annotations

from pymilvus import MilvusClient

from embedfleet import errors, milvus
from embedfleet.domain import Precision, SearchHit, StoredField
from embedfleet.gateway.search.base import SearchQuery, hits, rescore, run_on_collection
from embedfleet.vectors import matryoshka_prefix


def prefix_fields(binding: milvus.CollectionBinding) -> list[StoredField]:
    """The collection's float prefix fields, shortest first."""
    fields = [f for f in binding.fields if f.precision == Precision.FLOAT32 and f.dimensions < binding.dimensions]
    return sorted(fields, key=lambda f: f.dimensions)


class FunnelSearch:
    def check(self, binding: milvus.CollectionBinding) -> None:
        if not prefix_fields(binding):
            raise errors.FailedPrecondition(
                "mode funnel needs a Matryoshka prefix field: index the collection with an extra field such as "
                '{"name": "v128", "dimensions": 128} (a dimension the model supports)'
            )

    def search(self, client: MilvusClient, query: SearchQuery) -> list[list[SearchHit]]:
        stages = prefix_fields(query.binding)
        first = stages[0]
        shortlists = run_on_collection(
            client,
            query.collection,
            lambda: client.search(
                query.collection,
                data=matryoshka_prefix(query.vectors, first.dimensions, True).tolist(),
                limit=query.candidates,
                filter=query.filter,
                anns_field=first.name,
                output_fields=[milvus.PK_FIELD],
                search_params=query.search_params(),
            ),
        )
        # Milvus applied the request's filter to the first shortlist: later stages need not again.
        pks = [[int(h["entity"][milvus.PK_FIELD]) for h in shortlist] for shortlist in shortlists]
        for stage in stages[1:]:
            keep = [max(query.top_k, len(p) // 2) for p in pks]
            pks = [[pk for pk, _ in best] for best in rescore(client, query, pks, stage.name, keep, filtered=False)]
        final = rescore(client, query, pks, milvus.VECTOR_FIELD, [query.top_k] * len(pks), filtered=False)
        return hits(client, query, final)
