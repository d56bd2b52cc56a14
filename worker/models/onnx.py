"""The ONNX Runtime backends: ``onnx`` (fp32) and ``onnx-int8`` (dynamically quantized).

sentence-transformers 6's own ONNX export needs optimum-onnx, which cannot be installed beside it
(see shared/README), so the model's transformer is exported here with ``torch.onnx`` (opset 17, the
TorchScript exporter) with mean pooling folded into the graph, and run with onnxruntime directly. The
int8 variant quantizes only the MatMul weights, per channel: quantizing every op loses too much
agreement with torch (mean cosine ~0.95) to pass the gate.

The exported files are cached by weights checksum (and variant) under ``cache_dir``, so a worker
exports once per model version. A backend serves only if its vectors agree with torch's on the fixed
calibration texts (mean cosine >= ``MIN_MEAN_COSINE``, min >= ``MIN_COSINE``): checked once when the
model is exported, recorded beside it, and refused (FAILED_PRECONDITION) otherwise. Texts are sorted
by token length and batched, so padding is small; the intra-op thread count follows the cores this
process may use.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.registry import ModelSpec
from embedfleet.worker.models.base import Encoded, calibration_texts, prompt_for, verified_weights

MIN_MEAN_COSINE = 0.99
MIN_COSINE = 0.97
AGREEMENT_TEXTS = 256
OPSET = 17


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.asarray(np.sum(a * b, axis=1))


def _export(path: Path, spec: ModelSpec, target: Path) -> None:
    """The transformer plus mean pooling as one ONNX graph (dynamic batch and sequence axes)."""
    import torch
    from transformers import AutoModel

    pooling = json.loads((path / "1_Pooling" / "config.json").read_text()) if (path / "1_Pooling").is_dir() else {}
    if pooling and not pooling.get("pooling_mode_mean_tokens"):
        raise FailedPrecondition(f"model {spec.name!r}: the ONNX backends support mean pooling only")
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()

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


class OnnxEncoder:
    """An ``Encoder`` on onnxruntime; ``quantized`` selects the int8 variant."""

    quantized = False

    def __init__(self, spec: ModelSpec, device: str, batch_size: int, cache_dir: Path) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        path = spec.local_path()
        if path is None:
            raise FailedPrecondition(f"model {spec.name!r}: the ONNX backends need local weights, not a hub id")
        self.spec = spec
        self.batch_size = batch_size
        weights = verified_weights(spec, path)
        variant = "int8" if self.quantized else "fp32"
        # The version says what produced the vectors: the weights and the runtime variant.
        self.version = f"{weights}+onnx-{variant}"
        self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self._lock = threading.Lock()
        self._calibration: np.ndarray | None = None
        modules = json.loads((path / "modules.json").read_text()) if (path / "modules.json").is_file() else []
        # Match torch's output: sentence-transformers applies the model's Normalize module itself.
        self._normalize = any(m.get("type", "").endswith("Normalize") for m in modules)
        model_file, report_file = self._build(path, cache_dir / weights.replace(":", "-"), variant)
        options = ort.SessionOptions()
        options.intra_op_num_threads = _cores()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else None
        self._session = ort.InferenceSession(str(model_file), options, providers=providers or ["CPUExecutionProvider"])
        self.agreement: dict[str, float] = json.loads(report_file.read_text())
        if self.agreement["mean_cosine"] < MIN_MEAN_COSINE or self.agreement["min_cosine"] < MIN_COSINE:
            raise FailedPrecondition(
                f"model {spec.name!r} on onnx-{variant} disagrees with torch (mean cosine "
                f"{self.agreement['mean_cosine']:.4f}, min {self.agreement['min_cosine']:.4f}; the gate is "
                f"{MIN_MEAN_COSINE}/{MIN_COSINE}): serve it with the torch backend"
            )

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

            texts = calibration_texts()[:AGREEMENT_TEXTS]
            reference = SentenceTransformerEncoder(self.spec, "cpu", self.batch_size).encode(texts, InputType.DOCUMENT)
            import onnxruntime as ort

            self._session = ort.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
            cosines = _cosines(self.encode(texts, InputType.DOCUMENT).vectors, reference.vectors)
            partial = directory / f".{report.name}.{os.getpid()}.tmp"
            partial.write_text(json.dumps({"mean_cosine": float(cosines.mean()), "min_cosine": float(cosines.min())}))
            os.replace(partial, report)
        return model_file, report

    def encode(self, texts: list[str], input_type: InputType) -> Encoded:
        prompt = prompt_for(self.spec, input_type)
        window = self.spec.max_seq_length
        # One tokenization, cut one token past the window: enough to tell which texts were truncated.
        encoded = self._tokenizer([prompt + t for t in texts], truncation=True, max_length=window + 1)
        ids: list[list[int]] = encoded["input_ids"]
        truncated = sum(1 for row in ids if len(row) > window)
        ids = [row if len(row) <= window else [*row[: window - 1], row[-1]] for row in ids]  # keep [SEP]
        order = np.argsort([len(row) for row in ids], kind="stable")
        out = np.empty((len(texts), self.spec.dimensions), dtype=np.float32)
        with self._lock:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in batch)
                input_ids = np.zeros((len(batch), width), dtype=np.int64)
                mask = np.zeros((len(batch), width), dtype=np.int64)
                for row, i in enumerate(batch):
                    input_ids[row, : len(ids[i])] = ids[i]
                    mask[row, : len(ids[i])] = 1
                feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
                out[batch] = self._session.run(["embedding"], feeds)[0]
        if self._normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return Encoded(vectors=out, truncated=truncated, tokens=sum(len(row) for row in ids))

    def calibration_vectors(self) -> np.ndarray:
        if self._calibration is None:
            self._calibration = self.encode(calibration_texts(), InputType.DOCUMENT).vectors
        return self._calibration


class OnnxInt8Encoder(OnnxEncoder):
    quantized = True
