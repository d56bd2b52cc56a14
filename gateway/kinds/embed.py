"""Embed jobs, gateway side: any model output the registry allows; results stay for streaming."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet.domain import EmbeddingOptions, EmbedParams, ProgressUnit
from embedfleet.gateway.kinds.base import JobPlan, Submission, job_spec
from embedfleet.gateway.kinds.documents import part_size, plan_documents
from embedfleet.gateway.kinds.references import CorpusReference


@dataclass(frozen=True)
class EmbedJobRequest:
    embedding: EmbeddingOptions
    source_path: str = ""
    reference: CorpusReference | None = None
    chunk_size: int = 0
    display_name: str = ""


class EmbedPlanner:
    def plan(self, request: EmbedJobRequest, sub: Submission) -> JobPlan:
        ctx = sub.ctx
        model = ctx.resolve(request.embedding)
        size = part_size(request.chunk_size, ctx)
        total, parts, corpus = plan_documents(sub, request.source_path, request.reference, size)
        spec = job_spec(
            EmbedParams(corpus=corpus),
            model,
            unit=ProgressUnit.DOCUMENTS,
            part_size=size,
            display_name=request.display_name,
        )
        return JobPlan(spec, total=total, parts=parts)
