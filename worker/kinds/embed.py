"""Embed parts: embed the part's documents (staged or by reference) and write the vectors as the
part's Parquet file of the job's results, which ``StreamJobResults`` reads."""

from __future__ import annotations

from embedfleet.jobstore import PartVectors
from embedfleet.results import write_job_part
from embedfleet.wire import pack_vectors
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext
from embedfleet.worker.kinds.inputs import part_documents


class EmbedPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        docs = part_documents(part, ctx)
        _, out = ctx.embed(part.spec, [d.text for d in docs])
        precision = part.spec.embedding.precision
        write_job_part(
            ctx.store,
            part.spec,
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
