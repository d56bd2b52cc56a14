"""Settings of the gateway process (``EMBEDFLEET_*`` variables or the shared config file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from embedfleet.settings import CommonSettings


class GatewaySettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    # Threads serving RPCs; each open WatchJob/StreamJobResults holds one.
    max_workers: int = Field(default=32, gt=0)
    # Largest gRPC message accepted (a DocumentBatch or EmbedRequest); larger ones get RESOURCE_EXHAUSTED.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_documents_per_job: int = Field(default=1_000_000, gt=0)
    max_text_bytes: int = Field(default=1024 * 1024, gt=0)
    default_chunk_size: int = Field(default=256, gt=0)
    # Streamed documents are spilled to the dataset store in Parquet shards of about this many
    # documents (whole parts; one part's documents are what the gateway holds at a time).
    spill_shard_documents: int = Field(default=65536, gt=0)
    max_chunk_size: int = Field(default=4096, gt=0)
    max_embed_texts: int = Field(default=256, gt=0)
    # Longest search filter expression accepted (a huge expression ties Milvus up long after the client gave up).
    max_filter_bytes: int = Field(default=8192, gt=0)
    # How long Embed waits for a worker before DEADLINE_EXCEEDED (a shorter client deadline wins).
    embed_timeout_seconds: float = Field(default=30.0, gt=0)
    # Server-side corpus paths (CorpusSource.path) must lie under one of these; empty disables them.
    allowed_corpus_dirs: tuple[Path, ...] = ()
    # Queries/pairs sampled from the evaluation data when a job does not say (quality gate, EvaluateModel).
    default_eval_limit: int = Field(default=500, gt=0)
    # How often chunks never handed to the queue (a crash mid-submission) are dispatched again.
    recovery_interval_seconds: float = Field(default=30.0, gt=0)
    # How often the data of jobs whose records expired is removed from the dataset store, and how
    # recent a job directory without a record may be and still be kept (a submission streaming in).
    data_sweep_interval_seconds: float = Field(default=600.0, gt=0)
    data_grace_seconds: float = Field(default=6 * 3600.0, gt=0)
