"""Index parts: embed the part's documents (staged or by reference) and upsert them, with every extra representation
of the same forward pass, into the job's model-bound Milvus collection.

The part is one pipeline (``worker/pipeline.py``): forward passes of token-budget batches in this thread,
post-processing and upserts of every ``write_rows`` documents in the other, so the model never waits on
Milvus. A batch that fails after earlier ones were written leaves those rows in place: the retry (or the
bisection of ``isolate``) upserts them again by the same keys, so nothing is duplicated."""

from __future__ import annotations

import numpy as np

from embedfleet import milvus
from embedfleet.domain import Document, IndexParams, Precision
from embedfleet.worker.embedding import embed_batches, int8_ranges, represent
from embedfleet.worker.isolation import isolate
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext
from embedfleet.worker.kinds.inputs import part_documents
from embedfleet.worker.models.base import EncodedBatch, Encoder
from embedfleet.worker.pipeline import overlap


class IndexPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        docs = part_documents(part, ctx)
        isolated = isolate(docs, lambda batch: self._write(part, ctx, batch), retries_spent=part.last_attempt)
        truncated = sum(count for _, count in isolated.done)
        return PartResult(done=len(isolated.documents), truncated=truncated, failures=tuple(isolated.failures))

    @staticmethod
    def _write(part: Part, ctx: WorkerContext, docs: list[Document]) -> int:
        """Embed and upsert ``docs``; returns how many were truncated."""
        encoder = ctx.encoder(part.spec)
        writer = _RowWriter(part, ctx, encoder, docs)
        overlap(embed_batches(encoder, [d.text for d in docs], part.spec.embedding.input_type), writer.add)
        writer.flush()
        return writer.truncated


class _RowWriter:
    """Post-processes forward passes into rows and upserts them ``ctx.write_rows`` at a time."""

    def __init__(self, part: Part, ctx: WorkerContext, encoder: Encoder, docs: list[Document]) -> None:
        params = part.spec.params
        assert isinstance(params, IndexParams)
        self.params = params
        self.spec = part.spec
        self.ctx = ctx
        self.encoder = encoder
        self.docs = docs
        self.binding = milvus.CollectionBinding(
            encoder.spec.name, encoder.version, part.spec.output_dimensions, params.stored_fields, params.index
        )
        self.truncated = 0
        self._pending: list[EncodedBatch] = []

    def add(self, batch: EncodedBatch) -> None:
        self.truncated += batch.truncated
        self._pending.append(batch)
        if sum(len(b.rows) for b in self._pending) >= self.ctx.write_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        rows = np.concatenate([b.rows for b in self._pending])
        raw = np.concatenate([b.vectors for b in self._pending])
        self._pending = []
        normalize = self.spec.embedding.normalize
        vectors = represent(self.encoder, raw, self.spec.output_dimensions, Precision.FLOAT32, normalize)
        extra: dict[str, np.ndarray] = {}
        ranges: dict[str, np.ndarray] = {}
        for field in self.params.stored_fields:
            extra[field.name] = represent(self.encoder, raw, field.dimensions, field.precision, normalize)
            if field.precision == Precision.INT8:
                ranges[field.name] = int8_ranges(self.encoder, field.dimensions, normalize)
        docs = [self.docs[i] for i in rows]
        self.ctx.sink().write(self.params.collection, self.binding, docs, vectors, extra, ranges)
