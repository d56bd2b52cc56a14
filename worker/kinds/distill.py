"""Distill parts: train a student from the teacher, register it in the model store, evaluate it
against the teacher and promote it only if it passes the quality gate (one part per job).

Training reports each step as progress; cancellation is checked every few steps. Training checkpoints
into ``<model store>/.checkpoints/<job id>``: a part re-queued after its worker died, or a failed job
resumed (``ResumeJob``), continues from the last checkpoint; success and cancellation delete it.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable

from embedfleet.domain import DistillParams, JobState
from embedfleet.registry import ModelRole, ModelSpec
from embedfleet.worker.distill import DistillConfig, DistillPhase, DistillProgress, distill
from embedfleet.worker.distill_state import LabelCache
from embedfleet.worker.evaluate import quality_gate
from embedfleet.worker.kinds.base import Part, PartCancelled, PartResult, WorkerContext
from embedfleet.worker.kinds.evaluate import evaluation_report

log = logging.getLogger(__name__)

# Cancellation is checked every this many training steps.
_CANCEL_CHECK_STEPS = 10


class DistillPart:
    def run(self, part: Part, ctx: WorkerContext) -> PartResult:
        params = part.spec.params
        assert isinstance(params, DistillParams)
        texts = [d.text for d in ctx.store.get_part_input(part.job_id, part.index)]
        registry = ctx.registry()
        teacher = registry.resolve(params.teacher)
        init = registry.resolve(params.init_model) if params.init_model != teacher.name else None
        config = DistillConfig(
            keep_layers=params.keep_layers or _half_the_layers(init or teacher),
            init_model=init,
            matryoshka_dims=params.matryoshka_dimensions,
            steps=params.steps,
            batch_size=params.batch_size,
            learning_rate=params.learning_rate,
            device=ctx.device,
            checkpoint_every=ctx.distill_checkpoint_steps,
        )
        # One directory per attempt (the store numbers every start): no run ever deletes another's, even
        # one that outlived its lease (the lease already refuses a second run while the first is alive).
        staging = ctx.model_store.root / ".staging" / f"{part.job_id}.{part.attempt}"
        staging.parent.mkdir(parents=True, exist_ok=True)
        # One checkpoint directory per job (not per attempt): a re-queued part resumes where the killed one
        # stopped. The labels are cached across jobs: a second student of the same corpus skips the teacher.
        checkpoints = ctx.model_store.root / ".checkpoints" / part.job_id
        labels = LabelCache(ctx.model_store.root / ".labels")
        try:
            progress = _progress(ctx, part.job_id)
            result = distill(config, teacher, texts, staging, progress, checkpoint_dir=checkpoints, label_cache=labels)
        except PartCancelled:
            shutil.rmtree(checkpoints, ignore_errors=True)  # a cancelled job is never resumed
            raise
        ctx.store.report(
            part.job_id,
            done=part.total,  # an early stop ends the steps: the progress is complete
            metrics={
                "agreement_before": result.agreement_before,
                "agreement_after": result.agreement_after,
                "final_loss": result.losses[-1] if result.losses else 0.0,
                "steps_run": result.steps,
                "best_step": result.best_step,
                "resumed_from_step": result.resumed_from,
            },
        )
        manifest = ctx.model_store.register(
            params.student_name,
            staging,
            role=ModelRole.MRL if result.matryoshka_dims else ModelRole.STUDENT,
            dimensions=result.dimensions,
            max_seq_length=result.max_seq_length,
            matryoshka_dimensions=result.matryoshka_dims,
            base_model=(init or teacher).name,
            teacher=teacher.name,
            query_prompt=result.query_prompt,
            document_prompt=result.document_prompt,
            move=True,
        )
        shutil.rmtree(checkpoints, ignore_errors=True)  # the model is registered: nothing to resume any more
        student = manifest.to_spec(ctx.model_store.path(manifest.name, manifest.version))
        teacher_report = evaluation_report(ctx, teacher, params.eval_limit)
        student_report = evaluation_report(ctx, student, params.eval_limit, result.matryoshka_dims)
        decision = quality_gate(student_report, teacher_report, params.min_quality_fraction)
        ctx.model_store.set_eval_metrics(manifest.name, manifest.version, student_report.flat())
        if decision.passed:
            ctx.model_store.promote(manifest.name, manifest.version, reason=decision.reason)
        log.info("job %s: student %s@%s gate %s", part.job_id, manifest.name, manifest.version, decision.reason)
        ctx.store.report(
            part.job_id,
            metrics={
                **{f"student.{k}": v for k, v in student_report.flat().items()},
                **{f"teacher.{k}": v for k, v in teacher_report.flat().items()},
                **{f"fraction.{k}": v for k, v in decision.fractions.items()},
            },
            outputs={
                "model": manifest.name,
                "version": manifest.version,
                "promoted": "true" if decision.passed else "false",
                "gate": decision.reason,
            },
        )
        return PartResult(done=0)  # the steps were reported as they ran


def _progress(ctx: WorkerContext, job_id: str) -> Callable[[DistillProgress], None]:
    def on_progress(event: DistillProgress) -> None:
        if event.agreement is not None:  # a held-out check: what the early stop watches, as the job goes
            ctx.store.report(job_id, metrics={"heldout_agreement": event.agreement})
        if event.phase != DistillPhase.TRAIN:
            return
        ctx.store.report(job_id, done=event.step, metrics={"loss": float(event.loss or 0.0)})
        if event.step % _CANCEL_CHECK_STEPS == 0 and ctx.store.get(job_id).state == JobState.CANCELLED:
            raise PartCancelled(f"job {job_id} was cancelled at step {event.step}")

    return on_progress


def _half_the_layers(spec: ModelSpec) -> int:
    """Default student depth: half the transformer layers of the model it is cut from."""
    path = spec.local_path()
    if path is None or not (path / "config.json").is_file():
        return 3
    layers = int(json.loads((path / "config.json").read_text()).get("num_hidden_layers", 6))
    return max(1, layers // 2)
