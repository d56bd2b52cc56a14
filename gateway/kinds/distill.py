"""Distillation jobs, gateway side: one part that trains, gates and registers a student; progress in steps."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from embedfleet import errors
from embedfleet.corpus import check_text
from embedfleet.domain import DistillParams, Document, EmbeddingOptions, ProgressUnit
from embedfleet.gateway import tenancy
from embedfleet.gateway.kinds.base import JobPlan, Submission, job_spec

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Texts per optimizer step; a larger batch would not fit a worker's memory anyway.
MAX_BATCH_SIZE = 4096
# The recipe's defaults (bench/RESULTS.md, "Distillation recipe"): passes over the texts when max_steps
# is 0 (training stops earlier once held-out agreement stops rising), and the learning rate that beat 1e-4
# on held-out agreement for a layer-cut MiniLM.
DEFAULT_EPOCHS = 3
DEFAULT_LEARNING_RATE = 5e-4


@dataclass(frozen=True)
class DistillRequest:
    student_name: str
    teacher: str = ""
    keep_layers: int = 0
    init_model: str = ""
    source_path: str = ""
    texts: tuple[str, ...] = ()
    max_steps: int = 0
    batch_size: int = 0
    learning_rate: float = 0.0
    matryoshka_dimensions: tuple[int, ...] = ()
    min_quality_fraction: float = 0.0
    eval_limit: int = 0
    display_name: str = ""


class DistillPlanner:
    def plan(self, request: DistillRequest, sub: Submission) -> JobPlan:
        ctx = sub.ctx
        registry = ctx.registry
        teacher = ctx.resolve(EmbeddingOptions(model=request.teacher or "teacher"))
        init = ctx.visible_model(registry.resolve(request.init_model)) if request.init_model else teacher.spec
        if not _MODEL_NAME.fullmatch(request.student_name):
            raise errors.InvalidArgument(
                f"student_name {errors.echo(request.student_name)} is invalid: use letters, digits, '.', '_' and '-'",
                "config.student_name",
            )
        if request.student_name in {m.name for m in ctx.settings.models}:
            raise errors.FailedPrecondition(f"{request.student_name!r} is a configured model; pick another name")
        width = teacher.spec.dimensions
        for dim in request.matryoshka_dimensions:
            if not 0 < dim < width:
                raise errors.InvalidArgument(
                    f"matryoshka dimension {dim} must be between 1 and {width - 1} (the teacher's width)",
                    "config.matryoshka_dimensions",
                )
        if not 0 <= request.min_quality_fraction <= 1.5:
            raise errors.InvalidArgument(
                "min_quality_fraction must be between 0 and 1.5 (above 1: beat the teacher)",
                "config.min_quality_fraction",
            )
        if not (math.isfinite(request.learning_rate) and 0 <= request.learning_rate <= 1):
            raise errors.InvalidArgument(
                f"learning_rate {request.learning_rate} must be between 0 and 1 (0 means 5e-4)", "config.learning_rate"
            )
        if request.batch_size > MAX_BATCH_SIZE:
            raise errors.InvalidArgument(
                f"batch_size {request.batch_size} exceeds the limit {MAX_BATCH_SIZE}", "config.batch_size"
            )
        if request.source_path and request.texts:
            raise errors.InvalidArgument("give training texts or a source path, not both", "config.texts")
        texts = [d.text for d in ctx.server_corpus(request.source_path)] if request.source_path else list(request.texts)
        texts = [t for t in texts if t.strip()]
        for i, text in enumerate(texts):
            check_text(text, f"training text {i}", ctx.settings.max_text_bytes, "config.texts")
        if len(texts) < 4:
            raise errors.InvalidArgument(
                f"distillation needs at least 4 non-empty texts, got {len(texts)}", "config.texts"
            )
        if len(texts) > ctx.settings.max_documents_per_job:
            raise errors.ResourceExhausted(f"more than {ctx.settings.max_documents_per_job} training texts")
        batch = request.batch_size or 32
        steps = request.max_steps or DEFAULT_EPOCHS * -(-len(texts) // batch)
        params = DistillParams(
            teacher=teacher.spec.name,
            student_name=tenancy.model_name(request.student_name),  # the tenant's own model
            keep_layers=request.keep_layers,
            init_model=init.name,
            steps=steps,
            batch_size=batch,
            learning_rate=request.learning_rate or DEFAULT_LEARNING_RATE,
            matryoshka_dimensions=tuple(sorted(set(request.matryoshka_dimensions), reverse=True)),
            min_quality_fraction=request.min_quality_fraction or 0.95,
            eval_limit=request.eval_limit or ctx.settings.distill_eval_limit,
        )
        sub.stager.stage(0, [Document(id=str(i), text=t) for i, t in enumerate(texts)])
        spec = job_spec(params, teacher, unit=ProgressUnit.STEPS, display_name=request.display_name)
        return JobPlan(spec, total=steps, parts=1)
