"""Jobs about models rather than corpora: distil a student (then gate and register it) and evaluate a model.

Each runs as the single task of its job on a worker (a GPU one where there is one), reports progress
and figures through the job store like any job, and leaves its product in the model store. The
training and scoring themselves are ``distill`` and ``evaluate``; this module only wires them to jobs.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embedfleet.domain import DistillParams, EvaluateParams, JobKind, JobSnapshot, JobState
from embedfleet.errors import EmbedfleetError, InvalidArgument
from embedfleet.jobstore import JobStore
from embedfleet.model_store import ModelStore
from embedfleet.registry import ModelRegistry, ModelRole, ModelSpec
from embedfleet.worker.distill import DistillConfig, DistillPhase, DistillProgress, distill
from embedfleet.worker.encoders import ModelHost
from embedfleet.worker.evaluate import EvalLimits, EvalReport, encode_fn_for, evaluate, quality_gate

log = logging.getLogger(__name__)

# The retrieval corpus is sampled at this many definitions per evaluation query (20,000 in all).
_CORPUS_PER_QUERY = 4
# Cancellation is checked every this many training steps.
_CANCEL_CHECK_STEPS = 10


class JobCancelled(EmbedfleetError):
    """The job was cancelled while its task ran; the task stops and records nothing more."""


@dataclass
class ModelJobs:
    store: JobStore
    registry: Callable[[], ModelRegistry]
    host: ModelHost
    model_store: ModelStore
    device: str
    data_dir: Path | None = None

    def run(self, snap: JobSnapshot, texts: list[str]) -> None:
        """Run a DISTILL or EVALUATE job's task. Domain errors fail the job with their message."""
        if snap.spec.kind == JobKind.DISTILL and snap.spec.distill is not None:
            self._distill(snap, snap.spec.distill, texts)
        elif snap.spec.kind == JobKind.EVALUATE and snap.spec.evaluate is not None:
            self._evaluate(snap, snap.spec.evaluate)
        else:
            raise InvalidArgument(f"job {snap.id} of kind {snap.spec.kind.value} carries no model-job settings")

    def _limits(self, eval_limit: int) -> EvalLimits:
        return EvalLimits(max_queries=eval_limit, max_corpus=eval_limit * _CORPUS_PER_QUERY)

    def _report(
        self, spec: ModelSpec, eval_limit: int, dims: tuple[int, ...] = (), teacher: ModelSpec | None = None
    ) -> EvalReport:
        teacher_fn = encode_fn_for(self.host.get(teacher)) if teacher is not None else None
        return evaluate(
            encode_fn_for(self.host.get(spec)),
            dims=list(dims),
            data_dir=self.data_dir,
            teacher_encode=teacher_fn,
            limits=self._limits(eval_limit),
        )

    def _evaluate(self, snap: JobSnapshot, params: EvaluateParams) -> None:
        registry = self.registry()
        teacher = registry.resolve(params.teacher) if params.teacher else None
        report = self._report(registry.resolve(params.model), params.eval_limit, params.dimensions, teacher)
        self.store.report(snap.id, done=snap.total, metrics=report.flat())

    def _distill(self, snap: JobSnapshot, params: DistillParams, texts: list[str]) -> None:
        registry = self.registry()
        teacher = registry.resolve(params.teacher)
        init = registry.resolve(params.init_model) if params.init_model != teacher.name else None
        config = DistillConfig(
            keep_layers=params.keep_layers or _half_the_layers(init or teacher),
            init_model=init,
            matryoshka_dims=params.matryoshka_dimensions,
            steps=params.steps,
            batch_size=params.batch_size,
            learning_rate=params.learning_rate,
            device=self.device,
        )
        staging = self.model_store.root / ".staging" / snap.id
        shutil.rmtree(staging, ignore_errors=True)  # a previous attempt of this job (worker crash)
        staging.parent.mkdir(parents=True, exist_ok=True)
        result = distill(config, teacher, texts, staging, self._progress(snap.id))
        self.store.report(
            snap.id,
            done=snap.total,
            metrics={
                "agreement_before": result.agreement_before,
                "agreement_after": result.agreement_after,
                "final_loss": result.losses[-1] if result.losses else 0.0,
            },
        )
        manifest = self.model_store.register(
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
        student = manifest.to_spec(self.model_store.path(manifest.name, manifest.version))
        teacher_report = self._report(teacher, params.eval_limit)
        student_report = self._report(student, params.eval_limit, result.matryoshka_dims)
        decision = quality_gate(student_report, teacher_report, params.min_quality_fraction)
        self.model_store.set_eval_metrics(manifest.name, manifest.version, student_report.flat())
        if decision.passed:
            self.model_store.promote(manifest.name, manifest.version, reason=decision.reason)
        log.info("job %s: student %s@%s gate %s", snap.id, manifest.name, manifest.version, decision.reason)
        self.store.report(
            snap.id,
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

    def _progress(self, job_id: str) -> Callable[[DistillProgress], None]:
        def on_progress(event: DistillProgress) -> None:
            if event.phase != DistillPhase.TRAIN:
                return
            self.store.report(job_id, done=event.step, metrics={"loss": float(event.loss or 0.0)})
            if event.step % _CANCEL_CHECK_STEPS == 0 and self.store.get(job_id).state == JobState.CANCELLED:
                raise JobCancelled(f"job {job_id} was cancelled at step {event.step}")

        return on_progress


def _half_the_layers(spec: ModelSpec) -> int:
    """Default student depth: half the transformer layers of the model it is cut from."""
    path = spec.local_path()
    if path is None or not (path / "config.json").is_file():
        return 3
    layers = int(json.loads((path / "config.json").read_text()).get("num_hidden_layers", 6))
    return max(1, layers // 2)
