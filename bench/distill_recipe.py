#!/usr/bin/env python
"""What each step of the distillation recipe buys: students trained with one change at a time, on the
same texts, scored against the teacher on the same evaluation slice, in one run.

Each ``--variant NAME:key=value;key=value`` is a ``DistillConfig`` on top of the shared settings (keys:
any config field; layers as ``keep_layers=0.3.5``). The teacher's labels are computed once and read from
a label cache by every later variant (the recipe's first step; the log shows the cache hits). Quality is
Lee Spearman, WordNet recall@10 and nDCG@10 as fractions of the teacher (the gate's metrics), plus the
held-out agreement the early stop watches. Speed is not measured here (``models_quality.py`` does,
interleaved): a variant with the same layers runs at the same speed.

    HF_HUB_OFFLINE=1 python bench/distill_recipe.py --steps 400 \\
        --variant 'mse:loss=mse' --variant 'cosine:loss=cosine' \\
        --variant 'cosine+relational:loss=cosine;relational_weight=1' --out bench/results/distill_recipe.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from models_quality import _printer, _resolve_spec, _student_spec, layers_arg, training_texts

from embedfleet.registry import DEFAULT_MODELS, ModelRole
from embedfleet.worker.distill import DistillConfig, distill
from embedfleet.worker.distill_state import LabelCache
from embedfleet.worker.evaluate import (
    HEADLINE_METRICS,
    EvalLimits,
    default_data_dir,
    encode_fn_for,
    evaluate,
    memoized,
)
from embedfleet.worker.models.host import resolve_device
from embedfleet.worker.models.torch import SentenceTransformerEncoder


def main() -> None:
    args = _parse()
    data_dir = args.data_dir or default_data_dir()
    device = resolve_device(args.device)
    teacher = _resolve_spec(args.teacher, ModelRole.TEACHER)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="embedfleet-recipe-"))
    cache = LabelCache(work / "labels")
    texts = training_texts(args.train_texts, args.max_train_chars, data_dir, args.seed)
    shared = DistillConfig(
        keep_layers=layers_arg(args.keep_layers),
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        eval_every=args.eval_every,
        seed=args.seed,
        device=device,
    )
    limits = EvalLimits(max_queries=args.eval_queries, max_corpus=args.eval_corpus, seed=args.seed)
    teacher_fn = memoized(encode_fn_for(SentenceTransformerEncoder(teacher, device, 32)))
    teacher_report = evaluate(teacher_fn, data_dir=data_dir, limits=limits)

    lines = [
        "# Distillation recipe, one change at a time",
        "",
        f"Command: `{' '.join(['HF_HUB_OFFLINE=1', 'python', *map(shlex.quote, sys.argv)])}`",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, device {device}; teacher `{teacher.name}`; "
        f"{len(texts)} training texts (≤ {args.max_train_chars or '∞'} chars); evaluation {args.eval_queries} "
        f"queries over {args.eval_corpus} documents + the Lee pairs. Teacher: "
        + ", ".join(f"{k} {getattr(teacher_report.full, k):.3f}" for k in HEADLINE_METRICS),
        "",
        "| variant | layers | steps run (best) | train time | held-out agreement | Lee | R@10 | nDCG@10 | min kept "
        "| prefixes: R@10 kept of own full width |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for variant in args.variant:
        name, _, spec = variant.partition(":")
        config = DistillConfig.model_validate(shared.model_dump() | _overrides(spec))
        print(f"== {name}: {config.model_dump_json(exclude={'init_model'})}", flush=True)
        t0 = time.monotonic()
        result = distill(config, teacher, texts, work / name, _printer(name, args.log_every), label_cache=cache)
        train_s = time.monotonic() - t0
        encoder = SentenceTransformerEncoder(_student_spec(name, result), device, 32)
        dims = list(result.matryoshka_dims)
        report = evaluate(encode_fn_for(encoder), dims=dims, data_dir=data_dir, limits=limits)
        kept = [getattr(report.full, k) / getattr(teacher_report.full, k) for k in HEADLINE_METRICS]
        prefixes = ", ".join(f"{d}: {report.by_dim[d].recall_at_10 / report.full.recall_at_10:.3f}" for d in dims)
        row = (
            f"| {name} | {list(result.kept_layers)} | {result.steps} ({result.best_step}) | {train_s:.0f} s "
            f"| {result.agreement_after:.3f} | "
            + " | ".join(f"{v:.3f}" for v in kept)
            + f" | **{min(kept):.3f}** | {prefixes or '—'} |"
        )
        print(row, flush=True)
        lines.append(row)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


def _overrides(spec: str) -> dict[str, object]:
    """``key=value;...``: layers as ``keep_layers=0.3.5``, lists and maps as JSON
    (``matryoshka_dims=[256,128,64]``, ``matryoshka_weights={"128":2}``), anything else as text."""
    out: dict[str, object] = {}
    for item in filter(None, spec.split(";")):
        key, _, value = item.partition("=")
        if key == "keep_layers" and "." in value:
            out[key] = tuple(int(v) for v in value.split("."))
        elif value[:1] in "[{":
            out[key] = json.loads(value)
        else:
            out[key] = value
    return out


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--teacher", default=DEFAULT_MODELS[0].name)
    p.add_argument("--variant", action="append", required=True, help="NAME:key=value;key=value")
    p.add_argument("--keep-layers", default="3")
    p.add_argument("--train-texts", type=int, default=8000)
    p.add_argument("--max-train-chars", type=int, default=400)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-queries", type=int, default=500)
    p.add_argument("--eval-corpus", type=int, default=5000)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args()


if __name__ == "__main__":
    main()
