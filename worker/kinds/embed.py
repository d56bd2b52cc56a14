"""Embed parts: embed the part's staged documents and keep the packed vectors for
``StreamJobResults``."""

from __future__ import annotations

from embedfleet.jobstore import PartVectors
from embedfleet.wire import pack_vectors
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext


class EmbedPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        docs = ctx.store.get_part_input(part.job_id, part.index)
        _, out = ctx.embed(part.spec, [d.text for d in docs])
        precision = part.spec.embedding.precision
        ctx.store.put_part_output(
            part.job_id,
            part.index,
            PartVectors(
                ids=[d.id for d in docs],
                dimensions=part.spec.output_dimensions,
                precision=precision,
                data=pack_vectors(out.vectors, precision),
            ),
        )
        return PartResult(done=len(docs), truncated=out.truncated)
