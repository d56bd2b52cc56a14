"""Embed jobs, gateway side: any model output the registry allows; results stay for streaming."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from embedfleet.domain import Document, EmbeddingOptions, EmbedParams, ProgressUnit
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.kinds.base import JobPlan, PartStager, job_spec
from embedfleet.gateway.kinds.documents import corpus, part_size, stage_documents


@dataclass(frozen=True)
class EmbedJobRequest:
    embedding: EmbeddingOptions
    source_path: str = ""
    chunk_size: int = 0
    display_name: str = ""


class EmbedPlanner:
    def plan(
        self, request: EmbedJobRequest, documents: Iterator[Document], ctx: GatewayContext, stager: PartStager
    ) -> JobPlan:
        model = ctx.resolve(request.embedding)
        size = part_size(request.chunk_size, ctx)
        total, parts = stage_documents(corpus(request.source_path, documents, ctx), size, ctx, stager)
        spec = job_spec(
            EmbedParams(), model, unit=ProgressUnit.DOCUMENTS, part_size=size, display_name=request.display_name
        )
        return JobPlan(spec, total=total, parts=parts)
