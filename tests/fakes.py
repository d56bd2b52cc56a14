"""A deterministic fake encoder for fast tests of the pipeline logic (the real model is in e2e tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np

from embedfleet.domain import InputType
from embedfleet.jobstore import JobStore
from embedfleet.model_store import ModelStore
from embedfleet.registry import ModelRegistry, ModelRole, ModelSpec
from embedfleet.worker.kinds.base import WorkerContext
from embedfleet.worker.milvus_guard import MilvusBreaker
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.models.base import Encoded, EncodedBatch
from embedfleet.worker.models.batching import BatchPolicy, padded_tokens, plan_batches
from embedfleet.worker.models.host import ModelHost

# Small enough that a part of a few dozen texts takes several forward passes.
FAKE_POLICY = BatchPolicy(tokens=32, max_texts=16)

FAKE_SPEC = ModelSpec(
    name="fake-hash",
    role=ModelRole.MRL,
    source="/nonexistent/fake",
    dimensions=16,
    matryoshka_dimensions=(4, 8),
    max_seq_length=8,
)


class HashEncoder:
    """Vectors from a hash of the text: same text, same vector; texts over 8 words count as truncated.

    ``batches`` plans with the engine's own token-budget batching (a word is a token) and calls
    ``encode`` once per forward pass, so subclasses that override ``encode`` see every batch."""

    def __init__(
        self,
        spec: ModelSpec = FAKE_SPEC,
        fail_times: int = 0,
        error: Exception | None = None,
        policy: BatchPolicy = FAKE_POLICY,
    ) -> None:
        self.spec = spec
        self.policy = policy
        self.version = "sha256:fake"
        self.calls = 0
        self._fail_times = fail_times
        self._error = error

    def encode(self, texts: list[str], input_type: InputType) -> Encoded:
        self.calls += 1
        if self.calls <= self._fail_times and self._error is not None:
            raise self._error
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(f"{input_type}:{text}".encode()).digest()[:8], "big")
            rows.append(np.random.default_rng(seed).standard_normal(self.spec.dimensions))
        truncated = sum(1 for t in texts if len(t.split()) > self.spec.max_seq_length)
        tokens = sum(min(len(t.split()), self.spec.max_seq_length) for t in texts)  # a word is a token
        return Encoded(vectors=np.asarray(rows, dtype=np.float32), truncated=truncated, tokens=tokens)

    def batches(self, texts: list[str], input_type: InputType) -> Iterator[EncodedBatch]:
        lengths = [min(len(t.split()), self.spec.max_seq_length) for t in texts]
        for rows in plan_batches(lengths, self.policy):
            encoded = self.encode([texts[i] for i in rows], input_type)
            yield EncodedBatch(
                rows=rows,
                vectors=encoded.vectors,
                truncated=encoded.truncated,
                tokens=encoded.tokens,
                padded=padded_tokens(lengths, [rows]),
            )

    def calibration_vectors(self) -> np.ndarray:
        return self.encode([f"calibration {i}" for i in range(64)], InputType.DOCUMENT).vectors


def fake_context(
    store: JobStore,
    sink: Callable[[], MilvusSink],
    encoder: HashEncoder | None = None,
    write_rows: int = 128,
    breaker: MilvusBreaker | None = None,
) -> WorkerContext:
    """A worker's services around the fake encoder: the real job store and Milvus sink, no model store
    (and, unless given, a Milvus breaker that never opens)."""
    host = ModelHost()
    host.add(encoder or HashEncoder())
    return WorkerContext(
        store=store,
        registry=lambda: ModelRegistry([FAKE_SPEC]),
        host=host,
        sink=sink,
        model_store=ModelStore("/nonexistent/model-store"),
        device="cpu",
        write_rows=write_rows,
        **({"breaker": breaker} if breaker else {}),
    )


def planted(n_clusters: int, per_cluster: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``n_clusters`` random directions (cosine to their centre ~0.9), and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, FAKE_SPEC.dimensions))
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    vectors = centres[labels] / np.linalg.norm(centres[labels], axis=1, keepdims=True)
    vectors = vectors + 0.12 * rng.standard_normal(vectors.shape)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), labels
