"""Index parts: embed the part's documents (staged or by reference) and upsert them, with every extra representation
of the same forward pass, into the job's model-bound Milvus collection."""

from __future__ import annotations

import numpy as np

from embedfleet import milvus
from embedfleet.domain import Document, IndexParams, Precision
from embedfleet.worker.embedding import int8_ranges, represent
from embedfleet.worker.isolation import isolate
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext
from embedfleet.worker.kinds.inputs import part_documents


class IndexPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        docs = part_documents(part, ctx)
        isolated = isolate(docs, lambda batch: self._write(part, ctx, batch), retries_spent=part.last_attempt)
        truncated = sum(count for _, count in isolated.done)
        return PartResult(done=len(isolated.documents), truncated=truncated, failures=tuple(isolated.failures))

    @staticmethod
    def _write(part: Part, ctx: WorkerContext, docs: list[Document]) -> int:
        """Embed and upsert ``docs``; returns how many were truncated."""
        params = part.spec.params
        assert isinstance(params, IndexParams)
        encoder, out = ctx.embed(part.spec, [d.text for d in docs])
        normalize = part.spec.embedding.normalize
        extra: dict[str, np.ndarray] = {}
        ranges: dict[str, np.ndarray] = {}
        for field in params.stored_fields:
            extra[field.name] = represent(encoder, out.raw, field.dimensions, field.precision, normalize)
            if field.precision == Precision.INT8:
                ranges[field.name] = int8_ranges(encoder, field.dimensions, normalize)
        binding = milvus.CollectionBinding(
            out.model, out.version, part.spec.output_dimensions, params.stored_fields, params.index
        )
        ctx.sink().write(params.collection, binding, docs, out.vectors, extra, ranges)
        return out.truncated
