"""The NumPy steps of post-processing that every process shares: L2 normalization and the
Matryoshka prefix. The worker's ``postprocess`` applies them to model output; the gateway applies the
same to a query to search a prefix field, so a query and the rows it is compared with are treated alike."""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def matryoshka_prefix(vectors: np.ndarray, dimensions: int, normalize: bool) -> np.ndarray:
    """Normalize, keep the first ``dimensions`` values, re-normalize (when ``normalize``)."""
    out = np.asarray(vectors, dtype=np.float32)
    if normalize:
        out = l2_normalize(out)
    if dimensions < out.shape[-1]:
        out = out[..., :dimensions]
        if normalize:
            out = l2_normalize(out)
    return out


def binary_codes(vectors: np.ndarray) -> np.ndarray:
    """One bit per dimension (value > 0), packed 8 per byte row by row (``np.packbits`` order): the
    layout of binary ``EmbeddingBatch`` rows and of stored bit fields."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1)
