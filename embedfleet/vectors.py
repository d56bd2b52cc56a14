"""The NumPy steps of post-processing that every process shares: L2 normalization and the
Matryoshka prefix. The worker's ``postprocess`` applies them to model output; the gateway applies the
same to a query to search a prefix field, so a query and the rows it is compared with are treated alike."""

from __future__ import annotations

import functools

import numpy as np

from embedfleet.domain import BitBasis


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


# The seed of the one rotation every rotated bit field uses: changing it changes what stored bits mean.
ROTATION_SEED = 20261206


@functools.lru_cache(maxsize=16)
def bit_rotation(dimensions: int) -> np.ndarray:
    """The fixed random orthogonal (d, d) matrix of rotated bit fields: the Q of a QR of a seeded Gaussian
    matrix (NumPy's legacy generator, whose stream is frozen), each column's sign set so that R's diagonal
    is positive, which makes Q unique whatever LAPACK computed it. Every process derives the same matrix,
    so nothing needs storing beyond the field's basis."""
    gaussian = np.random.RandomState(ROTATION_SEED).standard_normal((dimensions, dimensions))
    q, r = np.linalg.qr(gaussian)
    rotation = np.ascontiguousarray((q * np.sign(np.diag(r))).astype(np.float32))
    rotation.flags.writeable = False
    return rotation


def binary_codes(vectors: np.ndarray, bits: BitBasis = BitBasis.AXES) -> np.ndarray:
    """One bit per dimension (value > 0), packed 8 per byte row by row (``np.packbits`` order): the
    layout of binary ``EmbeddingBatch`` rows and of stored bit fields; with ``rotated`` bits, the signs
    of the vectors' coordinates after ``bit_rotation``."""
    values = np.asarray(vectors, dtype=np.float32)
    if bits == BitBasis.ROTATED:
        values = values @ bit_rotation(values.shape[-1])
    return np.packbits(values > 0, axis=-1)
