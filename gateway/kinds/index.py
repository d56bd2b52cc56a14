"""Index jobs, gateway side: the collection must be free or bound to the same model and fields."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet import errors, milvus
from embedfleet.domain import EmbeddingOptions, IndexParams, Precision, ProgressUnit, VectorField
from embedfleet.gateway.kinds.base import JobPlan, Submission, job_spec
from embedfleet.gateway.kinds.documents import part_size, plan_documents
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
        fields = milvus.stored_fields(model.spec, request.extra_fields)
        binding = ctx.binding(request.collection)
        if binding is not None:
            binding.check_compatible(
                request.collection,
                model=model.spec.name,
                dimensions=model.output_dimensions,
                version=None,
                fields=fields,
            )
        size = part_size(request.chunk_size, ctx)
        total, parts, corpus = plan_documents(sub, request.source_path, request.reference, size)
        params = IndexParams(collection=request.collection, stored_fields=fields, corpus=corpus)
        spec = job_spec(params, model, unit=ProgressUnit.DOCUMENTS, part_size=size, display_name=request.display_name)
        return JobPlan(spec, total=total, parts=parts)
