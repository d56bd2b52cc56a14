"""Evaluation jobs, gateway side: one part; progress counts the evaluations (full width + each MRL width)."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet.domain import EmbeddingOptions, EvaluateParams, ProgressUnit
from embedfleet.gateway.kinds.base import JobPlan, Submission, job_spec


@dataclass(frozen=True)
class EvaluateRequest:
    model: str
    dimensions: tuple[int, ...] = ()
    teacher: str = ""
    eval_limit: int = 0
    display_name: str = ""


class EvaluatePlanner:
    def plan(self, request: EvaluateRequest, sub: Submission) -> JobPlan:
        ctx = sub.ctx
        model = ctx.resolve(EmbeddingOptions(model=request.model))
        spec = model.spec
        dims = tuple(sorted({spec.output_dimensions(d) for d in request.dimensions} - {spec.dimensions}, reverse=True))
        params = EvaluateParams(
            model=spec.name,
            dimensions=dims or spec.matryoshka_dimensions,
            teacher=ctx.visible_model(ctx.registry.resolve(request.teacher)).name if request.teacher else "",
            eval_limit=request.eval_limit or ctx.settings.default_eval_limit,
        )
        job = job_spec(params, model, unit=ProgressUnit.EVALUATIONS, display_name=request.display_name)
        return JobPlan(job, total=1 + len(params.dimensions), parts=1)
