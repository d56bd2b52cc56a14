"""Model hosting: each worker process loads each model once and keeps it for every chunk.

``Encoder`` is the seam the pipeline depends on; ``SentenceTransformerEncoder`` is the real one
(tests of the pipeline logic use a deterministic fake with the same interface).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.model_store import weights_checksum
from embedfleet.registry import ModelSpec

log = logging.getLogger(__name__)

# Fixed texts whose embeddings calibrate int8 ranges: the same for every worker, so int8 vectors
# from any worker, any batch, are comparable. (WordNet 3.0 definitions; see worker/CALIBRATION_NOTICE.)
CALIBRATION_FILE = Path(__file__).with_name("calibration.txt")


@dataclass(frozen=True)
class Encoded:
    vectors: np.ndarray  # float32 (n, model dimension), not normalized
    truncated: int  # texts longer than the model's window


class Encoder(Protocol):
    spec: ModelSpec
    version: str

    def encode(self, texts: list[str], input_type: InputType) -> Encoded: ...

    def calibration_vectors(self) -> np.ndarray: ...


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEncoder:
    def __init__(self, spec: ModelSpec, device: str, batch_size: int) -> None:
        from sentence_transformers import SentenceTransformer

        self.spec = spec
        self.batch_size = batch_size
        path = spec.local_path()
        if path is not None:
            self.version = weights_checksum(path)
            if spec.checksum and not self.version.startswith(spec.checksum):
                raise FailedPrecondition(
                    f"model {spec.name!r}: weights at {path} have {self.version}, but the registry pins {spec.checksum}"
                )
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

    def _prompt(self, input_type: InputType) -> str:
        return self.spec.query_prompt if input_type == InputType.QUERY else self.spec.document_prompt

    def encode(self, texts: list[str], input_type: InputType) -> Encoded:
        prompt = self._prompt(input_type)
        with self._lock:  # one forward pass at a time per model: threads would only contend for cores
            lengths = self.model.tokenizer([prompt + t for t in texts], add_special_tokens=True)["input_ids"]
            truncated = sum(1 for ids in lengths if len(ids) > self.spec.max_seq_length)
            vectors = self.model.encode(
                texts,
                prompt=prompt or None,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        return Encoded(vectors=np.asarray(vectors, dtype=np.float32), truncated=truncated)

    def calibration_vectors(self) -> np.ndarray:
        """Raw embeddings of the fixed calibration texts (computed once per process)."""
        if self._calibration is None:
            texts = [t for t in CALIBRATION_FILE.read_text(encoding="utf-8").splitlines() if t.strip()]
            self._calibration = self.encode(texts, InputType.DOCUMENT).vectors
        return self._calibration


class ModelHost:
    """The models of one worker process, each loaded on first use and then kept.

    Entries are keyed by what identifies the weights (name, source, pins), so a newly promoted
    version of a model name is loaded next to, not confused with, the one already in memory.
    """

    def __init__(self, device: str = "auto", batch_size: int = 32) -> None:
        self.device = device
        self.batch_size = batch_size
        self._encoders: dict[tuple[str, str, str, str], Encoder] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(spec: ModelSpec) -> tuple[str, str, str, str]:
        return (spec.name, spec.source, spec.checksum, spec.revision)

    def get(self, spec: ModelSpec) -> Encoder:
        with self._lock:
            encoder = self._encoders.get(self._key(spec))
            if encoder is None:
                log.info("loading model %s from %s", spec.name, spec.source)
                encoder = SentenceTransformerEncoder(spec, resolve_device(self.device), self.batch_size)
                self._encoders[self._key(spec)] = encoder
            return encoder

    def add(self, encoder: Encoder) -> None:
        """Host an already-built encoder (tests use this with a deterministic fake)."""
        with self._lock:
            self._encoders[self._key(encoder.spec)] = encoder

    def loaded(self) -> dict[str, str]:
        """Name -> version of every model loaded in this process (the latest loaded per name)."""
        with self._lock:
            return {enc.spec.name: enc.version for enc in self._encoders.values()}
