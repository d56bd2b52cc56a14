"""Counting truncated texts with the real packaged model: exact at the window's edge, and cheap for
a huge text (one token past the window is all the count needs)."""

from __future__ import annotations

import tracemalloc

from embedfleet.domain import InputType
from embedfleet.registry import DEFAULT_MODELS
from embedfleet.worker.models.torch import SentenceTransformerEncoder


def test_truncation_is_counted_without_tokenizing_past_the_window() -> None:
    encoder = SentenceTransformerEncoder(DEFAULT_MODELS[0], "cpu", 32)
    window = encoder.spec.max_seq_length
    fits = "word " * (window - 2)  # with [CLS] and [SEP]: exactly the window
    assert len(encoder.model.tokenizer(fits)["input_ids"]) == window
    texts = ["a short text", fits, fits + "word", "many words " * 100_000]  # the last: about 1 MB
    tracemalloc.start()
    try:
        encoded = encoder.encode(texts, InputType.DOCUMENT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert encoded.truncated == 2 and encoded.vectors.shape == (4, encoder.spec.dimensions)
    # Token ids of the whole megabyte as Python lists took ~20 MB; only the texts themselves now.
    assert peak < 8 * 1024 * 1024, f"counting truncation traced {peak / 2**20:.1f} MiB"
