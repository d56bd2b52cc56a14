"""The agreement gate: a backend (ONNX, int8, a CUDA half type) serves a model only if its vectors
agree with the reference path's (torch fp32) on the fixed calibration texts, so a faster path never
quietly puts a different vector space into a collection. Checked once when the backend is built."""

from __future__ import annotations

import numpy as np

from embedfleet.errors import FailedPrecondition

MIN_MEAN_COSINE = 0.99
MIN_COSINE = 0.97
AGREEMENT_TEXTS = 256  # calibration texts compared with the reference


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two (n, d) arrays."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return np.asarray(np.sum(a * b, axis=1))


def measure(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The report the gate reads and a backend keeps: mean and min cosine to the reference."""
    c = cosines(vectors, reference)
    return {"mean_cosine": float(c.mean()), "min_cosine": float(c.min())}


def check(model: str, variant: str, agreement: dict[str, float]) -> None:
    """Refuse (FAILED_PRECONDITION) a backend whose agreement is under the gate."""
    if agreement["mean_cosine"] < MIN_MEAN_COSINE or agreement["min_cosine"] < MIN_COSINE:
        raise FailedPrecondition(
            f"model {model!r} on {variant} disagrees with torch (mean cosine {agreement['mean_cosine']:.4f}, "
            f"min {agreement['min_cosine']:.4f}; the gate is {MIN_MEAN_COSINE}/{MIN_COSINE}): serve it with the "
            "torch backend in float32"
        )
