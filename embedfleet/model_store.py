"""A directory-based store of trained models: ``<root>/<name>/<version>/`` plus a JSON manifest each.

Why a plain directory: a model version is a SentenceTransformer directory that any worker loads with
``SentenceTransformer(path)``; a shared volume (or a synced bucket) is all a fleet needs, and no
service has to be up for a worker to start. This module is torch-free so the gateway and the CLI can
list and promote models without importing the model stack.

Invariants:

* A version directory appears complete or not at all: it is assembled in a hidden sibling and
  renamed into place, with its manifest already inside. Versions are immutable after that, except
  the manifest's evaluation and promotion fields.
* Manifests are replaced atomically (write a temporary file, fsync, ``os.replace``), so a reader sees
  the old or the new manifest, never a torn one.
* At most one version per name serves. ``promote`` marks the new version first and then clears the
  old one, under a per-name lock; a reader in between sees two flagged versions and takes the one
  promoted last, so there is never a moment with none.
* ``checksum`` is ``sha256:<hex>`` of the weights file, the same value the worker computes when it
  loads the directory (``weights_checksum``), so a registry entry made from the manifest is pinned.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embedfleet.errors import FailedPrecondition, InvalidArgument, NotFound, echo
from embedfleet.registry import ModelRole, ModelSpec

MANIFEST_FILE = "embedfleet-manifest.json"
# Rewritten with a new token whenever the set of serving versions changes, so readers can cache the
# registry and re-read the manifests only when this file's content differs (one small read per request).
GENERATION_FILE = ".generation"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def weights_checksum(path: Path) -> str:
    """``sha256:<hex>`` of the model directory's weights file: the version of a local model."""
    for name in WEIGHT_FILES:
        weights = Path(path) / name
        if weights.is_file():
            digest = hashlib.sha256()
            with weights.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            return f"sha256:{digest.hexdigest()}"
    raise FailedPrecondition(f"no weights file ({', '.join(WEIGHT_FILES)}) in {path}")


