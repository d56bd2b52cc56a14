"""Distillation against the real packaged MiniLM: the student must come to agree with its teacher."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer
from torch import nn

from embedfleet.errors import FailedPrecondition, InvalidArgument
from embedfleet.registry import ModelRole, ModelSpec
from embedfleet.worker.distill import (
    _MAX_GROUPS,
    INFO_FILE,
    DistillConfig,
    DistillPhase,
    DistillProgress,
    DistillResult,
    _length_bucketed_batches,
    _neighbour_groups,
    choose_layers,
    distill,
    load_label_rotation,
    principal_rotation,
    set_dropout,
)
from embedfleet.worker.distill_loss import CosineDistillLoss
from embedfleet.worker.distill_state import LabelCache
from embedfleet.worker.evaluate import EncodeFn


def test_evenly_spaced_layers_keep_first_and_last() -> None:
    assert choose_layers(2, 6) == (0, 5)
    assert choose_layers(3, 6) == (0, 3, 5)
    assert choose_layers(4, 12) == (0, 4, 7, 11)
    assert choose_layers(6, 6) == tuple(range(6))
    assert choose_layers(9, 6) == tuple(range(6))


def test_principal_rotation_is_orthogonal_and_orders_variance() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 16)) * np.linspace(0.1, 3.0, 16)  # variance grows with the index
    rotation = principal_rotation(x.astype(np.float32))
    assert np.allclose(rotation.T @ rotation, np.eye(16), atol=1e-5)
    variances = (x @ rotation).var(axis=0)
    assert np.all(np.diff(variances) <= 1e-6)  # largest first


def test_mrl_distillation_raises_agreement(mrl_student: tuple[DistillResult, list[DistillProgress]]) -> None:
    result, events = mrl_student
    assert result.kept_layers == (0, 5) and result.teacher_layers == 6
    assert result.label_rotation and result.dimensions == 384 and result.matryoshka_dims == (128, 64)
    # Agreement with the teacher on held-out texts rises clearly, at full width and at every prefix.
    assert result.agreement_after > result.agreement_before + 0.1, result
    for dim in result.matryoshka_dims:
        assert result.agreement_by_dim_after[dim] > result.agreement_by_dim_before[dim] + 0.05, result
    # One progress event per step, each with a finite loss; the loss falls.
    train = [e for e in events if e.phase == DistillPhase.TRAIN]
    assert [e.step for e in train] == list(range(1, 41))
    assert all(e.loss is not None and np.isfinite(e.loss) for e in train)
    assert np.mean(result.losses[-5:]) < 0.7 * np.mean(result.losses[:5])
    assert {e.phase for e in events} == set(DistillPhase)


def test_student_directory_is_self_contained(
    mrl_student: tuple[DistillResult, list[DistillProgress]],
    teacher_encode: EncodeFn,
    training_texts: list[str],
) -> None:
    result, _ = mrl_student
    model = SentenceTransformer(str(result.output_dir), device="cpu", local_files_only=True)
    assert model.get_embedding_dimension() == 384
    assert model[0].auto_model.config.num_hidden_layers == 2
    assert model.max_seq_length == result.max_seq_length
    info = json.loads((result.output_dir / INFO_FILE).read_text())
    assert info["kept_layers"] == [0, 5] and info["config"]["matryoshka_dims"] == [128, 64]
    # Reloaded, it reproduces the agreement it reported (same held-out definition: mean cosine with
    # the rotated teacher); checked on fresh texts, so roughly.
    rotation = load_label_rotation(result.output_dir)
    assert rotation is not None and rotation.shape == (384, 384)
    texts = ["A dog runs across the park.", "The central bank raised interest rates.", "a type of small boat"]
    student = model.encode(texts, convert_to_numpy=True)
    teacher = teacher_encode(texts, "document")
    teacher = teacher / np.linalg.norm(teacher, axis=1, keepdims=True) @ rotation
    cosines = np.sum(student * teacher, axis=1)
    assert cosines.mean() > result.agreement_before


def test_same_seed_same_student(tmp_path: Path, teacher_spec: ModelSpec, training_texts: list[str]) -> None:
    config = DistillConfig(keep_layers=(0, 5), steps=4, batch_size=8, learning_rate=5e-4, seed=7)
    texts = training_texts[:48]
    first = distill(config, teacher_spec, texts, tmp_path / "a", None)
    second = distill(config, teacher_spec, texts, tmp_path / "b", None)
    assert first.losses == second.losses
    assert first.agreement_after == second.agreement_after
    assert not first.label_rotation  # no MRL dims: the student stays in the teacher's own space
    assert not (tmp_path / "a" / "label_rotation.npy").exists()


def test_projection_when_widths_differ(
    tmp_path: Path,
    teacher_spec: ModelSpec,
    training_texts: list[str],
    load_student: Callable[[Path], EncodeFn],
) -> None:
    """A 256-d teacher (MiniLM + a fixed Dense head) and a 384-d layer-cut student: a learned projection."""
    teacher_dir = tmp_path / "teacher-256"
    source = teacher_spec.local_path()
    assert source is not None
    rng = np.random.default_rng(3)
    head = Dense(384, 256, bias=False, activation_function=nn.Identity())
    head.linear.weight.data = head.linear.weight.data.new_tensor(rng.standard_normal((256, 384)) / np.sqrt(384))
    transformer = Transformer(str(source), max_seq_length=128)
    teacher_model = SentenceTransformer(modules=[transformer, Pooling(384), head, Normalize()], device="cpu")
    teacher_model.save(str(teacher_dir), create_model_card=False)
    wide_teacher = ModelSpec(
        name="minilm-256", role=ModelRole.TEACHER, source=str(teacher_dir), dimensions=256, max_seq_length=128
    )
    # 300 texts, 40 steps: with fewer texts than dimensions the projection has little to learn from.
    config = DistillConfig(keep_layers=2, init_model=teacher_spec, steps=40, batch_size=16, learning_rate=5e-4, seed=1)
    result = distill(config, wide_teacher, training_texts, tmp_path / "student", None)
    assert result.dimensions == 256 and not result.label_rotation
    # A ridge-initialised projection agrees from the start (a random one would start near 0); training
    # then improves it.
    assert result.agreement_before > 0.5
    assert result.agreement_after > result.agreement_before
    vectors = load_student(tmp_path / "student")(["a short text"], "document")
    assert vectors.shape == (1, 256)


def test_refuses_bad_requests(tmp_path: Path, teacher_spec: ModelSpec) -> None:
    texts = ["one text", "another text", "a third", "and a fourth", "fifth"]
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "file").write_text("x")
    with pytest.raises(FailedPrecondition, match="not empty"):
        distill(DistillConfig(steps=1), teacher_spec, texts, occupied, None)
    with pytest.raises(InvalidArgument, match="out of range"):
        distill(DistillConfig(keep_layers=(0, 9), steps=1), teacher_spec, texts, tmp_path / "a", None)
    with pytest.raises(InvalidArgument, match="exceed"):
        distill(DistillConfig(matryoshka_dims=(512,), steps=1), teacher_spec, texts, tmp_path / "b", None)
    with pytest.raises(InvalidArgument, match="at least 4"):
        distill(DistillConfig(steps=1), teacher_spec, ["one", " "], tmp_path / "c", None)
    for needs_tokens in ({"init_model": teacher_spec}, {"loss": "mse"}):
        with pytest.raises(InvalidArgument, match="cut from the teacher"):
            distill(DistillConfig(steps=1, hidden_weight=1, **needs_tokens), teacher_spec, texts, tmp_path / "d")
    # By default the token term is on exactly where it applies.
    assert DistillConfig().token_weight() == 1.0
    assert DistillConfig(init_model=teacher_spec).token_weight() == DistillConfig(loss="mse").token_weight() == 0.0
    with pytest.raises(ValueError, match="distinct"):
        DistillConfig(keep_layers=(1, 1))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_progress_callback_can_cancel(tmp_path: Path, teacher_spec: ModelSpec, training_texts: list[str]) -> None:
    class Cancelled(Exception):
        pass

    def progress(event: DistillProgress) -> None:
        if event.phase == DistillPhase.TRAIN and event.step == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        distill(
            DistillConfig(keep_layers=1, steps=10, batch_size=4),
            teacher_spec,
            training_texts[:24],
            tmp_path / "x",
            progress,
        )
    # Nothing that looks like a model is left behind.
    assert list(tmp_path.iterdir()) == []


def test_killed_run_resumes_from_its_checkpoint(
    tmp_path: Path, teacher_spec: ModelSpec, training_texts: list[str]
) -> None:
    """A run that dies at step 6 (checkpoints every 4) and is started again resumes at step 5 and ends
    with the student an uninterrupted run trains (same losses: the RNG states travel in the checkpoint)."""
    config = DistillConfig(keep_layers=(0, 5), steps=10, batch_size=8, eval_every=0, checkpoint_every=4, seed=3)
    texts = training_texts[:64]
    whole = distill(config, teacher_spec, texts, tmp_path / "whole", None, checkpoint_dir=tmp_path / "ck-whole")

    class Killed(Exception):
        pass

    def die_at_6(event: DistillProgress) -> None:
        if event.phase == DistillPhase.TRAIN and event.step == 6:
            raise Killed

    with pytest.raises(Killed):
        distill(config, teacher_spec, texts, tmp_path / "a1", die_at_6, checkpoint_dir=tmp_path / "ck")
    events: list[DistillProgress] = []
    resumed = distill(config, teacher_spec, texts, tmp_path / "a2", events.append, checkpoint_dir=tmp_path / "ck")
    assert resumed.resumed_from == 4 and whole.resumed_from == 0
    assert [e.step for e in events if e.phase == DistillPhase.TRAIN] == list(range(5, 11))
    assert resumed.losses == pytest.approx(whole.losses, rel=1e-4)
    assert resumed.agreement_after == pytest.approx(whole.agreement_after, abs=1e-4)

    # Another config (or other texts) never picks up that checkpoint.
    other = config.model_copy(update={"learning_rate": 2e-4})
    fresh = distill(other, teacher_spec, texts, tmp_path / "b", None, checkpoint_dir=tmp_path / "ck")
    assert fresh.resumed_from == 0


def test_stops_early_and_keeps_the_best_weights(
    tmp_path: Path, teacher_spec: ModelSpec, training_texts: list[str]
) -> None:
    """With a learning rate too small to move agreement, the first check is the best and every later one
    is stale: training stops after ``patience`` stale checks, not at ``steps``."""
    config = DistillConfig(keep_layers=(0, 5), steps=40, batch_size=8, learning_rate=1e-12, eval_every=2, patience=2)
    events: list[DistillProgress] = []
    result = distill(config, teacher_spec, training_texts[:64], tmp_path / "s", events.append)
    assert result.stopped_early and result.steps == 6 and result.best_step == 2
    checks = [e for e in events if e.phase == DistillPhase.EVALUATE and e.agreement is not None]
    assert [e.step for e in checks] == [2, 4, 6] and all(0 < e.agreement < 1 for e in checks)  # type: ignore[operator]
    assert len(result.losses) == 6


def test_teacher_labels_are_computed_once_per_corpus(
    tmp_path: Path, teacher_spec: ModelSpec, training_texts: list[str]
) -> None:
    cache = LabelCache(tmp_path / "labels", keep=2)
    calls: list[int] = []
    real = cache.get_or_compute

    def counting(key: str, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
        labels, hit = real(key, compute)
        calls.append(int(hit))
        return labels, hit

    cache.get_or_compute = counting  # type: ignore[method-assign]
    config = DistillConfig(keep_layers=1, steps=2, batch_size=8, eval_every=0)
    texts = training_texts[:32]
    first = distill(config, teacher_spec, texts, tmp_path / "a", None, label_cache=cache)
    second = distill(config, teacher_spec, texts, tmp_path / "b", None, label_cache=cache)
    distill(config, teacher_spec, texts[1:], tmp_path / "c", None, label_cache=cache)  # other texts: computed
    assert calls == [0, 1, 0]
    assert first.losses == second.losses
    # Only the ``keep`` newest label sets stay.
    distill(config, teacher_spec, texts[2:], tmp_path / "d", None, label_cache=cache)
    assert len(list((tmp_path / "labels").glob("*.npy"))) == 2


class Echo(nn.Module):
    """A "model" whose sentence embedding is its input: the losses tested on chosen vectors."""

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"sentence_embedding": features["x"]}


def test_cosine_loss_counts_direction_only() -> None:
    """1 - cos per row, and no relational penalty when the student reproduces the teacher's geometry; a
    label's scale (a Matryoshka prefix is cut, not re-normalised) changes nothing."""

    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    loss = CosineDistillLoss(Echo(), relational_weight=1.0)  # type: ignore[arg-type]
    assert float(loss([{"x": x}], 0.3 * x)) == pytest.approx(0.0, abs=1e-6)
    rotated = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert float(CosineDistillLoss(Echo())([{"x": x}], rotated)) == pytest.approx(1.0)
    # Same rows up to sign flips: cosine 1 - (-1) = 2 each, geometry identical (no relational term).
    assert float(loss([{"x": x}], -x)) == pytest.approx(2.0, abs=1e-6)


