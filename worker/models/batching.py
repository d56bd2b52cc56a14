"""Token-budget batching (TEI's ``max_batch_tokens``): one tokenization per text, then batches cut
by padded tokens instead of a fixed count.

A fixed count of 32 puts 32 titles and 32 full paragraphs in batches of very different cost, and
unsorted it pads every text to the longest of its batch (2.3-2.5x the real tokens here). Sorting a
part's texts by token length and closing a batch when ``longest x count`` would pass the budget keeps
the padding small and the cost of every batch about the same, so short texts travel in big batches
and long ones in small batches. The budget is per device (a GPU wants far more tokens in flight than
two CPU cores) and may be set per model in the registry or per worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Padded tokens per forward pass when neither the registry entry nor the worker sets one. CPU: 1,024,
# the fastest of 512..4,096 on parts as jobs cut them, both on short definitions and on mixed paragraphs
# (bench/token_budget.py: ~1.3-1.4x plain ``encode``, where 4,096 gave ~1.1x); CUDA: TEI's order.
DEFAULT_TOKEN_BUDGET = {"cpu": 1024, "cuda": 16384}
# The most texts in one batch whatever their length (a budget of titles would otherwise be huge).
DEFAULT_MAX_BATCH = {"cpu": 256, "cuda": 1024}


@dataclass(frozen=True)
class BatchPolicy:
    """How one encoder cuts its batches: at most ``tokens`` padded tokens and ``max_texts`` texts."""

    tokens: int
    max_texts: int


def device_kind(device: str) -> str:
    """ "cuda:1" -> "cuda"; anything that is not CUDA batches like the CPU."""
    return "cuda" if device.startswith("cuda") else "cpu"


def batch_policy(device: str, token_budget: int = 0, max_texts: int = 0) -> BatchPolicy:
    """The policy for ``device``: a budget or count given (the registry's, the worker's) wins over
    the device's default."""
    kind = device_kind(device)
    return BatchPolicy(
        tokens=token_budget or DEFAULT_TOKEN_BUDGET[kind], max_texts=max_texts or DEFAULT_MAX_BATCH[kind]
    )


@dataclass(frozen=True)
class Tokenized:
    """A part's texts tokenized once: ids cut at the model's window (its last special token kept),
    and how many texts were longer than the window."""

    ids: list[list[int]]
    overflowed: np.ndarray  # bool per text: longer than the window

    @property
    def lengths(self) -> list[int]:
        return [len(row) for row in self.ids]


def tokenize(tokenizer: Any, texts: Sequence[str], window: int) -> Tokenized:
    """One tokenizer call per text, cut one token past the window: a row of ``window + 1`` ids is a
    text that overflows it (counted), then cut to the window keeping its closing ``[SEP]``, exactly
    as a tokenizer truncating at the window would have produced it."""
    rows: list[list[int]] = tokenizer(list(texts), truncation=True, max_length=window + 1)["input_ids"]
    overflowed = np.array([len(row) > window for row in rows], dtype=bool)
    return Tokenized(
        ids=[row if len(row) <= window else [*row[: window - 1], row[-1]] for row in rows], overflowed=overflowed
    )


def plan_batches(lengths: Sequence[int], policy: BatchPolicy) -> list[np.ndarray]:
    """Positions of the texts, longest first, cut into batches of at most ``policy.tokens`` padded
    tokens (longest x count) and ``policy.max_texts`` texts. A text longer than the budget on its own
    still forms a batch of one: every position is in exactly one batch."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        count = end - start
        longest = max(int(lengths[order[start]]), 1)  # sorted: the batch's first text is its longest
        if end == len(order) or count == policy.max_texts or longest * (count + 1) > policy.tokens:
            batches.append(order[start:end])
            start = end
    return batches


def padded_tokens(lengths: Sequence[int], batches: Sequence[np.ndarray]) -> int:
    """Tokens the model processes for ``batches``, padding included (longest x count per batch)."""
    return sum(max(int(lengths[i]) for i in batch) * len(batch) for batch in batches if len(batch))


def pad(ids: Sequence[Sequence[int]], batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(input ids, attention mask) of one batch as int64 arrays, right-padded with id 0."""
    width = max(len(ids[i]) for i in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, i in enumerate(batch):
        input_ids[row, : len(ids[i])] = ids[i]
        mask[row, : len(ids[i])] = 1
    return input_ids, mask
