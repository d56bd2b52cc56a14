"""Index jobs, gateway side: the collection must be free or bound to the same model, fields and index,
and the Milvus in use must be able to store the fields and build the index."""

from __future__ import annotations

from dataclasses import dataclass, field

from embedfleet import errors, milvus, milvus_engine
from embedfleet.domain import (
    EmbeddingOptions,
    IndexParams,
    IndexSpec,
    IngestDedup,
    IngestDedupAction,
    Precision,
    ResultsRef,
    VectorField,
)
from embedfleet.gateway.kinds.base import JobPlan, Submission
from embedfleet.gateway.kinds.dedup import check_threshold
from embedfleet.gateway.kinds.documents import plan_documents
from embedfleet.gateway.kinds.part_sizing import part_sizing
from embedfleet.gateway.kinds.references import CorpusReference


@dataclass(frozen=True)
class IndexRequest:
    embedding: EmbeddingOptions
    collection: str
    source_path: str = ""
    reference: CorpusReference | None = None
    chunk_size: int = 0
    display_name: str = ""
    extra_fields: tuple[VectorField, ...] = ()
    index: IndexSpec = field(default_factory=IndexSpec)
    dedup: IngestDedupRequest | None = None


@dataclass(frozen=True)
class IngestDedupRequest:
    threshold: float
    action: IngestDedupAction = IngestDedupAction.SKIP


class IndexPlanner:
    def plan(self, request: IndexRequest, sub: Submission) -> JobPlan:
        ctx = sub.ctx
        model = ctx.resolve(request.embedding)
        if model.options.precision != Precision.FLOAT32:
            raise errors.InvalidArgument(
                "an index job's main vector field is float32: leave precision unset, and add binary or int8 "
                "representations as extra_fields",
                "config.embedding.precision",
            )
        fields = milvus.stored_fields(model.spec, request.extra_fields)  # refused before Milvus is asked
        engine = ctx.engine()
        milvus_engine.check_vector_fields(engine, fields)
        collection = ctx.collection(request.collection)
        binding = ctx.binding(collection)
        if binding is not None:  # a basis left unset is the existing collection's
            fields = milvus.stored_fields(model.spec, request.extra_fields, binding.fields)
        unset = not request.index.type and not request.index.params
        index = binding.index if binding is not None and unset else milvus_engine.resolve_index(request.index, engine)
        if binding is not None:
            binding.check_compatible(
                request.collection,
                model=model.spec.name,
                dimensions=model.output_dimensions,
                version=None,
                fields=fields,
                index=index,
            )
        sizing = part_sizing(request.chunk_size, ctx.settings, model.spec.max_seq_length)
        plan = plan_documents(sub, request.source_path, request.reference, sizing)
        params = IndexParams(
            collection=collection,
            stored_fields=fields,
            index=index,
            corpus=plan.corpus,
            id_digests=plan.id_digests,
            dedup=ingest_dedup(sub, request.dedup),
        )
        return plan.job(params, model, request.display_name)


def ingest_dedup(sub: Submission, request: IngestDedupRequest | None) -> IngestDedup | None:
    """Dedup on ingest as the job will run it: the threshold checked, the records' place in the job's data."""
    if request is None:
        return None
    data = sub.ctx.datastore
    return IngestDedup(
        threshold=check_threshold(request.threshold, "config.dedup.threshold"),
        action=request.action,
        output=ResultsRef(filesystem=data.uri, directory=f"{data.job_dir(sub.stager.job_id)}/ingest_dedup"),
    )
