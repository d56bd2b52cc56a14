"""Fixtures for the model-quality tests: the real packaged MiniLM, one small distilled MRL student,
and one teacher evaluation, each built once per session because they are the expensive part; and a
Milvus Lite server of a test's own, for the tests that kill it.

Sizes are chosen for a 2-core CPU: a few hundred short texts and a few dozen steps are enough for
the student's agreement with the teacher to rise clearly; the evaluation subsample keeps every
relevant document of its queries.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from embedfleet.local import LocalCluster
from embedfleet.registry import DEFAULT_MODELS, ModelSpec
from embedfleet.worker.distill import DistillConfig, DistillProgress, DistillResult, distill
from embedfleet.worker.evaluate import (
    EncodeFn,
    EvalLimits,
    EvalReport,
    default_data_dir,
    encode_fn_for,
    evaluate,
    load_training_texts,
    memoized,
)
from embedfleet.worker.models.torch import SentenceTransformerEncoder

EVAL_LIMITS = EvalLimits(max_queries=100, max_corpus=500, max_agreement_texts=300)
MRL_DIMS = (128, 64)


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[LocalCluster]:
    """A Milvus Lite server of the test's own (a test may kill it, and start it again on the same port and data)."""
    server = LocalCluster(data_dir=tmp_path, milvus_port=0, log_dir=tmp_path / "logs")
    server.start_milvus()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = default_data_dir()
    if not (path / "gensim-testdata" / "lee_pairs.tsv").is_file():
        pytest.fail(f"the shared evaluation data is missing at {path} (set EMBEDFLEET_EVAL_DATA)")
    return path


@pytest.fixture(scope="session")
def eval_limits() -> EvalLimits:
    return EVAL_LIMITS


@pytest.fixture(scope="session")
def teacher_spec() -> ModelSpec:
    return DEFAULT_MODELS[0]


@pytest.fixture(scope="session")
def teacher_encode(teacher_spec: ModelSpec) -> EncodeFn:
    return memoized(encode_fn_for(SentenceTransformerEncoder(teacher_spec, "cpu", 32)))


@pytest.fixture(scope="session")
def teacher_report(teacher_encode: EncodeFn, data_dir: Path) -> EvalReport:
    return evaluate(
        teacher_encode, dims=[256, 128, 64], data_dir=data_dir, teacher_encode=teacher_encode, limits=EVAL_LIMITS
    )


@pytest.fixture(scope="session")
def training_texts(data_dir: Path) -> list[str]:
    # Short texts only (no long news articles): the distillation tests must be quick on 2 cores.
    texts = load_training_texts(1200, data_dir=data_dir, seed=1)
    return [t for t in texts if len(t) < 300][:300]


@pytest.fixture(scope="session")
def mrl_student(
    tmp_path_factory: pytest.TempPathFactory, teacher_spec: ModelSpec, training_texts: list[str]
) -> tuple[DistillResult, list[DistillProgress]]:
    """MiniLM-L6 cut to 2 layers, 40 steps of MSE + MatryoshkaLoss over 128 and 64 dims."""
    events: list[DistillProgress] = []
    config = DistillConfig(keep_layers=2, matryoshka_dims=MRL_DIMS, steps=40, batch_size=16, learning_rate=5e-4)
    out = tmp_path_factory.mktemp("students") / "minilm-l2-mrl"
    result = distill(config, teacher_spec, training_texts, out, events.append)
    return result, events


@pytest.fixture(scope="session")
def load_student() -> Callable[[Path], EncodeFn]:
    """Encode with a saved student directory, loaded the way any user would load it."""

    def load(path: Path) -> EncodeFn:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)

        def encode(texts: list[str], input_type: str) -> np.ndarray:
            return model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)

        return memoized(encode)

    return load


def rotated(encode: EncodeFn, rotation: np.ndarray) -> EncodeFn:
    """The teacher mapped into a rotated student's space (full-width cosines unchanged)."""

    def wrapper(texts: list[str], input_type: str) -> np.ndarray:
        vectors = encode(texts, input_type)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ rotation

    return wrapper


@pytest.fixture(scope="session")
def teacher_in_student_space(teacher_encode: EncodeFn) -> Callable[[Path], EncodeFn]:
    """``teacher_encode`` rotated into a student's label space when it was trained in one."""
    from embedfleet.worker.distill import load_label_rotation

    def make(path: Path) -> EncodeFn:
        rotation = load_label_rotation(path)
        return teacher_encode if rotation is None else rotated(teacher_encode, rotation)

    return make
