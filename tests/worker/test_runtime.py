"""The worker process's start-up (``worker/runtime.py``), with the real packaged model."""

from __future__ import annotations

from pathlib import Path

from embedfleet.worker.runtime import build_runtime
from embedfleet.worker.settings import WorkerSettings


def test_preload_encodes_the_calibration_texts(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    """Before this, the first int8 Embed of a worker encoded the 512 calibration texts inside its 30 s
    deadline, and missed it on a loaded machine; preload pays for them at start-up."""
    settings = WorkerSettings(redis_url=redis_url, key_prefix=key_prefix, model_cache_dir=tmp_path, device="cpu")
    runtime = build_runtime(settings)
    runtime.preload()
    registry = settings.registry()
    encoder = runtime.host.get(registry.resolve(registry.default))
    assert encoder._calibration is not None  # type: ignore[attr-defined]
