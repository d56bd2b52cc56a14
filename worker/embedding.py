"""Text -> the vectors a user gets or stores: encode once, then the one post-processing path.

Every path that produces vectors (index and embed parts, the unary Embed, search queries through
it) goes through ``embed_texts``; further representations of the same forward pass (an MRL prefix,
bits, int8 codes) through ``represent``. Dimensions arrive resolved (the gateway did it once).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from embedfleet import metrics
from embedfleet.domain import BitBasis, InputType, Precision
from embedfleet.worker.models.base import EncodedBatch, Encoder, gather
from embedfleet.worker.postprocess import postprocess


@dataclass(frozen=True)
class EmbedOutput:
    vectors: np.ndarray  # the requested representation
    raw: np.ndarray  # the model's output before post-processing, for further representations
    truncated: int
    model: str
    version: str


@functools.lru_cache(maxsize=256)
def int8_ranges(encoder: Encoder, dimensions: int, normalize: bool) -> np.ndarray:
    """Per-dimension [min, max] of the model's fixed calibration texts, post-processed exactly like
    the request (same prefix, same normalization), so every int8 vector of a model is on one scale.
    Cached per encoder and options: the calibration texts are encoded once per process."""
    calibration = postprocess(
        encoder.calibration_vectors(), dimensions=dimensions, normalize=normalize, precision=Precision.FLOAT32
    )
    ranges = np.stack([calibration.min(axis=0), calibration.max(axis=0)])
    ranges.setflags(write=False)
    return ranges


def represent(
    encoder: Encoder,
    raw: np.ndarray,
    dimensions: int,
    precision: Precision,
    normalize: bool,
    bits: BitBasis = BitBasis.AXES,
) -> np.ndarray:
    """Model output -> one representation (the one post-processing path)."""
    return postprocess(
        raw,
        dimensions=dimensions,
        normalize=normalize,
        precision=precision,
        int8_ranges=int8_ranges(encoder, dimensions, normalize) if precision == Precision.INT8 else None,
        bits=bits,
    )


def _observe(model: str, texts: int, tokens: int, seconds: float) -> None:
    """One forward pass in the metrics: every path to a model passes here, calibration does not."""
    metrics.MODEL_FORWARD.labels(model).observe(seconds)
    metrics.BATCH_SIZE.labels(model).observe(texts)
    metrics.BATCH_TOKENS.labels(model).observe(tokens)
    metrics.DOCUMENTS_EMBEDDED.labels(model).inc(texts)
    metrics.TOKENS_EMBEDDED.labels(model).inc(tokens)


def embed_texts(
    encoder: Encoder,
    texts: list[str],
    *,
    input_type: InputType,
    dimensions: int = 0,
    precision: Precision = Precision.FLOAT32,
    normalize: bool = True,
) -> EmbedOutput:
    """Encode and post-process; ``dimensions`` 0 is the model's full width (jobs pass the resolved one)."""
    encoded = gather(embed_batches(encoder, texts, input_type), len(texts), encoder.spec.dimensions)
    return EmbedOutput(
        vectors=represent(encoder, encoded.vectors, dimensions or encoder.spec.dimensions, precision, normalize),
        raw=encoded.vectors,
        truncated=encoded.truncated,
        model=encoder.spec.name,
        version=encoder.version,
    )


def embed_batches(encoder: Encoder, texts: list[str], input_type: InputType) -> Iterator[EncodedBatch]:
    """The model's forward passes over ``texts`` (token-budget batches, longest first), each in the
    metrics as it is done; callers that write as they go (index parts) consume these directly."""
    batches = encoder.batches(texts, input_type)
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return
        _observe(encoder.spec.name, len(batch.rows), batch.tokens, time.perf_counter() - started)
        yield batch
