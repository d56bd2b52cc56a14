"""Settings of a worker process (``EMBEDFLEET_*`` variables or the shared config file)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field

from embedfleet.settings import CommonSettings


class WorkerSettings(CommonSettings):
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # "auto" picks CUDA when torch sees a GPU, else the CPU.
    device: str = "auto"
    # Models loaded at start-up (so the first chunk does not pay for loading); empty = the default model.
    preload_models: tuple[str, ...] = ()
    encode_batch_size: int = Field(default=32, gt=0)
    # Where model backends keep what they derive from weights (exported ONNX graphs), per weights checksum.
    model_cache_dir: Path = Path(".embedfleet/cache")
    # Milvus refuses requests over 64 MB; upserts are split well below that.
    milvus_max_batch_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # A chunk that hits a transient error (Milvus or Redis unreachable) is retried this many times.
    max_chunk_attempts: int = Field(default=5, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    # Celery worker processes on this node, each with its own copy of the models.
    concurrency: int = Field(default=1, gt=0)
    queues: tuple[str, ...] = ()
    # Labelled evaluation data (see ../shared/data); None: $EMBEDFLEET_EVAL_DATA or ../shared/data.
    eval_data_dir: Path | None = None
