"""The ONNX Runtime backends: ``onnx`` (fp32) and ``onnx-int8`` (dynamically quantized).

sentence-transformers 6's own ONNX export needs optimum-onnx, which cannot be installed beside it
(see shared/README), so the model's transformer is exported here with ``torch.onnx`` (opset 17, the
TorchScript exporter) with mean pooling folded into the graph, and run with onnxruntime directly. The
transformer is exported with its eager attention, not transformers' default SDPA: SDPA exports as a graph
onnxruntime cannot fuse and runs slowly (measured on the packaged model, 600 mixed texts on 2 cores:
fp32 60 -> 77 texts/s, int8 90 -> 147, against torch's 74), while the eager one is the standard BERT
pattern; both compute the same vectors. The
int8 variant quantizes only the MatMul weights, per channel: quantizing every op loses too much
agreement with torch (mean cosine ~0.95) to pass the gate.

The exported files are cached by weights checksum (and variant) under ``cache_dir``, so a worker
exports once per model version. A backend serves only if its vectors agree with torch's on the fixed
calibration texts (mean cosine >= ``MIN_MEAN_COSINE``, min >= ``MIN_COSINE``): checked once when the
model is exported, recorded beside it, and refused (FAILED_PRECONDITION) otherwise (``agreement.py``).
Tokenization and token-budget batching are the engine's (``engine.py``), as for torch; the intra-op
thread count follows the cores this process may use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.registry import ModelSpec
from embedfleet.worker.models import agreement
from embedfleet.worker.models.base import calibration_texts, cores, verified_weights
from embedfleet.worker.models.batching import batch_policy
from embedfleet.worker.models.engine import TokenBatchedEncoder

OPSET = 17
# Names the way graphs are exported, in their cache directory: a change to ``_export`` gets new files
# instead of reusing what an older export left there.
EXPORT_REVISION = "eager-attention"


def _export(path: Path, spec: ModelSpec, target: Path) -> None:
    """The transformer plus mean pooling as one ONNX graph (dynamic batch and sequence axes)."""
    import torch
    from transformers import AutoModel

    pooling = json.loads((path / "1_Pooling" / "config.json").read_text()) if (path / "1_Pooling").is_dir() else {}
    if pooling and not pooling.get("pooling_mode_mean_tokens"):
        raise FailedPrecondition(f"model {spec.name!r}: the ONNX backends support mean pooling only")
    model = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = model  # a submodule, so its weights are exported as initializers

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    dummy = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            MeanPooled(),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source), str(target), per_channel=True, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8
    )


class OnnxEncoder(TokenBatchedEncoder):
    """An ``Encoder`` on onnxruntime; ``quantized`` selects the int8 variant."""

    quantized = False

    def __init__(
        self, spec: ModelSpec, device: str, batch_size: int, cache_dir: Path, *, budget: int = 0, cuda_dtype: str = ""
    ) -> None:
        """``cuda_dtype`` is torch's: the ONNX graphs keep their own precision (fp32, int8) on every device."""
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from embedfleet.worker.models.torch import token_budget

        super().__init__()
        path = spec.local_path()
        if path is None:
            raise FailedPrecondition(f"model {spec.name!r}: the ONNX backends need local weights, not a hub id")
        self.spec = spec
        self.policy = batch_policy(device, token_budget(spec, device, budget), batch_size)
        weights = verified_weights(spec, path)
        variant = "int8" if self.quantized else "fp32"
        # The version says what produced the vectors: the weights and the runtime variant.
        self.version = f"{weights}+onnx-{variant}"
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        modules = json.loads((path / "modules.json").read_text()) if (path / "modules.json").is_file() else []
        # Match torch's output: sentence-transformers applies the model's Normalize module itself.
        self._normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        model_file, report_file = self._build(
            path, cache_dir / f"{weights.replace(':', '-')}-{EXPORT_REVISION}", variant
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = cores()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
        self._session = ort.InferenceSession(str(model_file), options, providers=providers or ["CPUExecutionProvider"])
        self.agreement: dict[str, float] = json.loads(report_file.read_text())
        agreement.check(spec.name, f"onnx-{variant}", self.agreement)

    def _build(self, path: Path, directory: Path, variant: str) -> tuple[Path, Path]:
        """Export (and quantize) once per weights version, then measure agreement with torch once."""
        directory.mkdir(parents=True, exist_ok=True)
        fp32 = directory / "model.onnx"
        model_file = directory / f"model-{variant}.onnx" if variant != "fp32" else fp32
        report = directory / f"agreement-{variant}.json"
        if not fp32.exists():
            partial = directory / f".model.onnx.{os.getpid()}.tmp"
            _export(path, self.spec, partial)
            os.replace(partial, fp32)
        if not model_file.exists():
            partial = directory / f".{model_file.name}.{os.getpid()}.tmp"
            _quantize(fp32, partial)
            os.replace(partial, model_file)
        if not report.exists():
            from embedfleet.worker.models.torch import SentenceTransformerEncoder

            texts = calibration_texts()[: agreement.AGREEMENT_TEXTS]
            reference = SentenceTransformerEncoder(self.spec, "cpu").encode(texts, InputType.DOCUMENT)
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
            measured = agreement.measure(self.encode(texts, InputType.DOCUMENT).vectors, reference.vectors)
            partial = directory / f".{report.name}.{os.getpid()}.tmp"
            partial.write_text(json.dumps(measured))
            os.replace(partial, report)
        return model_file, report

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray, input_type: InputType) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        out = np.asarray(self._session.run(["embedding"], feeds)[0], dtype=np.float32)
        if self._normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


class OnnxInt8Encoder(OnnxEncoder):
    quantized = True
