"""Evaluate parts: score a model on the labelled evaluation data (one part per job)."""

from __future__ import annotations

from embedfleet.domain import EvaluateParams
from embedfleet.registry import ModelSpec
from embedfleet.worker.evaluate import EvalLimits, EvalReport, encode_fn_for, evaluate
from embedfleet.worker.kinds.base import Part, PartResult, WorkerContext

# The retrieval corpus is sampled at this many definitions per evaluation query (20,000 in all).
_CORPUS_PER_QUERY = 4


def evaluation_report(
    ctx: WorkerContext, spec: ModelSpec, eval_limit: int, dims: tuple[int, ...] = (), teacher: ModelSpec | None = None
) -> EvalReport:
    """A model's scores on at most ``eval_limit`` queries/pairs (shared with the distill gate)."""
    teacher_fn = encode_fn_for(ctx.host.get(teacher)) if teacher is not None else None
    return evaluate(
        encode_fn_for(ctx.host.get(spec)),
        dims=list(dims),
        data_dir=ctx.data_dir,
        teacher_encode=teacher_fn,
        limits=EvalLimits(max_queries=eval_limit, max_corpus=eval_limit * _CORPUS_PER_QUERY),
    )


class EvaluatePart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        params = part.spec.params
        assert isinstance(params, EvaluateParams)
        registry = ctx.registry()
        teacher = registry.resolve(params.teacher) if params.teacher else None
        report = evaluation_report(ctx, registry.resolve(params.model), params.eval_limit, params.dimensions, teacher)
        ctx.store.report(part.job_id, metrics=report.flat())
        return PartResult(done=part.total)
