"""Bulk upserts into a model-bound Milvus collection.

Rows are keyed by ``primary_key(collection, document id)`` and written with upsert, so a chunk
that runs twice (redelivery after a crash) overwrites its rows instead of adding copies. Requests
are split by estimated size to stay well under Milvus' 64 MB per-request limit. A part's writes are
durable before the part counts done (it is then never rerun): a write with ``persist`` (the default)
returns only once it would survive the engine being killed, and a part written in several calls
persists once after the last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import metrics, milvus
from embedfleet.domain import Document, Precision
from embedfleet.errors import Retryable
from embedfleet.ids import primary_key
from embedfleet.milvus_engine import MilvusEngine, detect

_ROW_OVERHEAD_BYTES = 64


def _clip_utf8(text: str, max_bytes: int) -> str:
    raw = text.encode()
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode(errors="ignore")


def _column(field: milvus.StoredField, values: np.ndarray) -> list[list[Any]]:
    """A representation as Milvus rows take it: float lists, int8 lists, or bits packed in int64 words."""
    if field.precision == Precision.BINARY:
        padded = np.zeros((values.shape[0], milvus.binary_words(field.dimensions) * 8), dtype=np.uint8)
        padded[:, : values.shape[1]] = values
        return padded.view("<i8").tolist()
    return values.tolist()


def _batches(rows: list[dict[str, Any]], sizes: list[int], max_bytes: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    used = 0
    for row, size in zip(rows, sizes, strict=True):
        if batch and used + size > max_bytes:
            yield batch
            batch, used = [], 0
        batch.append(row)
        used += size
    if batch:
        yield batch


# Milvus' code for "collection does not exist" (also in the message of servers that do not send it).
_COLLECTION_NOT_FOUND = 100
# How long a checked binding is trusted before the collection is checked again: a collection dropped
# and recreated by another model meanwhile must not receive this model's vectors for long.
BINDING_CHECK_TTL_S = 30.0


def _collection_gone(exc: MilvusException) -> bool:
    message = (exc.message or "").lower()
    return exc.code == _COLLECTION_NOT_FOUND or "not exist" in message or "not found" in message


class MilvusSink:
    def __init__(self, client: MilvusClient, max_batch_bytes: int, binding_ttl_s: float = BINDING_CHECK_TTL_S) -> None:
        self.client = client
        self.max_batch_bytes = max_batch_bytes
        self.binding_ttl_s = binding_ttl_s
        self._checked_at: dict[tuple[str, milvus.CollectionBinding], float] = {}
        self._engine: MilvusEngine | None = None

    def engine(self) -> MilvusEngine:
        """The engine behind the client, asked once (on the first write, inside its error handling)."""
        if self._engine is None:
            self._engine = detect(self.client)
        return self._engine

    def _ensure(
        self,
        collection: str,
        binding: milvus.CollectionBinding,
        ranges: Mapping[str, np.ndarray] | None,
        force: bool = False,
    ) -> None:
        """Create or check the collection, unless it was checked less than ``binding_ttl_s`` ago."""
        key = (collection, binding)
        checked_at = self._checked_at.get(key)
        if force or checked_at is None or time.monotonic() - checked_at > self.binding_ttl_s:
            milvus.ensure_collection(self.client, collection, binding, ranges)
            self._checked_at[key] = time.monotonic()

    def write(
        self,
        collection: str,
        binding: milvus.CollectionBinding,
        docs: Sequence[Document],
        vectors: np.ndarray,
        extra: Mapping[str, np.ndarray] | None = None,
        ranges: Mapping[str, np.ndarray] | None = None,
        persist: bool = True,
    ) -> int:
        """Upsert one row per document (with each extra representation); returns the rows written. With
        ``persist`` the rows are durable when this returns; a caller that writes a part in several calls
        passes False and calls ``persist`` once after the last."""
        extra = extra or {}
        columns = {field.name: _column(field, extra[field.name]) for field in binding.fields}
        started = time.perf_counter()
        try:
            self._ensure(collection, binding, ranges)
            rows: list[dict[str, Any]] = []
            sizes: list[int] = []
            for i, (doc, vector) in enumerate(zip(docs, vectors, strict=True)):
                text = _clip_utf8(doc.text, milvus.MAX_STORED_TEXT_BYTES)
                rows.append(
                    {
                        milvus.PK_FIELD: primary_key(collection, doc.id),
                        milvus.ID_FIELD: doc.id,
                        milvus.TEXT_FIELD: text,
                        milvus.METADATA_FIELD: doc.metadata(),
                        milvus.VECTOR_FIELD: vector.tolist(),
                        **{name: column[i] for name, column in columns.items()},
                    }
                )
                vector_bytes = vector.nbytes + sum(extra[name][i].nbytes for name in columns)
                sizes.append(_ROW_OVERHEAD_BYTES + vector_bytes * 3 + len(text) * 4 + len(doc.metadata_json) * 2)
            try:
                self._upsert(collection, rows, sizes)
            except MilvusException as exc:
                if not _collection_gone(exc):
                    raise
                # Dropped since it was checked: create it again, or refuse it if another model did.
                self._ensure(collection, binding, ranges, force=True)
                self._upsert(collection, rows, sizes)
            if persist:
                milvus.persist(self.client, collection, self.engine())
            return len(rows)
        except MilvusException as exc:
            # Connection loss, a busy server: the chunk is retried (and the upsert makes that safe).
            metrics.MILVUS_WRITE_ERRORS.inc()
            raise Retryable(f"Milvus upsert into {collection!r} failed: {exc.message}") from exc
        finally:
            metrics.MILVUS_WRITE.observe(time.perf_counter() - started)

    def persist(self, collection: str) -> None:
        """Make every write to ``collection`` so far durable (a flush where the engine needs one)."""
        try:
            milvus.persist(self.client, collection, self.engine())
        except MilvusException as exc:
            metrics.MILVUS_WRITE_ERRORS.inc()
            raise Retryable(f"making the writes to {collection!r} durable failed: {exc.message}") from exc

    def _upsert(self, collection: str, rows: list[dict[str, Any]], sizes: list[int]) -> None:
        for batch in _batches(rows, sizes, self.max_batch_bytes):
            self.client.upsert(collection, batch)