class ModelManifest(BaseModel):
    """What is known about one stored version; ``to_spec`` turns it into a registry entry."""

    model_config = ConfigDict(frozen=True)

    format: int = 1
    name: str
    version: str
    role: ModelRole
    base_model: str = Field(default="", description="the model the weights were initialised from")
    teacher: str = Field(default="", description="the model it was distilled from, if any")
    dimensions: int = Field(gt=0)
    matryoshka_dimensions: tuple[int, ...] = ()
    max_seq_length: int = Field(gt=0)
    query_prompt: str = ""
    document_prompt: str = ""
    checksum: str
    eval_metrics: dict[str, float] = Field(default_factory=dict)
    promoted: bool = False
    promoted_at: str = ""
    promotion_reason: str = ""
    created_at: str

    def to_spec(self, path: Path) -> ModelSpec:
        return ModelSpec(
            name=self.name,
            role=self.role,
            source=str(path),
            checksum=self.checksum,
            dimensions=self.dimensions,
            matryoshka_dimensions=self.matryoshka_dimensions,
            max_seq_length=self.max_seq_length,
            query_prompt=self.query_prompt,
            document_prompt=self.document_prompt,
        )


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str, version: str) -> Path:
        return self.root / _safe(name, "model name") / _safe(version, "version")

    def register(
        self,
        name: str,
        source_dir: Path,
        *,
        role: ModelRole,
        dimensions: int,
        max_seq_length: int,
        matryoshka_dimensions: tuple[int, ...] | builtins.list[int] = (),
        base_model: str = "",
        teacher: str = "",
        query_prompt: str = "",
        document_prompt: str = "",
        eval_metrics: dict[str, float] | None = None,
        version: str | None = None,
        move: bool = False,
    ) -> ModelManifest:
        """Store ``source_dir`` as a new, unpromoted version of ``name`` and return its manifest.

        ``version`` defaults to ``<UTC time>-<first 8 hex of the weights sha256>``, which sorts by time
        and says which weights it holds. ``move=True`` renames the source into the store instead of
        copying it (same filesystem; a distillation job's output, for instance).
        """
        source_dir = Path(source_dir)
        if not (source_dir / "modules.json").is_file():
            raise InvalidArgument(f"{source_dir} is not a SentenceTransformer model directory (no modules.json)")
        name = _safe(name, "model name")
        if version is not None:
            version = _safe(version, "version")
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = model_dir / f".incoming-{uuid.uuid4().hex[:12]}"
        try:
            if move:
                source_dir.rename(staging)
            else:
                shutil.copytree(source_dir, staging)
            checksum = weights_checksum(staging)
            version = version or f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{checksum[7:15]}"
            try:
                manifest = ModelManifest(
                    name=name,
                    version=version,
                    role=role,
                    base_model=base_model,
                    teacher=teacher,
                    dimensions=dimensions,
                    matryoshka_dimensions=tuple(sorted(set(matryoshka_dimensions), reverse=True)),
                    max_seq_length=max_seq_length,
                    query_prompt=query_prompt,
                    document_prompt=document_prompt,
                    checksum=checksum,
                    eval_metrics=dict(eval_metrics or {}),
                    created_at=_now(),
                )
                manifest.to_spec(staging)  # the same validation the registry applies (MRL dims < dimensions)
            except ValidationError as exc:
                raise InvalidArgument(f"cannot register {name!r}: {exc}") from exc
            _write_json_atomic(staging / MANIFEST_FILE, manifest.model_dump(mode="json"))
            final = model_dir / version
            if final.exists():
                raise FailedPrecondition(f"model {name!r} already has a version {version!r}")
            try:
                staging.rename(final)  # fails if another writer created the version meanwhile
            except OSError as exc:
                raise FailedPrecondition(f"model {name!r} already has a version {version!r}") from exc
        except BaseException:
            if move and staging.exists() and not source_dir.exists():
                staging.rename(source_dir)  # give the caller its directory back
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(model_dir)
        return manifest

    def get(self, name: str, version: str) -> ModelManifest:
        manifest_path = self.path(name, version) / MANIFEST_FILE
        if not manifest_path.is_file():
            raise NotFound(f"model {name!r} has no version {version!r} in {self.root}")
        return _read_manifest(manifest_path)

    def list(self, name: str | None = None) -> builtins.list[ModelManifest]:
        """Every stored version (of ``name``, if given), oldest first within each name."""
        if not self.root.is_dir():
            return []
        names = [_safe(name, "model name")] if name else sorted(p.name for p in self.root.iterdir())
        out: builtins.list[ModelManifest] = []
        for model_name in names:
            model_dir = self.root / model_name
            if model_name.startswith(".") or not model_dir.is_dir():
                continue
            found = [
                _read_manifest(d / MANIFEST_FILE)
                for d in model_dir.iterdir()
                if not d.name.startswith(".") and (d / MANIFEST_FILE).is_file()
            ]
            out.extend(sorted(found, key=lambda m: (m.created_at, m.version)))
        return out

    def set_eval_metrics(self, name: str, version: str, metrics: dict[str, float]) -> ModelManifest:
        """Record (replace) a version's evaluation figures, e.g. from an EvaluateModel job."""
        with self._lock(name):
            manifest = self.get(name, version)
            updated = manifest.model_copy(update={"eval_metrics": {k: float(v) for k, v in metrics.items()}})
            _write_json_atomic(self.path(name, version) / MANIFEST_FILE, updated.model_dump(mode="json"))
            return updated

    def promote(self, name: str, version: str, reason: str = "") -> ModelManifest:
        """Make ``version`` the one that serves as ``name``; any other promoted version is demoted.

        The quality gate is the caller's decision (``reason`` records it); the store only keeps the
        switch consistent.
        """
        with self._lock(name):
            target = self.get(name, version)
            promoted = target.model_copy(update={"promoted": True, "promoted_at": _now(), "promotion_reason": reason})
            _write_json_atomic(self.path(name, version) / MANIFEST_FILE, promoted.model_dump(mode="json"))
            for other in self.list(name):
                if other.promoted and other.version != version:
                    self._write(other.model_copy(update={"promoted": False}))
            self._bump_generation()
            return promoted

    def demote(self, name: str, version: str) -> ModelManifest:
        """Stop serving ``version`` (a rollback without deleting anything)."""
        with self._lock(name):
            demoted = self.get(name, version).model_copy(update={"promoted": False})
            self._write(demoted)
            self._bump_generation()
            return demoted

    def generation(self) -> str:
        """A token that changes whenever a version is promoted or demoted ("" before the first)."""
        try:
            return (self.root / GENERATION_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def _bump_generation(self) -> None:
        tmp = self.root / f".{GENERATION_FILE}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(uuid.uuid4().hex, encoding="utf-8")
        os.replace(tmp, self.root / GENERATION_FILE)

    def promoted(self) -> builtins.list[ModelManifest]:
        """The serving version of each name (the latest promoted one if a promote is in flight)."""
        best: dict[str, ModelManifest] = {}
        for manifest in self.list():
            if manifest.promoted and (
                manifest.name not in best or manifest.promoted_at > best[manifest.name].promoted_at
            ):
                best[manifest.name] = manifest
        return [best[n] for n in sorted(best)]

    def promoted_specs(self) -> builtins.list[ModelSpec]:
        """Registry entries for the serving versions: local path as source, pinned by checksum."""
        return [m.to_spec(self.path(m.name, m.version)) for m in self.promoted()]

    def _write(self, manifest: ModelManifest) -> None:
        _write_json_atomic(self.path(manifest.name, manifest.version) / MANIFEST_FILE, manifest.model_dump(mode="json"))

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """Serialise manifest updates of one name across processes (flock on ``<name>/.lock``)."""
        model_dir = self.root / _safe(name, "model name")
        if not model_dir.is_dir():
            raise NotFound(f"no model {name!r} in {self.root}")
        with (model_dir / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _read_manifest(path: Path) -> ModelManifest:
    try:
        return ModelManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise FailedPrecondition(f"corrupt model manifest {path}: {exc}") from exc


def _write_json_atomic(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe(value: str, what: str) -> str:
    if not _SAFE_NAME.match(value):
        raise InvalidArgument(f"{what} {echo(value)} must be 1-128 characters of letters, digits, '.', '_', '-'")
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
