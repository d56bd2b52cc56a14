"""What the torch and ONNX backends share: one tokenization per text, token-budget batches, one
forward pass per batch yielded as soon as it is done.

A backend is its tokenizer and ``_forward(input_ids, mask) -> vectors``; everything about which text
goes in which batch and which vector goes back to which text is here, once, and is what the
order and budget property tests exercise.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from embedfleet.domain import InputType
from embedfleet.registry import ModelSpec
from embedfleet.worker.models.base import Encoded, EncodedBatch, calibration_texts, gather, prompt_for
from embedfleet.worker.models.batching import BatchPolicy, pad, plan_batches, tokenize


class TokenBatchedEncoder:
    """Base of the backends: subclasses set ``spec``, ``version``, ``policy``, ``_tokenizer`` and
    implement ``_forward``."""

    spec: ModelSpec
    version: str
    policy: BatchPolicy
    _tokenizer: Any

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one forward pass at a time per model: threads would contend for cores
        self._calibration: np.ndarray | None = None

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray, input_type: InputType) -> np.ndarray:
        """float32 (batch, dimensions) for one padded batch."""
        raise NotImplementedError

    def batches(self, texts: list[str], input_type: InputType) -> Iterator[EncodedBatch]:
        prompt = prompt_for(self.spec, input_type)
        tokenized = tokenize(self._tokenizer, [prompt + t for t in texts], self.spec.max_seq_length)
        for rows in plan_batches(tokenized.lengths, self.policy):
            input_ids, mask = pad(tokenized.ids, rows)
            with self._lock:
                vectors = self._forward(input_ids, mask, input_type)
            yield EncodedBatch(
                rows=rows,
                vectors=vectors,
                truncated=int(tokenized.overflowed[rows].sum()),
                tokens=int(mask.sum()),
                padded=int(mask.size),
            )

    def encode(self, texts: list[str], input_type: InputType) -> Encoded:
        return gather(self.batches(texts, input_type), len(texts), self.spec.dimensions)

    def calibration_vectors(self) -> np.ndarray:
        """Raw embeddings of the fixed calibration texts (computed once per process)."""
        if self._calibration is None:
            self._calibration = self.encode(calibration_texts(), InputType.DOCUMENT).vectors
        return self._calibration
