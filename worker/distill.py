"""Distil a smaller, faster student from a teacher: layer-cut copy + cosine to its embeddings and token states.

The recipe, and why each part is there:

* **Student = the teacher (or ``config.init_model``) with transformer layers dropped.** A layer-cut
  copy starts with the teacher's tokenizer, embeddings and pooling, so it begins close to the teacher
  and needs few steps to recover (DistilBERT / sentence-transformers' layer-reduction recipe). Cutting
  MiniLM-L6 to 2-3 layers gives 2-3x the sentences/s.
* **Labels are the teacher's embeddings, computed once** (texts only, no human labels), L2-normalised:
  every serving path normalises, so only direction matters, and on unit vectors MSE is
  ``(2 - 2 cos) / d``, i.e. the loss optimises exactly the cosine agreement we report.
* **Loss = cosine to the label** (``distill_loss.CosineDistillLoss``), wrapped in
  ``losses.MatryoshkaLoss`` over ``config.matryoshka_dims`` (plus the full dimension, each with its
  ``matryoshka_weights``) when the student must also be an MRL model. On unit vectors it is MSE up to a
  constant; unlike MSE it does not weigh a prefix by ``1 / d`` (see that module). ``loss="mse"`` keeps
  the first recipe's ``losses.MSELoss``.
* **A token term** (``hidden_weight``, on by default for a student cut from the teacher): the student's
  last hidden state is compared with the frozen teacher's, token by token, on the same batch. A pooled
  label is one vector per text; the token states say how the teacher represents each word of it, which
  is what a student with half the layers has to relearn.
* **No dropout while training** (``student_dropout`` 0): the labels are the teacher's deterministic
  outputs, and the noise only blurs what the student must reproduce.
* **Batches of neighbours** (``batching``): each batch is drawn from a k-means cell of the teacher's
  labels, so a step sees texts the teacher places close together, whose fine order is what retrieval
  ranks by. Measured together with the two above on the whole WordNet retrieval set, a 3-layer MiniLM
  student went from 0.921 to 0.967 of the teacher's recall@10 (``bench/RESULTS.md``).
* **Early stopping on held-out agreement**: every ``eval_every`` steps the held-out texts are encoded,
  the best weights are kept, and training stops after ``patience`` checks without a gain; the saved
  student is the best one seen, not the last.
* **Teacher labels cached, training checkpointed** (``distill_state``): the teacher's pass over a
  corpus is paid once, and a distill part killed mid-training resumes from its last checkpoint.
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
import functools
import json
import logging
import math
import random
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import faiss
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
from embedfleet.worker.distill_loss import CosineDistillLoss
from embedfleet.worker.distill_state import LabelCache, fingerprint, load_checkpoint, save_checkpoint
from embedfleet.worker.models.host import resolve_device
from embedfleet.worker.models.torch import SentenceTransformerEncoder

log = logging.getLogger(__name__)

ROTATION_FILE = "label_rotation.npy"
INFO_FILE = "distill.json"


class DistillLoss(StrEnum):
    COSINE = "cosine"
    MSE = "mse"


class Batching(StrEnum):
    LENGTH = "length"  # random texts, bucketed by length
    NEIGHBOURS = "neighbours"  # texts the teacher places close together, bucketed by length


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
    learning_rate: float = Field(default=5e-4, gt=0)
    warmup_fraction: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    holdout_fraction: float = Field(default=0.1, gt=0, lt=1)
    max_seq_length: int | None = Field(default=None, gt=0, description="None: the teacher's")
    seed: int = 0
    device: str = "auto"
    bf16: bool = Field(default=False, description="bfloat16 autocast for the forward pass (CUDA only)")
    encode_batch_size: int = Field(default=64, gt=0, description="batch size for labels and agreement")
    loss: DistillLoss = Field(default=DistillLoss.COSINE, description="cosine (scale-free, see distill_loss) or mse")
    relational_weight: float = Field(
        default=0.0, ge=0, description="weight of the in-batch similarity-matrix term (cosine loss only)"
    )
    relational_temperature: float = Field(
        default=0.0, ge=0, description="0: MSE between the similarity matrices; > 0: KL of their rows' softmax"
    )
    hidden_weight: float | None = Field(
        default=None,
        ge=0,
        description="weight of the token term: the student's last hidden states against the teacher's, token by "
        "token (cosine loss, students cut from the teacher); None: 1 for a student cut from the teacher, else 0",
    )
    batching: Batching = Field(
        default=Batching.NEIGHBOURS,
        description="how a batch is drawn: random texts, or texts the teacher embeds close together",
    )
    student_dropout: float | None = Field(
        default=0.0, ge=0, lt=1, description="dropout in the student while it trains (None: the model's own)"
    )
    matryoshka_weights: dict[int, float] = Field(
        default_factory=dict, description="loss weight per dimension (the full width included); 1 where not given"
    )
    eval_every: int = Field(
        default=100, ge=0, description="steps between held-out agreement checks (0: only at the end)"
    )
    patience: int = Field(default=4, ge=1, description="checks without a gain before training stops early")
    max_holdout: int = Field(default=1000, ge=2, description="held-out texts at most (the checks encode them all)")
    checkpoint_every: int = Field(default=100, gt=0, description="steps between checkpoints (with a checkpoint dir)")

    def token_weight(self) -> float:
        """The token term's weight: explicit, or 1 where it applies (and 0 where not).

        It compares the student's token states with the teacher's, so it needs the teacher's tokenizer and
        width: a student cut from the teacher, trained with the cosine loss.
        """
        applies = self.init_model is None and self.loss == DistillLoss.COSINE
        if self.hidden_weight is None:
            return 1.0 if applies else 0.0
        if self.hidden_weight and not applies:
            raise InvalidArgument(
                "hidden_weight compares token states: it needs the cosine loss and a student cut from the teacher"
            )
        return self.hidden_weight

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
    """One progress event; ``loss`` and ``learning_rate`` are set on TRAIN events only, ``agreement`` (the
    held-out score the early stop watches) on the EVALUATE events of the checks during training."""

    phase: DistillPhase
    step: int
    total_steps: int
    elapsed_s: float
    loss: float | None = None
    learning_rate: float | None = None
    agreement: float | None = None


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
    best_step: int = 0  # the step whose weights were kept (the best held-out check)
    stopped_early: bool = False  # held-out agreement stopped rising before ``config.steps``
    resumed_from: int = 0  # the checkpoint's step this run started from (0: a fresh start)

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
    *,
    checkpoint_dir: Path | None = None,
    label_cache: LabelCache | None = None,
) -> DistillResult:
    """Train a student of ``teacher`` on ``texts`` and write it to ``output_dir``.

    ``output_dir`` must not exist (or be an empty directory): the model is written to a sibling
    temporary directory and renamed into place at the end, so a crashed or cancelled run never leaves
    a directory that looks like a finished model. ``progress`` may raise to cancel the run.

    With ``checkpoint_dir`` the run checkpoints every ``config.checkpoint_every`` steps and, started
    again with the same config, teacher and texts, resumes from the last checkpoint instead of step 0.
    With ``label_cache`` the teacher's labels are read from it when another run computed them.
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
    if config.relational_weight and config.loss != DistillLoss.COSINE:
        raise InvalidArgument("relational_weight needs the cosine loss")
    hidden_weight = config.token_weight()

    def report(
        phase: DistillPhase,
        step: int,
        loss: float | None = None,
        lr: float | None = None,
        agreement: float | None = None,
    ) -> None:
        if progress is not None:
            elapsed = time.monotonic() - started
            progress(DistillProgress(phase, step, config.steps, elapsed, loss, lr, agreement))

    train_idx, holdout_idx = _split(len(texts), config.holdout_fraction, config.max_holdout, config.seed)
    train_texts, holdout_texts = [texts[i] for i in train_idx], [texts[i] for i in holdout_idx]

    # 1. Load the teacher, cut the student's base (cheap checks first), then the labels, once.
    report(DistillPhase.LABELS, 0)
    teacher_encoder = SentenceTransformerEncoder(teacher, device, config.encode_batch_size)
    if config.init_model is None:
        base = copy.deepcopy(teacher_encoder.model)
    else:
        base = SentenceTransformerEncoder(config.init_model, device, config.encode_batch_size).model
    teacher_layers, kept = cut_layers(base, config.keep_layers)
    label_dim = teacher.dimensions
    bad = [d for d in (*config.matryoshka_dims, *config.matryoshka_weights) if d > label_dim]
    if bad:
        raise InvalidArgument(f"matryoshka_dims {bad} exceed the teacher's dimension {label_dim}")
    teacher_version = teacher_encoder.version
    prompt = teacher.document_prompt
    max_seq_length = config.max_seq_length or teacher.max_seq_length
    labels_key = fingerprint(teacher.name, teacher_version, prompt, str(max_seq_length), texts=texts)

    compute = functools.partial(_teacher_labels, teacher_encoder, texts)
    labels = label_cache.get_or_compute(labels_key, compute)[0] if label_cache is not None else compute()
    teacher_tokens = _frozen(teacher_encoder.model[0]) if hidden_weight else None
    del teacher_encoder  # its memory is the student's now (but for its transformer, with a hidden term)
    labels_train, labels_holdout = labels[train_idx], labels[holdout_idx]

    rotate = bool(config.matryoshka_dims) if config.rotate_labels is None else config.rotate_labels
    rotation: np.ndarray | None = None
    if rotate:
        rotation = principal_rotation(labels_train)
        labels_train = labels_train @ rotation
        labels_holdout = labels_holdout @ rotation

    # 2. Student: layer-cut copy, then (projection | rotation) Dense, then Normalize.
    base.max_seq_length = max_seq_length
    student = _assemble_student(base, labels_train, train_texts, rotation, prompt, config, device)
    if config.student_dropout is not None:
        set_dropout(student, config.student_dropout)
    dims = tuple(d for d in config.matryoshka_dims if d < label_dim)

    report(DistillPhase.EVALUATE, 0)
    before = _agreement(student, holdout_texts, labels_holdout, dims, prompt, config.encode_batch_size)

    # 3. Train, checking held-out agreement as it goes and keeping the best student.
    loss_fn: nn.Module = (
        CosineDistillLoss(
            student,
            config.relational_weight,
            config.relational_temperature,
            teacher_tokens=teacher_tokens,
            hidden_weight=hidden_weight,
        )
        if config.loss == DistillLoss.COSINE
        else losses.MSELoss(student)
    )
    if config.matryoshka_dims:
        all_dims = [label_dim, *dims]
        weights = [config.matryoshka_weights.get(d, 1.0) for d in all_dims]
        loss_fn = losses.MatryoshkaLoss(student, loss_fn, matryoshka_dims=all_dims, matryoshka_weights=weights)

    def score() -> dict[int, float]:
        return _agreement(student, holdout_texts, labels_holdout, dims, prompt, config.encode_batch_size)

    run_id = fingerprint(config.model_dump_json(exclude={"device"}), labels_key)
    trainer = _Trainer(student, loss_fn, train_texts, labels_train, prompt, config, device, report, score)
    trainer.run(checkpoint_dir, run_id)

    # Training ends on a check (the last step's, or the one that stopped it) and keeps the best check's
    # weights: that check's agreement is the kept student's, with no second pass over the held-out texts.
    after = trainer.state.best_agreement

    # 4. Save atomically, with the facts needed to register and audit it.
    report(DistillPhase.SAVE, trainer.state.step)
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
        steps=trainer.state.step,
        losses=tuple(trainer.state.losses),
        train_texts=len(train_texts),
        holdout_texts=len(holdout_texts),
        agreement_before=before[label_dim],
        agreement_after=after[label_dim],
        agreement_by_dim_before={d: before[d] for d in dims},
        agreement_by_dim_after={d: after[d] for d in dims},
        elapsed_s=time.monotonic() - started,
        best_step=trainer.state.best_step,
        stopped_early=trainer.state.step < config.steps,
        resumed_from=trainer.resumed_from,
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


