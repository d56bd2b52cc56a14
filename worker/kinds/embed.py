"""Embed parts: embed the part's documents (staged or by reference) and write the vectors as the
part's Parquet file of the job's results, which ``StreamJobResults`` reads."""

from __future__ import annotations

import numpy as np

from embedfleet.jobstore import PartVectors
from embedfleet.results import write_job_part
from embedfleet.wire import pack_vectors
from embedfleet.worker.isolation import isolate
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext
from embedfleet.worker.kinds.inputs import part_documents


class EmbedPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        docs = part_documents(part, ctx)
        isolated = isolate(
            docs, lambda batch: ctx.embed(part.spec, [d.text for d in batch])[1], retries_spent=part.last_attempt
        )
        precision = part.spec.embedding.precision
        outputs = [out for _, out in isolated.done]
        vectors = np.concatenate([out.vectors for out in outputs]) if outputs else np.empty((0, 0), np.float32)
        write_job_part(
            ctx.store,
            part.spec,
            part.job_id,
            part.index,
            PartVectors(
                ids=[d.id for d in isolated.documents],
                dimensions=part.spec.output_dimensions,
                precision=precision,
                data=pack_vectors(vectors, precision),
            ),
        )
        truncated = sum(out.truncated for out in outputs)
        return PartResult(done=len(isolated.documents), truncated=truncated, failures=tuple(isolated.failures))
