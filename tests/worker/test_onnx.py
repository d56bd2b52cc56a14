"""The ONNX Runtime backends with the real packaged model: exported once per weights version, as the
attention graph onnxruntime recognizes, agreeing with torch within the gate (reported), every text its own
vector in input order whatever the batching, golden vectors within the backend's tolerance, and a
backend that disagrees refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.registry import DEFAULT_MODELS
from embedfleet.worker.models import agreement
from embedfleet.worker.models import onnx as onnx_backend
from embedfleet.worker.models.host import ModelHost

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "all-MiniLM-L6-v2.npz"
SPEC = DEFAULT_MODELS[0]
# Golden vectors (torch) hold per backend within (mean, min) cosine: fp32 is the same computation; int8's
# 15 golden sentences include a short one at 0.959-0.967 depending on which texts share its batch (dynamic
# quantization scales activations per batch); its 256-text serving gate is 0.99 / 0.97, passed.
GOLDEN_TOLERANCE = {"onnx": (0.9999, 0.999), "onnx-int8": (0.99, 0.95)}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_backend_agrees_with_torch_and_keeps_order(backend: str, cache_dir: Path) -> None:
    host = ModelHost(device="cpu", batch_size=8, cache_dir=cache_dir)
    encoder = host.get(SPEC.model_copy(update={"backend": backend}))
    assert isinstance(encoder, onnx_backend.OnnxEncoder)
    report = encoder.agreement
    assert report["mean_cosine"] >= agreement.MIN_MEAN_COSINE and report["min_cosine"] >= agreement.MIN_COSINE
    assert encoder.version.endswith("+onnx-int8" if backend == "onnx-int8" else "+onnx-fp32")

    golden = np.load(GOLDEN)
    texts = [str(t) for t in golden["sentences"]]
    got = encoder.encode(texts, InputType.DOCUMENT).vectors
    cosines = np.sum(got * golden["document"], axis=1)
    mean_floor, min_floor = GOLDEN_TOLERANCE[backend]
    assert cosines.mean() >= mean_floor and cosines.min() >= min_floor, (cosines.mean(), cosines.min())

    mixed = ["tiny", "a somewhat longer sentence about many different things " * 3, "mid length text here", "x " * 300]
    one_by_one = np.stack([encoder.encode([t], InputType.DOCUMENT).vectors[0] for t in mixed])
    batched = encoder.encode(mixed, InputType.DOCUMENT)
    # Sorting and padding never mix rows up. int8's activation scales are computed per batch (dynamic
    # quantization), so its vectors move slightly with the batch: each stays nearest its own text's.
    cosines = batched.vectors @ one_by_one.T
    assert list(np.argmax(cosines, axis=1)) == list(range(len(mixed)))
    assert np.diag(cosines).min() >= (0.9999 if backend == "onnx" else agreement.MIN_COSINE)
    assert batched.truncated == 1


def test_export_is_cached_and_a_disagreeing_backend_is_refused(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported = sorted(p.name for p in next(cache_dir.iterdir()).iterdir())
    assert {"model.onnx", "model-int8.onnx", "agreement-fp32.json", "agreement-int8.json"} <= set(exported)
    monkeypatch.setattr(agreement, "MIN_MEAN_COSINE", 0.999999)  # a gate this build cannot pass
    with pytest.raises(FailedPrecondition, match="disagrees with torch"):
        onnx_backend.OnnxInt8Encoder(SPEC, "cpu", 8, cache_dir)


def test_the_exported_attention_is_the_pattern_onnxruntime_fuses(cache_dir: Path) -> None:
    """The transformer is exported with eager attention: onnxruntime's BERT optimizer finds one attention
    per layer in it. transformers' default SDPA exports as a graph it finds none in, which ran at 0.6-0.8x
    the speed (figures in worker/models/onnx.py)."""
    from onnxruntime.transformers.optimizer import optimize_model

    onnx_backend.OnnxEncoder(SPEC, "cpu", 8, cache_dir)  # exported, or already there
    [exported] = [d for d in cache_dir.iterdir() if d.name.endswith(onnx_backend.EXPORT_REVISION)]
    fused = optimize_model(str(exported / "model.onnx"), model_type="bert", num_heads=12, hidden_size=384)
    assert fused.get_fused_operator_statistics()["Attention"] == 6  # all-MiniLM-L6-v2 has six layers
