"""Embed parts: embed the part's staged documents and keep the packed vectors for
``StreamJobResults``."""

from __future__ import annotations

import numpy as np

from embedfleet.jobstore import PartVectors
from embedfleet.wire import pack_vectors
from embedfleet.worker.isolation import isolate
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext


class EmbedPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        docs = ctx.store.get_part_input(part.job_id, part.index)
        isolated = isolate(
            docs, lambda batch: ctx.embed(part.spec, [d.text for d in batch])[1], retries_spent=part.last_attempt
        )
        precision = part.spec.embedding.precision
        outputs = [out for _, out in isolated.done]
        vectors = np.concatenate([out.vectors for out in outputs]) if outputs else np.empty((0, 0), np.float32)
        ctx.store.put_part_output(
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
