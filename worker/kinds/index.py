"""Index parts: embed the part's documents (staged or by reference) and upsert them, with every extra representation
of the same forward pass, into the job's model-bound Milvus collection.

The part is one pipeline (``worker/pipeline.py``): forward passes of token-budget batches in this thread,
post-processing and upserts of every ``write_rows`` documents in the other, so the model never waits on
Milvus. A batch that fails after earlier ones were written leaves those rows in place: the retry (or the
bisection of ``isolate``) upserts them again by the same keys, so nothing is duplicated.

With dedup on ingest each write batch is screened before its upsert (``dedup_ingest.screen``: against
itself and against what the collection already holds, earlier batches of the part included)."""

from __future__ import annotations

import numpy as np

from embedfleet import milvus
from embedfleet.datastore import location_uri
from embedfleet.domain import Document, IndexParams, Precision
from embedfleet.worker.embedding import embed_batches, int8_ranges, represent
from embedfleet.worker.isolation import isolate
from embedfleet.worker.kinds import dedup_ingest
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext, check_cancelled
from embedfleet.worker.kinds.inputs import part_documents
from embedfleet.worker.models.base import EncodedBatch, Encoder
from embedfleet.worker.pipeline import overlap


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
        encoder = ctx.encoder(part.spec)
        writer = _RowWriter(part, ctx, encoder, docs, duplicates)
        overlap(embed_batches(encoder, [d.text for d in docs], part.spec.embedding.input_type), writer.add)
        writer.close()
        return writer.truncated


class _RowWriter:
    """Post-processes forward passes into rows and upserts them ``ctx.write_rows`` at a time."""

    def __init__(
        self,
        part: Part,
        ctx: WorkerContext,
        encoder: Encoder,
        docs: list[Document],
        duplicates: dict[str, dedup_ingest.Duplicate],
    ) -> None:
        params = part.spec.params
        assert isinstance(params, IndexParams)
        self.params = params
        self.part = part
        self.spec = part.spec
        self.ctx = ctx
        self.encoder = encoder
        self.docs = docs
        self.binding = milvus.CollectionBinding(
            encoder.spec.name, encoder.version, part.spec.output_dimensions, params.stored_fields, params.index
        )
        self.duplicates = duplicates
        self.truncated = 0
        self._pending: list[EncodedBatch] = []
        self._written = False

    def add(self, batch: EncodedBatch) -> None:
        self.truncated += batch.truncated
        self._pending.append(batch)
        if sum(len(b.rows) for b in self._pending) >= self.ctx.write_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        # A cancelled job writes nothing more, so a collection deleted after the cancel stays deleted.
        check_cancelled(self.ctx, self.part)
        rows = np.concatenate([b.rows for b in self._pending])
        raw = np.concatenate([b.vectors for b in self._pending])
        self._pending = []
        normalize = self.spec.embedding.normalize
        vectors = represent(self.encoder, raw, self.spec.output_dimensions, Precision.FLOAT32, normalize)
        docs = [self.docs[i] for i in rows]
        dedup = self.params.dedup
        if dedup is not None:
            found = dedup_ingest.screen(docs, vectors, dedup, self.ctx.sink().client, self.params.collection)
            self.duplicates.update({d.doc_id: d for d in found.values()})
            keep, docs = dedup_ingest.apply(docs, found, dedup.action)
            vectors, raw = vectors[keep], raw[keep]
        extra: dict[str, np.ndarray] = {}
        ranges: dict[str, np.ndarray] = {}
        for field in self.params.stored_fields:
            extra[field.name] = represent(self.encoder, raw, field.dimensions, field.precision, normalize, field.bits)
            if field.precision == Precision.INT8:
                ranges[field.name] = int8_ranges(self.encoder, field.dimensions, normalize)
        # Made durable once, in ``close``: one flush per part, not one per write_rows rows.
        self.ctx.sink().write(self.params.collection, self.binding, docs, vectors, extra, ranges, persist=False)
        self._written = True

    def close(self) -> None:
        """Write what is pending, then make the part's writes durable before the part counts as done."""
        self.flush()
        if self._written:
            self.ctx.sink().persist(self.params.collection)
