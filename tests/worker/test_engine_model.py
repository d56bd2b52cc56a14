"""The engine with the real packaged model: the torch backend's own batching gives each text the vector
``SentenceTransformer.encode`` gives it, whatever the budget, and a half type is served only past the
agreement gate (run here in bfloat16 on the CPU, the code path CUDA takes with fp16/bf16)."""

from __future__ import annotations

import numpy as np
import pytest

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.registry import DEFAULT_MODELS
from embedfleet.worker.models import agreement
from embedfleet.worker.models.torch import SentenceTransformerEncoder

SPEC = DEFAULT_MODELS[0]
MIXED = [
    "tiny",
    "a somewhat longer sentence about many different things " * 3,
    "mid length text here",
    "word " * 300,  # over the window: truncated
    "",
    "the quick brown fox jumps over the lazy dog",
]


@pytest.fixture(scope="module")
def encoder() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(SPEC, "cpu")


@pytest.mark.parametrize("budget", [1, 64, 100_000])
def test_each_text_gets_the_vector_plain_encode_gives_it(encoder: SentenceTransformerEncoder, budget: int) -> None:
    tight = SentenceTransformerEncoder(SPEC, "cpu", budget=budget)
    got = tight.encode(MIXED, InputType.DOCUMENT)
    expected = encoder.model.encode(MIXED, batch_size=1, convert_to_numpy=True)
    np.testing.assert_allclose(got.vectors, expected, atol=2e-5)
    assert got.truncated == 1
    assert got.tokens == sum(min(len(ids), SPEC.max_seq_length) for ids in encoder.model.tokenizer(MIXED)["input_ids"])


def test_a_half_type_serves_only_past_the_gate(
    encoder: SentenceTransformerEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agreement, "AGREEMENT_TEXTS", 48)  # bfloat16 on a CPU is slow; CUDA checks all 256
    half = SentenceTransformerEncoder(SPEC, "cpu")
    half._to_half("bfloat16")  # what __init__ does on CUDA for cuda_dtype="bfloat16"
    assert half.version == f"{encoder.version}+torch-bfloat16"  # a collection knows what made its vectors
    assert half.agreement["mean_cosine"] >= agreement.MIN_MEAN_COSINE
    vectors = half.encode(MIXED, InputType.DOCUMENT).vectors
    assert vectors.dtype == np.float32
    assert agreement.cosines(vectors, encoder.encode(MIXED, InputType.DOCUMENT).vectors).min() >= 0.97

    monkeypatch.setattr(agreement, "MIN_MEAN_COSINE", 0.999999)  # a gate bfloat16 cannot pass
    with pytest.raises(FailedPrecondition, match="disagrees with torch"):
        SentenceTransformerEncoder(SPEC, "cpu")._to_half("bfloat16")
