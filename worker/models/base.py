"""The encoder seam every model backend implements, and what all backends share.

The pipeline only ever calls ``Encoder.encode`` and ``Encoder.calibration_vectors``; a backend
(torch today, ONNX Runtime next) is one module that builds such an object from a registry entry.
Tests of the pipeline logic use a deterministic fake with the same interface.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Iterator
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


@dataclass(frozen=True)
class EncodedBatch:
    """One forward pass of a part: which texts it held (positions in the input) and their vectors.
    ``padded`` is what the model processed, padding included (``tokens`` without it)."""

    rows: np.ndarray  # int positions into the encoded texts
    vectors: np.ndarray  # float32 (len(rows), model dimension), not normalized
    truncated: int
    tokens: int
    padded: int


class Encoder(Hashable, Protocol):
    """Hashable by identity: per-encoder caches (int8 calibration ranges) key on the object.

    ``batches`` is the primitive: the texts tokenized once, cut by the token budget, one forward pass
    per batch yielded as it is done, so a caller can post-process and write a batch while the next
    one runs (``worker/pipeline.py``). ``encode`` is all of them gathered back into input order."""

    spec: ModelSpec
    version: str

    def encode(self, texts: list[str], input_type: InputType) -> Encoded: ...

    def batches(self, texts: list[str], input_type: InputType) -> Iterator[EncodedBatch]: ...

    def calibration_vectors(self) -> np.ndarray: ...


def gather(batches: Iterable[EncodedBatch], count: int, dimensions: int) -> Encoded:
    """Batches in any order -> one vector per text, in the order the texts were given."""
    vectors = np.empty((count, dimensions), dtype=np.float32)
    filled = np.zeros(count, dtype=bool)
    truncated = tokens = 0
    for batch in batches:
        vectors[batch.rows] = batch.vectors
        filled[batch.rows] = True
        truncated += batch.truncated
        tokens += batch.tokens
    if not filled.all():  # a backend that drops a text must never shift the others' vectors
        raise RuntimeError(f"the encoder returned {int(filled.sum())} of {count} vectors")
    return Encoded(vectors=vectors, truncated=truncated, tokens=tokens)


def cores() -> int:
    """The cores this process may use (its CPU affinity, which a container's cpuset or a Ray actor's
    num_cpus sets), so a backend's thread count follows what the worker was given."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    weights (an exported graph), per weights checksum; ``budget`` the padded tokens per batch (0: the
    model's or device's default); ``cuda_dtype`` the forward type of torch on CUDA."""

    def __call__(
        self, spec: ModelSpec, device: str, batch_size: int, cache_dir: Path, *, budget: int, cuda_dtype: str
    ) -> Encoder: ...