def set_dropout(model: nn.Module, p: float) -> None:
    """Every dropout in ``model`` to ``p`` for this run only (the saved config keeps the model's own).

    The labels are the teacher's deterministic (eval-mode) outputs, so dropout in the student only adds
    noise to what it must reproduce. Off, the 3-layer student kept 0.901 of the teacher's recall@10
    instead of 0.890, and with the token term 0.921 instead of 0.885 (``bench/RESULTS.md``).
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def _frozen(module: nn.Module) -> nn.Module:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


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


def _teacher_labels(encoder: SentenceTransformerEncoder, texts: list[str]) -> np.ndarray:
    return _l2(encoder.encode(texts, InputType.DOCUMENT).vectors)


@dataclass
class _TrainState:
    """Everything the loop carries between steps besides the modules' own state (so: what a checkpoint holds)."""

    step: int = 0
    batches: list[list[int]] = field(default_factory=list)  # what is left of the current epoch
    losses: list[float] = field(default_factory=list)
    best_score: float = -math.inf  # the mean of best_agreement over the trained widths
    best_agreement: dict[int, float] = field(default_factory=dict)
    best_step: int = 0
    best_weights: dict[str, torch.Tensor] | None = None
    stale_checks: int = 0


class _Trainer:
    """The optimisation loop: AdamW, linear warm-up then decay, clipping, length-bucketed batches; a
    held-out check every ``eval_every`` steps that keeps the best weights and stops after ``patience``
    checks without a gain; a checkpoint every ``checkpoint_every`` steps that a restart resumes from."""

    def __init__(
        self,
        student: SentenceTransformer,
        loss_fn: nn.Module,
        texts: list[str],
        labels: np.ndarray,
        prompt: str,
        config: DistillConfig,
        device: str,
        report: Callable[..., None],
        score: Callable[[], dict[int, float]],
    ) -> None:
        self.student, self.loss_fn, self.texts, self.prompt = student, loss_fn, texts, prompt
        self.config, self.device, self.report, self.score = config, device, report, score
        self.labels = torch.from_numpy(labels)
        self.params = [p for p in loss_fn.parameters() if p.requires_grad]  # the student's, plus any on the loss
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in self.params if p.ndim >= 2], "weight_decay": config.weight_decay},
                {"params": [p for p in self.params if p.ndim < 2], "weight_decay": 0.0},
            ],
            lr=config.learning_rate,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._schedule)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.state = _TrainState()
        self.resumed_from = 0
        self.groups = (
            _neighbour_groups(labels, 2 * config.batch_size, config.seed)
            if (config.batching == Batching.NEIGHBOURS)
            else None
        )

    def _schedule(self, step: int) -> float:
        warmup = int(self.config.warmup_fraction * self.config.steps)
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (self.config.steps - step) / max(1, self.config.steps - warmup))

    def run(self, checkpoint_dir: Path | None, run_id: str) -> None:
        self._resume(load_checkpoint(checkpoint_dir, run_id))
        config, state = self.config, self.state
        batch_size = min(config.batch_size, len(self.texts))
        lengths = [len(t) for t in self.texts]
        self.student.train()
        while state.step < config.steps:
            if not state.batches:
                state.batches = _length_bucketed_batches(lengths, batch_size, self.generator, self.groups)
            loss, lr = self._step(state.batches.pop())
            state.step += 1
            state.losses.append(loss)
            self.report(DistillPhase.TRAIN, state.step, loss, lr)
            check = config.eval_every and state.step % config.eval_every == 0
            if (check or state.step == config.steps) and self._check() >= config.patience:
                break
            if checkpoint_dir is not None and state.step % config.checkpoint_every == 0 and state.step < config.steps:
                save_checkpoint(checkpoint_dir, self._checkpoint(run_id))
        if state.best_weights is not None and state.best_step != state.step:
            self.student.load_state_dict(state.best_weights)
        self.student.eval()

    def _step(self, batch: list[int]) -> tuple[float, float]:
        features = self.student.preprocess([self.texts[i] for i in batch], prompt=self.prompt or None)
        features = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        targets = self.labels[batch].to(self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.config.bf16):
            loss = self.loss_fn([features], targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        self.optimizer.step()
        lr = float(self.scheduler.get_last_lr()[0])
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FailedPrecondition(f"distillation diverged at step {self.state.step + 1}: loss {value}")
        return value, lr

    def _check(self) -> int:
        """Score the held-out texts; keep the weights if best. Returns the checks since the last gain."""
        state = self.state
        found = self.score()
        value = float(np.mean(list(found.values())))
        self.student.train()
        self.report(DistillPhase.EVALUATE, state.step, agreement=value)
        if value > state.best_score + 1e-4:
            state.best_score, state.best_agreement, state.best_step, state.stale_checks = value, found, state.step, 0
            state.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in self.student.state_dict().items()}
        else:
            state.stale_checks += 1
        return state.stale_checks

    def _checkpoint(self, run_id: str) -> dict[str, Any]:
        return {
            "fingerprint": run_id,
            "student": self.student.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "state": dict(vars(self.state)),
        }

    def _resume(self, checkpoint: dict[str, Any] | None) -> None:
        if checkpoint is None:
            return
        self.student.load_state_dict(checkpoint["student"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.generator.set_state(checkpoint["generator"])
        torch.set_rng_state(checkpoint["torch_rng"])
        random.setstate(checkpoint["python_rng"])
        self.state = _TrainState(**checkpoint["state"])
        self.resumed_from = self.state.step
        log.info("distillation resumes from its checkpoint at step %d", self.state.step)


def _length_bucketed_batches(
    lengths: list[int], batch_size: int, generator: torch.Generator, groups: list[list[int]] | None = None
) -> list[list[int]]:
    """One shuffled epoch of batches whose texts have similar lengths, drawn from ``groups`` if given.

    A batch is padded to its longest text, so random batches of a mixed corpus (one 256-token
    paragraph among 31 short definitions) cost several times the real tokens. Sorting within windows
    (16 batches of random texts, or one group) and then shuffling the batch order keeps batches random
    across the corpus while cutting the padding. What is left of each window after its last full batch
    is pooled and batched the same way; the epoch's last partial batch is dropped.
    """
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if groups is None:
        window = batch_size * 16
        windows = [order[start : start + window] for start in range(0, len(order), window)]
    else:
        rank = {text: position for position, text in enumerate(order)}
        windows = [sorted(group, key=rank.__getitem__) for group in groups]
    batches: list[list[int]] = []
    left: list[int] = []
    for members in windows:
        chunk = sorted(members, key=lambda i: lengths[i])
        full = len(chunk) - len(chunk) % batch_size
        batches.extend(chunk[i : i + batch_size] for i in range(0, full, batch_size))
        left.extend(chunk[full:])
    left.sort(key=lambda i: lengths[i])
    batches.extend(left[i : i + batch_size] for i in range(0, len(left) - batch_size + 1, batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffled]


_MAX_GROUPS = 1024


def _neighbour_groups(labels: np.ndarray, size: int, seed: int) -> list[list[int]]:
    """The texts split into groups of about ``size`` that the teacher embeds close together.

    Spherical k-means (faiss) on the teacher's labels, fitted once per run: a batch drawn from one
    group holds texts on one topic, so each step works on the fine distinctions between near neighbours
    that recall@10 depends on, not on the gross ones a random batch offers (measured: +1 to +3 points of
    recall@10 kept, ``bench/RESULTS.md``). At most ``_MAX_GROUPS`` groups: k-means costs
    texts x groups, and on a large corpus coarser cells, still one topic each, serve as well.
    """
    vectors = np.ascontiguousarray(_l2(labels))
    k = min(_MAX_GROUPS, max(1, len(vectors) // size))
    if k == 1:
        return [list(range(len(vectors)))]
    kmeans = faiss.Kmeans(vectors.shape[1], k, niter=20, seed=seed, spherical=True, verbose=False)
    kmeans.train(vectors)
    _, assignment = kmeans.index.search(vectors, 1)
    groups: dict[int, list[int]] = {}
    for text, group in enumerate(assignment[:, 0].tolist()):
        groups.setdefault(group, []).append(text)
    return [groups[g] for g in sorted(groups)]


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


def _split(n: int, fraction: float, max_holdout: int, seed: int) -> tuple[list[int], list[int]]:
    """Train and held-out positions: ``fraction`` of the texts held out, at most ``max_holdout``."""
    order = np.random.default_rng(seed).permutation(n)
    n_holdout = min(n - 2, max_holdout, max(2, round(fraction * n)))
    return sorted(order[n_holdout:].tolist()), sorted(order[:n_holdout].tolist())


def _l2(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _seed_everything(seed: int) -> None:
    random.seed(seed)  # MatryoshkaLoss's n_dims_per_step sampling uses `random`
    np.random.seed(seed)
    torch.manual_seed(seed)
