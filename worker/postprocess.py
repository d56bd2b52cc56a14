"""The one post-processing path every vector takes: normalize, truncate to an MRL prefix,
re-normalize, quantize. Unary Embed, embed jobs, index jobs and search queries all call it, so a
query and the documents it is compared with are always treated alike.
"""

from __future__ import annotations

import numpy as np
from sentence_transformers.util.quantization import quantize_embeddings

from embedfleet.domain import BitBasis, Precision
from embedfleet.vectors import binary_codes, matryoshka_prefix


def postprocess(
    vectors: np.ndarray,
    *,
    dimensions: int,
    normalize: bool,
    precision: Precision,
    int8_ranges: np.ndarray | None = None,
    bits: BitBasis = BitBasis.AXES,
) -> np.ndarray:
    """float32 (n, d) model output -> the stored/returned representation.

    ``int8_ranges`` is the (2, dimensions) array of per-dimension [min, max] used for int8; it must be
    fixed per model (not computed from the batch), or vectors from two batches would not compare.
    ``bits`` is a stored bit field's basis (binary only).
    """
    out = matryoshka_prefix(vectors, dimensions, normalize)
    if precision == Precision.FLOAT32:
        return np.ascontiguousarray(out)
    if precision == Precision.FLOAT16:
        return out.astype(np.float16)
    if precision == Precision.BINARY:
        # "ubinary": bit = value > 0, packed 8 per byte (np.packbits order), as EmbeddingBatch documents.
        return binary_codes(out, bits)
    if int8_ranges is None:
        raise ValueError("int8 output needs calibration ranges")
    return np.asarray(quantize_embeddings(out, precision="int8", ranges=int8_ranges))
