"""Golden vectors: every shipped model must still produce the committed reference embeddings.

A dependency upgrade that moves vectors (tokenizer, attention kernel, pooling defaults) fails here
instead of silently splitting a collection into vectors from two different models. If the change is
intended, regenerate with ``python scripts/make_golden.py`` and re-index the affected collections.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedfleet.domain import InputType
from embedfleet.registry import DEFAULT_MODELS, ModelSpec
from embedfleet.worker.embedding import embed_texts
from embedfleet.worker.models.torch import SentenceTransformerEncoder

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda spec: spec.name)
def test_shipped_model_reproduces_its_golden_vectors(spec: ModelSpec) -> None:
    path = GOLDEN_DIR / f"{spec.name}.npz"
    assert path.is_file(), f"no golden vectors for shipped model {spec.name!r}: run scripts/make_golden.py"
    golden = np.load(path, allow_pickle=False)
    texts = [str(t) for t in golden["sentences"]]
    assert 10 <= len(texts) <= 20
    encoder = SentenceTransformerEncoder(spec, "cpu", 32)
    assert encoder.version == str(golden["model_version"]), (
        f"the weights of {spec.name!r} changed ({encoder.version} != {golden['model_version']})"
    )
    for input_type in InputType:
        expected = golden[input_type.value]
        got = embed_texts(encoder, texts, input_type=input_type).vectors
        assert got.dtype == np.float32 and got.shape == expected.shape
        diff = float(np.abs(got - expected).max())
        cosine = float(np.min(np.sum(got * expected, axis=1)))
        assert diff < 1e-4 and cosine >= 0.9999, (
            f"{spec.name} {input_type.value} vectors moved (made with {golden['made_with']}): "
            f"max abs diff {diff:.2e}, min cosine {cosine:.6f}"
        )
