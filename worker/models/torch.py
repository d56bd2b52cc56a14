"""The torch backend: sentence-transformers' modules on CPU or CUDA, loaded from the registry's
weights, fed by the engine's own tokenization and token-budget batches (``engine.py``).

The model's modules are called directly on each padded batch instead of through
``SentenceTransformer.encode``, which would tokenize every text a second time (the engine already
did, to count truncation and to sort) and cut batches by count. On CUDA the forward runs in the
configured half type (fp16 by default, bf16 where the GPU has it), served only past the agreement
gate with fp32 on the calibration texts; on the CPU it is always fp32, the reference.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition
from embedfleet.registry import ModelSpec
from embedfleet.worker.models import agreement
from embedfleet.worker.models.base import calibration_texts, cores, prompt_for, verified_weights
from embedfleet.worker.models.batching import batch_policy, device_kind
from embedfleet.worker.models.engine import TokenBatchedEncoder

CUDA_DTYPES = ("float16", "bfloat16", "float32")


def forward_dtype(device: str, cuda_dtype: str) -> str:
    """The dtype of the forward pass: the configured half type on CUDA; fp32 on the CPU, where half
    kernels are slower and fp32 is what every other path is compared with."""
    if cuda_dtype not in CUDA_DTYPES:
        raise ValueError(f"cuda_dtype {cuda_dtype!r}: use one of {', '.join(CUDA_DTYPES)}")
    return cuda_dtype if device_kind(device) == "cuda" else "float32"


def token_budget(spec: ModelSpec, device: str, override: int = 0) -> int:
    """A worker's budget (``override``) wins, then the registry entry's for the device kind; 0 leaves
    the device default (``batching.DEFAULT_TOKEN_BUDGET``)."""
    per_model = spec.cuda_token_budget if device_kind(device) == "cuda" else spec.cpu_token_budget
    return override or per_model


class SentenceTransformerEncoder(TokenBatchedEncoder):
    def __init__(
        self,
        spec: ModelSpec,
        device: str,
        batch_size: int = 0,
        cache_dir: Path | None = None,
        *,
        budget: int = 0,
        cuda_dtype: str = "float16",
    ) -> None:
        """``batch_size`` caps the texts per batch and ``budget`` the padded tokens (0: the device's
        defaults); ``cache_dir`` is unused: torch reads the weights directory as it is."""
        import torch
        from sentence_transformers import SentenceTransformer

        super().__init__()
        self.spec = spec
        self.device = device
        self.policy = batch_policy(device, token_budget(spec, device, budget), batch_size)
        if "OMP_NUM_THREADS" not in os.environ:  # Ray sets it per actor; else follow the given cores
            torch.set_num_threads(cores())
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
        self._tokenizer = self.model.tokenizer
        self._token_types = "token_type_ids" in getattr(self._tokenizer, "model_input_names", ())
        self._prompt_lengths = {
            t: len(self._tokenizer(prompt_for(spec, t))["input_ids"]) - 1 for t in InputType if prompt_for(spec, t)
        }
        self.dtype = forward_dtype(device, cuda_dtype)
        self.agreement: dict[str, float] = {}
        if self.dtype != "float32":
            self._to_half(self.dtype)

    def _to_half(self, dtype: str) -> None:
        """Switch the weights to a half type, served only if it agrees with fp32 (the gate)."""
        import torch

        texts = calibration_texts()[: agreement.AGREEMENT_TEXTS]
        reference = self.encode(texts, InputType.DOCUMENT).vectors
        self.model.to(dtype=getattr(torch, dtype))
        self.dtype = dtype
        self.agreement = agreement.measure(self.encode(texts, InputType.DOCUMENT).vectors, reference)
        agreement.check(self.spec.name, f"torch {self.dtype} on {self.device}", self.agreement)
        self.version = f"{self.version}+torch-{self.dtype}"  # what produced the vectors

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray, input_type: InputType) -> np.ndarray:
        import torch

        ids = torch.from_numpy(input_ids).to(self.device)
        features: dict[str, torch.Tensor | int] = {
            "input_ids": ids,
            "attention_mask": torch.from_numpy(mask).to(self.device),
        }
        if self._token_types:
            features["token_type_ids"] = torch.zeros_like(ids)
        if input_type in self._prompt_lengths:  # pooling that excludes the prompt needs its length
            features["prompt_length"] = self._prompt_lengths[input_type]
        self.model.eval()  # as ST's encode does per call: dropout off (a copy taken for training keeps its mode)
        with torch.inference_mode():
            out = self.model(features)["sentence_embedding"]
        return np.asarray(out.float().cpu().numpy(), dtype=np.float32)
