"""The torch backend: sentence-transformers on CPU or CUDA, loaded from the registry's weights."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.registry import ModelSpec
from embedfleet.worker.models.base import Encoded, calibration_texts, prompt_for, verified_weights


class SentenceTransformerEncoder:
    def __init__(self, spec: ModelSpec, device: str, batch_size: int, cache_dir: Path | None = None) -> None:
        """``cache_dir`` is unused: torch reads the weights directory as it is."""
        from sentence_transformers import SentenceTransformer

        self.spec = spec
        self.batch_size = batch_size
        path = spec.local_path()
        if path is not None:
            self.version = verified_weights(spec, path)
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        else:
            # A hub id: only for deployments that reach a hub; pinned by revision.
            self.version = spec.revision or "unpinned"
            self.model = SentenceTransformer(spec.source, device=device, revision=spec.revision or None)
        self.model.max_seq_length = spec.max_seq_length
        loaded_dim = self.model.get_embedding_dimension()
        if loaded_dim != spec.dimensions:
            raise FailedPrecondition(
                f"model {spec.name!r} outputs {loaded_dim} dimensions, the registry says {spec.dimensions}"
            )
        self._calibration: np.ndarray | None = None
        self._lock = threading.Lock()

    def encode(self, texts: list[str], input_type: InputType) -> Encoded:
        prompt = prompt_for(self.spec, input_type)
        with self._lock:  # one forward pass at a time per model: threads would only contend for cores
            # One token past the window is enough to know a text overflows it: ids beyond are never built.
            window = self.spec.max_seq_length
            lengths = self.model.tokenizer(
                [prompt + t for t in texts], add_special_tokens=True, truncation=True, max_length=window + 1
            )["input_ids"]
            truncated = sum(1 for ids in lengths if len(ids) > window)
            tokens = sum(min(len(ids), window) for ids in lengths)
            vectors = self.model.encode(
                texts,
                prompt=prompt or None,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return Encoded(vectors=np.asarray(vectors, dtype=np.float32), truncated=truncated, tokens=tokens)

    def calibration_vectors(self) -> np.ndarray:
        """Raw embeddings of the fixed calibration texts (computed once per process)."""
        if self._calibration is None:
            self._calibration = self.encode(calibration_texts(), InputType.DOCUMENT).vectors
        return self._calibration
