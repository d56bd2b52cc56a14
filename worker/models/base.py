"""The encoder seam every model backend implements, and what all backends share.

The pipeline only ever calls ``Encoder.encode`` and ``Encoder.calibration_vectors``; a backend
(torch today, ONNX Runtime next) is one module that builds such an object from a registry entry.
Tests of the pipeline logic use a deterministic fake with the same interface.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.model_store import weights_checksum
from embedfleet.registry import ModelSpec

# Fixed texts whose embeddings calibrate int8 ranges: the same for every worker, so int8 vectors
# from any worker, any batch, are comparable. (WordNet 3.0 definitions; see worker/CALIBRATION_NOTICE.)
CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "calibration.txt"


@dataclass(frozen=True)
class Encoded:
    vectors: np.ndarray  # float32 (n, model dimension), not normalized
    truncated: int  # texts longer than the model's window
    tokens: int = 0  # tokens the model processed (after truncation, without padding); 0 = not known


class Encoder(Hashable, Protocol):
    """Hashable by identity: per-encoder caches (int8 calibration ranges) key on the object."""

    spec: ModelSpec
    version: str

    def encode(self, texts: list[str], input_type: InputType) -> Encoded: ...

    def calibration_vectors(self) -> np.ndarray: ...


def calibration_texts() -> list[str]:
    return [t for t in CALIBRATION_FILE.read_text(encoding="utf-8").splitlines() if t.strip()]


def verified_weights(spec: ModelSpec, path: Path) -> str:
    """The weights' checksum, refused when it is not the one the registry pins."""
    version = weights_checksum(path)
    if spec.checksum and not version.startswith(spec.checksum):
        raise FailedPrecondition(
            f"model {spec.name!r}: weights at {path} have {version}, but the registry pins {spec.checksum}"
        )
    return version


def prompt_for(spec: ModelSpec, input_type: InputType) -> str:
    """The registry's prompt for queries or documents ("" when the model has none)."""
    return spec.query_prompt if input_type == InputType.QUERY else spec.document_prompt


class EncoderFactory(Protocol):
    """Builds a backend's encoder; ``cache_dir`` is where a backend may keep what it derives from the
    weights (an exported graph), per weights checksum."""

    def __call__(self, spec: ModelSpec, device: str, batch_size: int, cache_dir: Path) -> Encoder: ...
