"""The models of one worker process, and the one table from a registry entry's ``backend`` to the
module that builds its encoder. Adding a backend (ONNX Runtime) is one module plus one row here."""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path

from embedfleet.registry import ModelSpec
from embedfleet.worker.models.base import Encoder, EncoderFactory

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path(".embedfleet/cache")

# backend name -> "module:callable" building an Encoder; imported on first use, so a worker that
# never serves a backend never imports its runtime.
BACKENDS: dict[str, str] = {
    "torch": "embedfleet.worker.models.torch:SentenceTransformerEncoder",
    "onnx": "embedfleet.worker.models.onnx:OnnxEncoder",
    "onnx-int8": "embedfleet.worker.models.onnx:OnnxInt8Encoder",
}


def encoder_factory(backend: str) -> EncoderFactory:
    module, _, name = BACKENDS[backend].partition(":")
    factory: EncoderFactory = getattr(importlib.import_module(module), name)
    return factory


def resolve_device(device: str) -> str:
    """ "auto" -> CUDA when torch sees a GPU, else the CPU; anything else is used as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelHost:
    """The models of one worker process, each loaded on first use and then kept.

    Entries are keyed by what identifies the weights (name, source, pins, backend), so a newly
    promoted version of a model name is loaded next to, not confused with, the one in memory.
    """

    def __init__(
        self,
        device: str = "auto",
        batch_size: int = 0,
        cache_dir: Path = DEFAULT_CACHE_DIR,
        *,
        token_budget: int = 0,
        cuda_dtype: str = "float16",
    ) -> None:
        """``batch_size`` (texts) and ``token_budget`` (padded tokens) cap each forward pass; 0 leaves
        the model's or the device's default (``batching.py``). ``cuda_dtype`` is torch's forward type on
        CUDA (the CPU always runs fp32)."""
        self.device = device
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.cuda_dtype = cuda_dtype
        self.cache_dir = cache_dir
        self._encoders: dict[tuple[str, str, str, str, str], Encoder] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(spec: ModelSpec) -> tuple[str, str, str, str, str]:
        return (spec.name, spec.source, spec.checksum, spec.revision, spec.backend)

    def get(self, spec: ModelSpec) -> Encoder:
        with self._lock:
            encoder = self._encoders.get(self._key(spec))
            if encoder is None:
                log.info("loading model %s from %s (%s backend)", spec.name, spec.source, spec.backend)
                factory = encoder_factory(spec.backend)
                encoder = factory(
                    spec,
                    resolve_device(self.device),
                    self.batch_size,
                    self.cache_dir,
                    budget=self.token_budget,
                    cuda_dtype=self.cuda_dtype,
                )
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
