"""Distil a smaller, faster student from a teacher: layer-cut copy + embedding MSE (+ Matryoshka).

The recipe, and why each part is there:

* **Student = the teacher (or ``config.init_model``) with transformer layers dropped.** A layer-cut
  copy starts with the teacher's tokenizer, embeddings and pooling, so it begins close to the teacher
  and needs few steps to recover (DistilBERT / sentence-transformers' layer-reduction recipe). Cutting
  MiniLM-L6 to 2-3 layers gives 2-3x the sentences/s.
* **Labels are the teacher's embeddings, computed once** (texts only, no human labels), L2-normalised:
  every serving path normalises, so only direction matters, and on unit vectors MSE is
  ``(2 - 2 cos) / d``, i.e. the loss optimises exactly the cosine agreement we report.
* **Loss = sentence-transformers' ``losses.MSELoss``**, wrapped in ``losses.MatryoshkaLoss`` over
  ``config.matryoshka_dims`` (plus the full dimension) when the student must also be an MRL model.
* **A learned ``Dense`` projection inside the student** when the student's width differs from the
  teacher's (initialised by ridge regression onto the labels, so training starts from a sensible map).
  It lives in the saved model, unlike ``MSELoss(projection_dim=...)`` whose projection stays on the
  loss: the saved student therefore outputs vectors in the teacher's space, and its agreement with
  the teacher can be measured and gated.
* **For an MRL student the labels are rotated onto the teacher's principal axes** (an orthogonal
  rotation fitted on the training labels; ``rotate_labels``). MatryoshkaLoss compares a student prefix
  with the *same prefix of the label*; a plain teacher's first 64 coordinates are an arbitrary slice
  (on the Lee pairs MiniLM's Spearman drops 0.508 -> 0.265 when cut to 64 dims), so mimicking them
  would teach the student a bad prefix. After the rotation the label prefix is the best linear
  low-dimensional summary of the teacher (0.514 at 64 dims, measured on the same pairs), while every
  full-dimension cosine is unchanged. The student gets a ``Dense`` layer initialised to that rotation,
  so it starts in the rotated space; the rotation is saved as ``label_rotation.npy`` so a teacher can
  be mapped into the student's space (``load_label_rotation``) for direct cosine comparisons.
* **A plain torch loop, not ``SentenceTransformerTrainer``.** The trainer needs ``accelerate`` (not a
  dependency of the worker, and pip-resolving more of the HF stack is what breaks these environments),
  writes checkpoints we do not want, and reports through callbacks that make per-step progress and
  cancellation from the job harder. The loop uses the library's own pieces (``preprocess``, the loss
  modules, ``encode``), so the behaviour is the library's; AdamW, linear warmup/decay and gradient
  clipping are the trainer's defaults.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer import losses
from sentence_transformers.sentence_transformer.modules import Dense, Normalize
from torch import nn

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition, InvalidArgument
from embedfleet.registry import ModelSpec
from embedfleet.worker.models.host import resolve_device
from embedfleet.worker.models.torch import SentenceTransformerEncoder

ROTATION_FILE = "label_rotation.npy"
INFO_FILE = "distill.json"


class DistillConfig(BaseModel):
    """Everything that decides the student; JSON-serialisable so a job can carry it."""

    model_config = ConfigDict(frozen=True)

    keep_layers: int | tuple[int, ...] = Field(
        default=3, description="a count (evenly spaced layers, first and last kept) or explicit layer indices"
    )
    init_model: ModelSpec | None = Field(default=None, description="start from this model instead of the teacher")
    matryoshka_dims: tuple[int, ...] = Field(default=(), description="prefix sizes the student must support")
    rotate_labels: bool | None = Field(default=None, description="None: rotate iff matryoshka_dims is set")
    steps: int = Field(default=100, gt=0, description="optimizer steps")
    batch_size: int = Field(default=32, gt=0)
    learning_rate: float = Field(default=1e-4, gt=0)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    holdout_fraction: float = Field(default=0.1, gt=0, lt=1)
    max_seq_length: int | None = Field(default=None, gt=0, description="None: the teacher's")
    seed: int = 0
    device: str = "auto"
    bf16: bool = Field(default=False, description="bfloat16 autocast for the forward pass (CUDA only)")
    encode_batch_size: int = Field(default=64, gt=0, description="batch size for labels and agreement")

    @field_validator("keep_layers")
    @classmethod
    def _check_layers(cls, value: int | tuple[int, ...]) -> int | tuple[int, ...]:
        if isinstance(value, int):
            if value < 1:
                raise ValueError("keep_layers must keep at least one layer")
            return value
        if not value:
            raise ValueError("keep_layers must name at least one layer")
        if any(i < 0 for i in value) or len(set(value)) != len(value):
            raise ValueError(f"keep_layers {value} must be distinct non-negative layer indices")
        return tuple(sorted(value))

    @field_validator("matryoshka_dims")
    @classmethod
    def _check_dims(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(d <= 0 for d in value):
            raise ValueError(f"matryoshka_dims {value} must be positive")
        return tuple(sorted(set(value), reverse=True))


class DistillPhase(StrEnum):
    LABELS = "labels"  # teacher embeddings being computed
    TRAIN = "train"  # one event per optimizer step, with its loss
    EVALUATE = "evaluate"  # held-out agreement before/after
    SAVE = "save"


@dataclass(frozen=True)
class DistillProgress:
    """One progress event; ``loss`` and ``learning_rate`` are set on TRAIN events only."""

    phase: DistillPhase
    step: int
    total_steps: int
    elapsed_s: float
    loss: float | None = None
    learning_rate: float | None = None


@dataclass(frozen=True)
class DistillResult:
    """What was trained and how well it agrees with the teacher on texts it never saw.

    Agreement is the mean cosine between student and (rotated, if ``label_rotation``) teacher vectors
    on the held-out slice; ``agreement_by_dim_*`` gives the same after truncating both to each MRL
    prefix and re-normalising.
    """

    output_dir: Path
    teacher: str
    teacher_version: str
    teacher_layers: int
    kept_layers: tuple[int, ...]
    dimensions: int
    matryoshka_dims: tuple[int, ...]
    max_seq_length: int
    query_prompt: str
    document_prompt: str
    label_rotation: bool
    steps: int
    losses: tuple[float, ...]
    train_texts: int
    holdout_texts: int
    agreement_before: float
    agreement_after: float
    agreement_by_dim_before: dict[int, float] = field(default_factory=dict)
    agreement_by_dim_after: dict[int, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def agreement_gain(self) -> float:
        return self.agreement_after - self.agreement_before


ProgressFn = Callable[[DistillProgress], None]


def distill(
    config: DistillConfig,
    teacher: ModelSpec,
    texts: list[str],
    output_dir: Path,
    progress: ProgressFn | None = None,
) -> DistillResult:
    """Train a student of ``teacher`` on ``texts`` and write it to ``output_dir``.

    ``output_dir`` must not exist (or be an empty directory): the model is written to a sibling
    temporary directory and renamed into place at the end, so a crashed or cancelled run never leaves
    a directory that looks like a finished model. ``progress`` may raise to cancel the run.
    """
    started = time.monotonic()
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise FailedPrecondition(f"distillation output {output_dir} already exists and is not empty")
    texts = [t for t in texts if t and t.strip()]
    if len(texts) < 4:
        raise InvalidArgument(f"distillation needs at least 4 non-empty texts, got {len(texts)}")
    _seed_everything(config.seed)
    device = resolve_device(config.device)
    if config.bf16 and not device.startswith("cuda"):
        raise InvalidArgument("bf16 autocast is only supported on CUDA devices")

    def report(phase: DistillPhase, step: int, loss: float | None = None, lr: float | None = None) -> None:
        if progress is not None:
            progress(DistillProgress(phase, step, config.steps, time.monotonic() - started, loss, lr))

    train_texts, holdout_texts = _split(texts, config.holdout_fraction, config.seed)

    # 1. Load the teacher, cut the student's base (cheap checks first), then the labels, once.
    report(DistillPhase.LABELS, 0)
    teacher_encoder = SentenceTransformerEncoder(teacher, device, config.encode_batch_size)
    if config.init_model is None:
        base = copy.deepcopy(teacher_encoder.model)
    else:
        base = SentenceTransformerEncoder(config.init_model, device, config.encode_batch_size).model
    teacher_layers, kept = cut_layers(base, config.keep_layers)
    label_dim = teacher.dimensions
    bad = [d for d in config.matryoshka_dims if d > label_dim]
    if bad:
        raise InvalidArgument(f"matryoshka_dims {bad} exceed the teacher's dimension {label_dim}")
    teacher_version = teacher_encoder.version
    prompt = teacher.document_prompt
    max_seq_length = config.max_seq_length or teacher.max_seq_length
    labels_train = _l2(teacher_encoder.encode(train_texts, InputType.DOCUMENT).vectors)
    labels_holdout = _l2(teacher_encoder.encode(holdout_texts, InputType.DOCUMENT).vectors)
    del teacher_encoder

    rotate = bool(config.matryoshka_dims) if config.rotate_labels is None else config.rotate_labels
    rotation: np.ndarray | None = None
    if rotate:
        rotation = principal_rotation(labels_train)
        labels_train = labels_train @ rotation
        labels_holdout = labels_holdout @ rotation

    # 2. Student: layer-cut copy, then (projection | rotation) Dense, then Normalize.
    base.max_seq_length = max_seq_length
    student = _assemble_student(base, labels_train, train_texts, rotation, prompt, config, device)
    dims = tuple(d for d in config.matryoshka_dims if d < label_dim)

    report(DistillPhase.EVALUATE, 0)
    before = _agreement(student, holdout_texts, labels_holdout, dims, prompt, config.encode_batch_size)

    # 3. Train.
    loss_fn: nn.Module = losses.MSELoss(student)
    if config.matryoshka_dims:
        loss_fn = losses.MatryoshkaLoss(student, loss_fn, matryoshka_dims=[label_dim, *dims])
    step_losses = _train(student, loss_fn, train_texts, labels_train, prompt, config, device, report)

    report(DistillPhase.EVALUATE, config.steps)
    after = _agreement(student, holdout_texts, labels_holdout, dims, prompt, config.encode_batch_size)

    # 4. Save atomically, with the facts needed to register and audit it.
    report(DistillPhase.SAVE, config.steps)
    result = DistillResult(
        output_dir=output_dir,
        teacher=teacher.name,
        teacher_version=teacher_version,
        teacher_layers=teacher_layers,
        kept_layers=kept,
        dimensions=label_dim,
        matryoshka_dims=dims,
        max_seq_length=max_seq_length,
        query_prompt=teacher.query_prompt,
        document_prompt=teacher.document_prompt,
        label_rotation=rotation is not None,
        steps=config.steps,
        losses=tuple(step_losses),
        train_texts=len(train_texts),
        holdout_texts=len(holdout_texts),
        agreement_before=before[label_dim],
        agreement_after=after[label_dim],
        agreement_by_dim_before={d: before[d] for d in dims},
        agreement_by_dim_after={d: after[d] for d in dims},
        elapsed_s=time.monotonic() - started,
    )
    _save(student, rotation, config, result, output_dir)
    return result


def choose_layers(count: int, total: int) -> tuple[int, ...]:
    """``count`` evenly spaced layer indices of ``total``, keeping the first and the last (for one: the last).

    The first layer sits on the embeddings and the last produces what pooling sees; keeping both is
    what makes a layer-cut copy start close to its teacher.
    """
    if count >= total:
        return tuple(range(total))
    if count == 1:
        return (total - 1,)
    return tuple(sorted({math.floor(i * (total - 1) / (count - 1) + 0.5) for i in range(count)}))


def cut_layers(model: SentenceTransformer, keep: int | Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """Drop all transformer layers of ``model`` but ``keep``, in place; returns (original count, kept).

    Works for encoder stacks kept in an ``nn.ModuleList`` named ``layer``/``layers`` whose length is
    ``config.num_hidden_layers`` (BERT, MiniLM, MPNet, RoBERTa, DistilBERT via the config's attribute
    map); the config is updated so the saved model reloads with the new depth.
    """
    auto_model = model[0].auto_model
    total = int(auto_model.config.num_hidden_layers)
    parent, attr = _find_layer_list(auto_model, total)
    kept = choose_layers(keep, total) if isinstance(keep, int) else tuple(keep)
    if any(i >= total for i in kept):
        raise InvalidArgument(f"keep_layers {kept} out of range: the model has {total} layers")
    layers = getattr(parent, attr)
    setattr(parent, attr, nn.ModuleList([layers[i] for i in kept]))
    auto_model.config.num_hidden_layers = len(kept)
    return total, kept


def principal_rotation(labels: np.ndarray) -> np.ndarray:
    """Orthogonal (d, d) matrix whose columns are the labels' principal axes, largest variance first.

    ``labels @ R`` keeps every inner product (so full-dimension cosines are unchanged) while putting
    the most informative directions first, so a prefix of the rotated vector is a good embedding.
    """
    centred = labels.astype(np.float64) - labels.mean(axis=0, keepdims=True)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    rotation = vectors[:, ::-1]
    # eigh's sign per axis is arbitrary; fix it so the result does not depend on the LAPACK build.
    signs = np.sign(rotation[np.abs(rotation).argmax(axis=0), np.arange(rotation.shape[1])])
    return (rotation * signs).astype(np.float32)


def load_label_rotation(model_dir: Path) -> np.ndarray | None:
    """The rotation a student was trained in, or None: ``l2(teacher) @ R`` is comparable with it."""
    path = Path(model_dir) / ROTATION_FILE
    return np.load(path) if path.is_file() else None


def _find_layer_list(auto_model: nn.Module, total: int) -> tuple[nn.Module, str]:
    for name, module in auto_model.named_modules():
        is_stack = isinstance(module, nn.ModuleList) and len(module) == total
        if is_stack and name.rsplit(".", 1)[-1] in ("layer", "layers"):
            parent_name, _, attr = name.rpartition(".")
            return auto_model.get_submodule(parent_name), attr
    raise FailedPrecondition(
        f"cannot cut layers of {type(auto_model).__name__}: no list of {total} layers named layer/layers"
    )


def _assemble_student(
    base: SentenceTransformer,
    labels: np.ndarray,
    texts: list[str],
    rotation: np.ndarray | None,
    prompt: str,
    config: DistillConfig,
    device: str,
) -> SentenceTransformer:
    """base modules (minus a trailing Normalize) + optional Dense + Normalize."""
    modules = [m for m in base.children() if not isinstance(m, Normalize)]
    student_dim = base.get_embedding_dimension()
    label_dim = labels.shape[1]
    if student_dim != label_dim:
        # Ridge fit from the (cut) student's own vectors to the labels: a good starting projection.
        raw = base.encode(
            texts[:5000], prompt=prompt or None, batch_size=config.encode_batch_size, convert_to_numpy=True
        )
        weight = _ridge(_l2(raw), labels[: len(raw)])
        modules.append(_linear(student_dim, label_dim, weight))
    elif rotation is not None:
        modules.append(_linear(student_dim, label_dim, rotation))
    modules.append(Normalize())
    student = SentenceTransformer(modules=modules, device=device, prompts=dict(base.prompts))
    student.max_seq_length = base.max_seq_length
    return student


def _linear(in_dim: int, out_dim: int, weight: np.ndarray) -> Dense:
    """Dense (no bias, identity activation) computing ``x @ weight``; weight is (in_dim, out_dim)."""
    return Dense(
        in_dim,
        out_dim,
        bias=False,
        activation_function=nn.Identity(),
        init_weight=torch.from_numpy(np.ascontiguousarray(weight.T, dtype=np.float32)),
    )


def _ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares map x -> y with the ridge strength picked on a held-out fifth of the rows.

    With fewer texts than dimensions (a small CPU run) a weak ridge fits the training texts almost
    perfectly and generalises badly; with many texts a weak one is best. Choosing by validation cosine
    gets both cases right without a knob.
    """
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    n_val = max(1, len(x64) // 5)
    fit_x, fit_y, val_x, val_y = x64[n_val:], y64[n_val:], x64[:n_val], y64[:n_val]
    scale = np.trace(fit_x.T @ fit_x) / x64.shape[1]
    best, best_score = 1e-2, -np.inf
    for strength in (1e-3, 1e-2, 1e-1, 1.0, 10.0):
        weight = _solve_ridge(fit_x, fit_y, strength * scale)
        score = float(np.mean(np.sum(_l2(val_x @ weight) * _l2(val_y), axis=1)))
        if score > best_score:
            best, best_score = strength, score
    return _solve_ridge(x64, y64, best * np.trace(x64.T @ x64) / x64.shape[1])


def _solve_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    gram = x.T @ x
    return np.linalg.solve(gram + lam * np.eye(gram.shape[0]), x.T @ y)


def _train(
    student: SentenceTransformer,
    loss_fn: nn.Module,
    texts: list[str],
    labels: np.ndarray,
    prompt: str,
    config: DistillConfig,
    device: str,
    report: Callable[..., None],
) -> list[float]:
    params = [p for p in loss_fn.parameters() if p.requires_grad]  # the student's, plus any on the loss
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    warmup = int(config.warmup_fraction * config.steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (config.steps - step) / max(1, config.steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(config.seed)
    label_tensor = torch.from_numpy(labels)
    batch_size = min(config.batch_size, len(texts))
    lengths = [len(t) for t in texts]
    batches: list[list[int]] = []
    out: list[float] = []
    student.train()
    for step in range(config.steps):
        if not batches:
            batches = _length_bucketed_batches(lengths, batch_size, generator)
        batch = batches.pop()
        features = student.preprocess([texts[i] for i in batch], prompt=prompt or None)
        features = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        targets = label_tensor[batch].to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.bf16):
            loss = loss_fn([features], targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FailedPrecondition(f"distillation diverged at step {step + 1}: loss {value}")
        out.append(value)
        report(DistillPhase.TRAIN, step + 1, value, lr)
    student.eval()
    return out


def _length_bucketed_batches(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One shuffled epoch of batches whose texts have similar lengths.

    A batch is padded to its longest text, so random batches of a mixed corpus (one 256-token
    paragraph among 31 short definitions) cost several times the real tokens. Sorting within windows
    of 16 batches and then shuffling the batch order keeps batches random across the corpus while
    cutting the padding; the short tail of the epoch is dropped.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 16
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


def _agreement(
    student: SentenceTransformer,
    texts: list[str],
    labels: np.ndarray,
    dims: tuple[int, ...],
    prompt: str,
    batch_size: int,
) -> dict[int, float]:
    """Mean cosine student vs label, at full dimension and at each prefix (both re-normalised)."""
    student.eval()
    with torch.inference_mode():
        vectors = student.encode(
            texts, prompt=prompt or None, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )
    out = {}
    for d in (labels.shape[1], *dims):
        out[d] = float(np.mean(np.sum(_l2(vectors[:, :d]) * _l2(labels[:, :d]), axis=1)))
    return out


def _save(
    student: SentenceTransformer,
    rotation: np.ndarray | None,
    config: DistillConfig,
    result: DistillResult,
    output_dir: Path,
) -> None:
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        student.save(str(tmp), create_model_card=False)
        if rotation is not None:
            np.save(tmp / ROTATION_FILE, rotation)
        info = {k: v for k, v in asdict(result).items() if k not in ("output_dir", "losses")}
        info["first_losses"] = list(result.losses[:5])
        info["last_losses"] = list(result.losses[-5:])
        info["config"] = config.model_dump(mode="json")
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str), encoding="utf-8")
        tmp.rename(output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _split(texts: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    n_holdout = min(len(texts) - 2, max(2, round(fraction * len(texts))))
    return [texts[i] for i in order[n_holdout:]], [texts[i] for i in order[:n_holdout]]


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _seed_everything(seed: int) -> None:
    random.seed(seed)  # MatryoshkaLoss's n_dims_per_step sampling uses `random`
    np.random.seed(seed)
    torch.manual_seed(seed)