def test_relational_kl_is_zero_for_the_teachers_geometry_only() -> None:
    """With a temperature the relational term compares each text's softmax over its batch neighbours: zero
    when the student ranks neighbours as the teacher does (whatever the label's scale), positive when not."""

    x = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.3, 0.1], [0.0, 0.2, 1.0]]), dim=-1)
    relational = CosineDistillLoss(Echo(), relational_weight=1.0, temperature=0.05)  # type: ignore[arg-type]
    assert float(relational([{"x": x}], 0.5 * x)) == pytest.approx(0.0, abs=1e-6)
    swapped = x[[2, 1, 0]] @ torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # other neighbours
    plain = CosineDistillLoss(Echo())([{"x": x}], swapped)  # type: ignore[arg-type]
    assert float(relational([{"x": x}], swapped)) > float(plain) + 0.1


class TokenEcho(nn.Module):
    """Echo with token states: ``x`` is the sentence embedding, ``t`` the last hidden state."""

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"sentence_embedding": features["x"], "token_embeddings": features["t"]}

    def get_embedding_dimension(self) -> int:
        return 2


class TeacherTokens(nn.Module):
    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"token_embeddings": features["reference"]}


def test_token_term_compares_real_tokens_once_per_batch() -> None:
    """The token term is mean ``1 - cos`` over real tokens (padding ignored), and only on the full-width call
    (MatryoshkaLoss calls the loss again with the labels cut to each prefix; token states are not cut)."""
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    reference = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [5.0, 5.0]]])
    mask = torch.tensor([[1, 1], [1, 0]])
    same = reference.clone()
    same[1, 1] = torch.tensor([-3.0, 2.0])  # a padding token: no matter what it holds
    loss = CosineDistillLoss(TokenEcho(), teacher_tokens=TeacherTokens(), hidden_weight=2.0)  # type: ignore[arg-type]
    features = {"x": x, "t": same, "reference": reference, "attention_mask": mask}
    assert float(loss([dict(features)], x)) == pytest.approx(0.0, abs=1e-6)
    turned = same.clone()
    turned[0, 0] = torch.tensor([0.0, 1.0])  # one of the 3 real tokens at 90 degrees: 2.0 * 1 / 3
    assert float(loss([features | {"t": turned}], x)) == pytest.approx(2.0 / 3, abs=1e-6)
    prefix = {"t": turned, "x": x[:, :1]}  # a prefix call: MatryoshkaLoss cuts the vectors and the labels
    assert float(loss([features | prefix], x[:, :1])) == pytest.approx(0.0, abs=1e-6)


