"""A part's documents, wherever the job keeps them: read from the corpus by reference when the
spec carries one (validated here, a bad record failing the part with its file and line), else the
part's staged input in the job store. The one read path of the kinds that embed documents, and so
where the ids a referenced corpus repeats are recorded (``repeated_ids``)."""

from __future__ import annotations

from embedfleet.corpus_refs import read_rows
from embedfleet.domain import Document, EmbedParams, IndexParams
from embedfleet.worker.kinds import repeated_ids
from embedfleet.worker.kinds.base import Part, WorkerContext


def part_documents(part: Part, ctx: WorkerContext) -> list[Document]:
    params = part.spec.params
    if not isinstance(params, IndexParams | EmbedParams) or params.corpus is None:
        return ctx.store.get_part_input(part.job_id, part.index)
    corpus = params.corpus
    first, count = part.units
    docs = read_rows(corpus, first, count)
    if params.id_digests is not None:
        repeated_ids.record(part, ctx, corpus, params.id_digests, docs)
    return docs
