import numpy as np
import pytest

from embedfleet.domain import BitBasis, Precision
from embedfleet.vectors import binary_codes, bit_rotation
from embedfleet.worker.postprocess import postprocess


def _vectors() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)


def test_normalize_truncate_renormalize() -> None:
    out = postprocess(_vectors(), dimensions=4, normalize=True, precision=Precision.FLOAT32)
    assert out.shape == (5, 4) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    full = postprocess(_vectors(), dimensions=8, normalize=True, precision=Precision.FLOAT32)
    # The prefix keeps the direction of the first dimensions.
    assert np.allclose(out, full[:, :4] / np.linalg.norm(full[:, :4], axis=1, keepdims=True), atol=1e-6)


def test_without_normalization_values_are_kept() -> None:
    out = postprocess(_vectors(), dimensions=8, normalize=False, precision=Precision.FLOAT32)
    assert np.array_equal(out, _vectors())


def test_float16_and_binary() -> None:
    vectors = _vectors()
    half = postprocess(vectors, dimensions=8, normalize=True, precision=Precision.FLOAT16)
    assert half.dtype == np.float16
    bits = postprocess(vectors, dimensions=8, normalize=True, precision=Precision.BINARY)
    assert bits.dtype == np.uint8 and bits.shape == (5, 1)
    assert np.array_equal(np.unpackbits(bits, axis=1), (vectors > 0).astype(np.uint8))


def test_int8_uses_fixed_ranges() -> None:
    vectors = _vectors()
    ranges = np.stack([np.full(8, -1.0), np.full(8, 1.0)]).astype(np.float32)
    q = postprocess(vectors, dimensions=8, normalize=True, precision=Precision.INT8, int8_ranges=ranges)
    assert q.dtype == np.int8
    # Same ranges -> same code for the same value, whichever batch it comes in.
    q_one = postprocess(vectors[:1], dimensions=8, normalize=True, precision=Precision.INT8, int8_ranges=ranges)
    assert np.array_equal(q[:1], q_one)
    with pytest.raises(ValueError, match="calibration"):
        postprocess(vectors, dimensions=8, normalize=True, precision=Precision.INT8)


def test_rotated_bits_are_the_signs_after_one_fixed_orthogonal_rotation() -> None:
    rotation = bit_rotation(8)
    assert np.allclose(rotation @ rotation.T, np.eye(8), atol=1e-5)
    # A fixed matrix, not only a fixed seed: stored bits mean the same in every process and release.
    assert [round(float(v), 4) for v in rotation[0, :3]] == [0.1052, -0.1875, 0.1693]
    vectors = _vectors()
    bits = postprocess(vectors, dimensions=8, normalize=True, precision=Precision.BINARY, bits=BitBasis.ROTATED)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert np.array_equal(np.unpackbits(bits, axis=1), (unit @ rotation > 0).astype(np.uint8))
    prefix = postprocess(vectors, dimensions=4, normalize=True, precision=Precision.BINARY, bits=BitBasis.ROTATED)
    assert prefix.shape == (5, 1)  # a prefix field's bits rotate the prefix (its own 4 x 4 matrix)


def _recall_of_shortlist(docs: np.ndarray, queries: np.ndarray, bits: BitBasis, candidates: int) -> float:
    """The share of each query's exact top 10 (cosine) inside its ``candidates`` nearest by Hamming."""
    exact = np.argsort(-queries @ docs.T, axis=1)[:, :10]
    codes = np.unpackbits(binary_codes(docs, bits), axis=1).astype(np.int32)
    asked = np.unpackbits(binary_codes(queries, bits), axis=1).astype(np.int32)
    hamming = asked @ (1 - codes).T + (1 - asked) @ codes.T
    shortlist = np.argsort(hamming, axis=1, kind="stable")[:, :candidates]
    return float(np.mean([len(set(e) & set(s)) / 10 for e, s in zip(exact, shortlist, strict=True)]))


def test_rotated_bits_shortlist_a_space_whose_variance_falls_off_along_its_axes_better() -> None:
    """Vectors with most of their variance in the leading coordinates, as a Matryoshka model rotated onto
    principal axes gives: the signs of the trailing, near-empty coordinates are noise to the cosine, and a
    rotation spreads the variance over every bit (the reason for ``BitBasis.ROTATED``)."""
    rng = np.random.default_rng(0)
    scales = 1.0 / np.arange(1, 65)
    docs = rng.standard_normal((2000, 64)) * scales
    queries = docs[:100] + 0.5 * rng.standard_normal((100, 64)) * scales
    docs, queries = (m / np.linalg.norm(m, axis=1, keepdims=True) for m in (docs, queries))
    axes = _recall_of_shortlist(docs, queries, BitBasis.AXES, 100)
    rotated = _recall_of_shortlist(docs, queries, BitBasis.ROTATED, 100)
    assert rotated > axes + 0.1, (axes, rotated)