def test_neighbour_batches_hold_texts_the_teacher_puts_together() -> None:
    """Four well-separated topics of 64 texts: each group is one topic, every batch lies inside one group,
    and an epoch uses every text once."""
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:4] * 10
    labels = np.concatenate([centre + rng.standard_normal((64, 8)).astype(np.float32) for centre in centres])
    topic = np.repeat(np.arange(4), 64)
    groups = _neighbour_groups(labels, 64, seed=0)
    assert sorted(len(g) for g in groups) == [64] * 4
    assert all(len(set(topic[g])) == 1 for g in groups)
    lengths = rng.integers(5, 100, size=len(labels)).tolist()
    batches = _length_bucketed_batches(lengths, 16, torch.Generator().manual_seed(0), groups)
    assert all(len(set(topic[b])) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(labels)))
    # k-means costs texts x groups: a large corpus gets coarser cells, not one per 64 texts.
    many = rng.standard_normal((3 * _MAX_GROUPS, 8)).astype(np.float32)
    assert len(_neighbour_groups(many, 2, seed=0)) <= _MAX_GROUPS


def test_dropout_is_set_for_training_only(teacher_spec: ModelSpec) -> None:
    source = teacher_spec.local_path()
    assert source is not None
    model = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    set_dropout(model, 0.0)
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.0 for m in dropouts)
    assert model[0].auto_model.config.hidden_dropout_prob == 0.1  # what a saved student would load with


def test_token_term_leaves_the_teacher_out_of_the_student(
    tmp_path: Path, teacher_spec: ModelSpec, training_texts: list[str]
) -> None:
    """With the token term the frozen teacher runs beside the student: its weights must not be trained or
    saved with the student, which has exactly the parameters of a student trained without the term."""
    texts = training_texts[:48]
    common = {"keep_layers": (0, 5), "steps": 4, "batch_size": 8, "seed": 3}
    plain = distill(DistillConfig(**common, hidden_weight=0), teacher_spec, texts, tmp_path / "plain")
    tokens = distill(
        DistillConfig(**common, hidden_weight=1.0, student_dropout=0.0), teacher_spec, texts, tmp_path / "t"
    )
    assert plain.losses != tokens.losses
    load = functools.partial(SentenceTransformer, device="cpu", local_files_only=True)
    shapes = [{k: v.shape for k, v in load(str(r.output_dir)).state_dict().items()} for r in (plain, tokens)]
    assert shapes[0] == shapes[1]
