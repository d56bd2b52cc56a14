"""Index parts: embed the part's documents (staged or by reference) and upsert them, with every extra representation
of the same forward pass, into the job's model-bound Milvus collection."""

from __future__ import annotations

import dataclasses

import numpy as np

from embedfleet import milvus
from embedfleet.datastore import location_uri
from embedfleet.domain import Document, IndexParams, Precision
from embedfleet.worker.embedding import int8_ranges, represent
from embedfleet.worker.isolation import isolate
from embedfleet.worker.kinds import dedup_ingest
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext
from embedfleet.worker.kinds.inputs import part_documents


class IndexPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        docs = part_documents(part, ctx)
        duplicates: dict[str, dedup_ingest.Duplicate] = {}
        isolated = isolate(
            docs, lambda batch: self._write(part, ctx, batch, duplicates), retries_spent=part.last_attempt
        )
        params = part.spec.params
        assert isinstance(params, IndexParams)
        if params.dedup is not None:
            dedup_ingest.record(params.dedup, part.index, list(duplicates.values()))
            ctx.store.report(
                part.job_id,
                metrics={dedup_ingest.metric_name(part.index): float(len(duplicates))},
                outputs={
                    "ingest_dedup_uri": location_uri(params.dedup.output.filesystem, params.dedup.output.directory)
                },
            )
        truncated = sum(count for _, count in isolated.done)
        return PartResult(done=len(isolated.documents), truncated=truncated, failures=tuple(isolated.failures))

    @staticmethod
    def _write(
        part: Part, ctx: WorkerContext, docs: list[Document], duplicates: dict[str, dedup_ingest.Duplicate]
    ) -> int:
        """Embed and upsert ``docs`` (less or marking the near-duplicates, with dedup on ingest); returns
        how many were truncated."""
        params = part.spec.params
        assert isinstance(params, IndexParams)
        encoder, out = ctx.embed(part.spec, [d.text for d in docs])
        if params.dedup is not None:
            found = dedup_ingest.screen(docs, out.vectors, params.dedup, ctx.sink().client, params.collection)
            duplicates.update({d.doc_id: d for d in found.values()})
            keep, docs = dedup_ingest.apply(docs, found, params.dedup.action)
            out = dataclasses.replace(out, vectors=out.vectors[keep], raw=out.raw[keep])
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
