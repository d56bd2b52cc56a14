"""Settings of a worker process (``EMBEDFLEET_*`` variables or the shared config file)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field

from embedfleet.settings import CommonSettings


class WorkerSettings(CommonSettings):
    worker_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    # "auto" picks CUDA when torch sees a GPU, else the CPU.
    device: str = "auto"
    # Models loaded at start-up (so the first chunk does not pay for loading); empty = the default model.
    preload_models: tuple[str, ...] = ()
    # Most texts per forward pass; 0 = the device's default (worker/models/batching.py).
    encode_batch_size: int = Field(default=0, ge=0)
    # Padded tokens per forward pass (longest x count), for every model; 0 = the registry entry's
    # cpu_/cuda_token_budget, else the device's default (1024 on CPU, 16384 on CUDA).
    token_budget: int = Field(default=0, ge=0)
    # torch's forward type on CUDA (served only past the agreement gate with fp32); the CPU runs fp32.
    cuda_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    # Documents per Milvus upsert inside a part: forward passes run while earlier rows are written.
    write_rows: int = Field(default=128, gt=0)
    # Where model backends keep what they derive from weights (exported ONNX graphs), per weights checksum.
    model_cache_dir: Path = Path(".embedfleet/cache")
    # Milvus refuses requests over 64 MB; upserts are split well below that.
    milvus_max_batch_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # A chunk that hits a transient error (Milvus or Redis unreachable) is retried this many times.
    max_chunk_attempts: int = Field(default=5, gt=0)
    # Every Milvus call of a part ends within this (pymilvus alone retries an unreachable server ~200 s).
    milvus_call_timeout_seconds: float = Field(default=30.0, gt=0)
    # Once a part finds Milvus unreachable, parts that need it wait up to this long for it to answer a
    # probe again (an outage costs no attempts meanwhile); past it they fail at once (worker/milvus_guard.py).
    milvus_outage_budget_seconds: float = Field(default=60.0, ge=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    # A distill part checkpoints every this many training steps (about a minute of CPU training): a killed
    # worker's part resumes from there on the next worker.
    distill_checkpoint_steps: int = Field(default=100, gt=0)
    # Celery worker processes on this node, each with its own copy of the models.
    concurrency: int = Field(default=1, gt=0)
    queues: tuple[str, ...] = ()
    # Labelled evaluation data (see ../shared/data); None: $EMBEDFLEET_EVAL_DATA or ../shared/data.
    eval_data_dir: Path | None = None
