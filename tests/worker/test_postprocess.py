import numpy as np
import pytest

from embedfleet.domain import Precision
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
