"""``binary`` mode: shortlist ``candidates`` rows by Hamming distance on the packed bits field, then
rank them by the full float vector (binary quantization with rescoring).

Milvus Lite 3.2 has no binary vector type, so index jobs store the bits as int64 arrays; the
shortlist comes from a faiss ``IndexBinaryFlat`` (exact Hamming, 32x less memory than float32) that
the gateway builds from those arrays and keeps while the collection's row count is unchanged. A
filter is applied to the shortlist, so a selective filter can return fewer than ``top_k`` hits
(raise ``candidates``). On a Milvus server with ``BINARY_VECTOR`` fields the shortlist could be
searched in Milvus itself (``BIN_IVF_FLAT``, HAMMING); see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import faiss
import numpy as np
from pymilvus import MilvusClient

from embedfleet import errors, milvus
from embedfleet.domain import Precision, SearchHit, StoredField
from embedfleet.gateway.search.base import SearchQuery, hits, rescore, run_on_collection
from embedfleet.vectors import binary_codes, matryoshka_prefix
from embedfleet.wire import packed_width

_READ_BATCH = 5000


def bits_field(binding: milvus.CollectionBinding) -> StoredField | None:
    """The widest binary field (the most bits, the best shortlist)."""
    fields = [f for f in binding.fields if f.precision == Precision.BINARY]
    return max(fields, key=lambda f: f.dimensions) if fields else None


@dataclass(frozen=True)
class _BitsIndex:
    rows: int
    index: faiss.IndexBinaryFlat
    pks: np.ndarray


def unpack_words(words: list[list[int]], dimensions: int) -> np.ndarray:
    """Stored int64 words -> packed bit rows (the inverse of the sink's packing)."""
    raw = np.asarray(words, dtype="<i8").view(np.uint8)
    return np.ascontiguousarray(raw[:, : packed_width(dimensions, Precision.BINARY)])


class BinarySearch:
    def __init__(self) -> None:
        self._indexes: dict[tuple[str, str], _BitsIndex] = {}
        self._lock = threading.Lock()

    def check(self, binding: milvus.CollectionBinding) -> None:
        if bits_field(binding) is None:
            raise errors.FailedPrecondition(
                'mode binary needs a binary field: index the collection with an extra field such as {"name": "bits", '
                '"precision": "binary"}'
            )

    def _index(self, client: MilvusClient, collection: str, field: StoredField) -> _BitsIndex:
        count = run_on_collection(
            client, collection, lambda: client.query(collection, filter="", output_fields=["count(*)"])
        )
        rows = int(count[0]["count(*)"])
        key = (collection, field.name)
        with self._lock:
            cached = self._indexes.get(key)
            if cached is not None and cached.rows == rows:
                return cached
            index = faiss.IndexBinaryFlat(packed_width(field.dimensions, Precision.BINARY) * 8)
            pks: list[int] = []
            iterator = client.query_iterator(
                collection, batch_size=_READ_BATCH, output_fields=[milvus.PK_FIELD, field.name]
            )
            try:
                while batch := iterator.next():
                    index.add(unpack_words([row[field.name] for row in batch], field.dimensions))
                    pks.extend(int(row[milvus.PK_FIELD]) for row in batch)
            finally:
                iterator.close()
            built = _BitsIndex(rows, index, np.asarray(pks, dtype=np.int64))
            self._indexes[key] = built
            return built

    def search(self, client: MilvusClient, query: SearchQuery) -> list[list[SearchHit]]:
        field = bits_field(query.binding)
        assert field is not None
        bits = self._index(client, query.collection, field)
        codes = binary_codes(matryoshka_prefix(query.vectors, field.dimensions, True), field.bits)
        _, positions = bits.index.search(np.ascontiguousarray(codes), min(query.candidates, max(bits.rows, 1)))
        shortlists = [[int(bits.pks[p]) for p in found if p >= 0] for found in positions]
        # The faiss shortlist has not seen the request's filter: the rescoring read applies it.
        best = rescore(client, query, shortlists, milvus.VECTOR_FIELD, [query.top_k] * len(shortlists), filtered=True)
        return hits(client, query, best)
