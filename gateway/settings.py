"""Settings of the gateway process (``EMBEDFLEET_*`` variables or the shared config file)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from embedfleet.gateway.quotas import UNLIMITED, TenantQuota
from embedfleet.settings import CommonSettings
from embedfleet.storable import MILVUS_MAX_JSON_BYTES

# Threads always left for unary calls and health checks, whatever the open streams hold.
MIN_UNARY_THREADS = 4


class GatewaySettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    # TLS: the server's certificate chain and key (PEM); with a client CA as well, clients must present a
    # certificate it signed (mutual TLS). Unset: plaintext, for loopback and trusted networks only.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = None
    # The OpenAI-compatible HTTP endpoint (POST /v1/embeddings) on the same host; None = off, 0 = a free port.
    openai_port: int | None = Field(default=None, ge=0, le=65535)
    # Threads serving RPCs; each open WatchJob/StreamJobResults holds one.
    max_workers: int = Field(default=32, gt=0)
    # Open WatchJob/StreamJobResults calls at once; more get RESOURCE_EXHAUSTED. Kept below
    # max_workers so health checks and unary calls always find a thread.
    max_streams: int = Field(default=16, gt=0)
    # Largest gRPC message accepted (a DocumentBatch or EmbedRequest); larger ones get RESOURCE_EXHAUSTED.
    max_message_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_documents_per_job: int = Field(default=1_000_000, gt=0)
    max_text_bytes: int = Field(default=1024 * 1024, gt=0)
    # Largest metadata object of one document, in bytes of JSON; Milvus stores at most 65,536.
    max_metadata_bytes: int = Field(default=MILVUS_MAX_JSON_BYTES, gt=0, le=MILVUS_MAX_JSON_BYTES)
    default_chunk_size: int = Field(default=256, gt=0)
    # Streamed documents are spilled to the dataset store in Parquet shards of about this many
    # documents (whole parts; one part's documents are what the gateway holds at a time).
    spill_shard_documents: int = Field(default=65536, gt=0)
    max_chunk_size: int = Field(default=4096, gt=0)
    # Parts of jobs that leave chunk_size unset hold about this many estimated tokens (at most
    # max_chunk_size documents): ~2 s of MiniLM-L6 on 2 CPU cores. 0 = parts of default_chunk_size documents.
    part_tokens: int = Field(default=16384, ge=0)
    max_embed_texts: int = Field(default=256, gt=0)
    # Longest search filter expression accepted (a huge expression ties Milvus up long after the client gave up).
    max_filter_bytes: int = Field(default=8192, gt=0)
    # Most rows a cluster job may give HDBSCAN (its time and memory grow with the square of the rows);
    # larger selections are FAILED_PRECONDITION, pointing to k-means.
    max_hdbscan_rows: int = Field(default=50_000, gt=0)
    # How long Embed waits for a worker before DEADLINE_EXCEEDED (a shorter client deadline wins).
    embed_timeout_seconds: float = Field(default=30.0, gt=0)
    # Server-side corpus paths (CorpusSource.path) must lie under one of these; empty disables them.
    allowed_corpus_dirs: tuple[Path, ...] = ()
    # Queries/pairs sampled from the evaluation data when a job does not say (quality gate, EvaluateModel).
    default_eval_limit: int = Field(default=500, gt=0)
    # The same for a distillation's promotion gate: all 2,000 WordNet queries over 20,000 definitions. The
    # same student kept 0.890 of the teacher's recall@10 on 500 queries over 5,000 definitions and 0.921 on
    # the whole set: a 0.95 gate needs the larger sample; its minutes of encoding are small beside training.
    distill_eval_limit: int = Field(default=2000, gt=0)
    # How often chunks never handed to the queue (a crash mid-submission) are dispatched again, live
    # jobs' TTLs refreshed and abandoned submissions' inputs deleted. (Parts whose worker died are
    # looked for every third of ``part_lease_seconds``.)
    recovery_interval_seconds: float = Field(default=30.0, gt=0)
    # A submission still streaming refreshes its staging marker every third of this; inputs staged by
    # one whose marker lapsed (its gateway died mid-stream) and that never became a job are deleted.
    staging_lease_seconds: float = Field(default=60.0, gt=0)
    # Most chunks of one job queued or running at once (0: every chunk at submission, first come first
    # served). A job behind a large one waits for at most this many of its chunks. Keep it above the
    # number of worker processes (Celery) or actors (Ray) one job should be able to use at once.
    dispatch_window: int = Field(default=8, ge=0)
    # How often active jobs are topped up to their window as their chunks finish.
    dispatch_interval_seconds: float = Field(default=0.25, gt=0)

    @model_validator(mode="after")
    def _threads_left_for_unary_calls(self) -> Self:
        if self.max_workers < self.max_streams + MIN_UNARY_THREADS:
            raise ValueError(
                f"max_workers ({self.max_workers}) must be at least max_streams ({self.max_streams}) + "
                f"{MIN_UNARY_THREADS}: open streams would leave no thread for health checks and unary calls"
            )
        return self

    # How often the data of jobs whose records expired is removed from the dataset store, and how
    # recent a job directory without a record may be and still be kept (a submission streaming in).
    data_sweep_interval_seconds: float = Field(default=600.0, gt=0)
    data_grace_seconds: float = Field(default=6 * 3600.0, gt=0)

    # API keys (``embedfleet keys``): every call needs a key bound to a tenant and a role, and sees only
    # its tenant's jobs and collections. Off only for single-user loopback runs (``embedfleet up``, the
    # demo, the tests), which say so on start-up.
    auth: bool = True
    # Each tenant's limits (``gateway/quotas.py``), unless ``tenant_quotas`` names the tenant.
    quota: TenantQuota = TenantQuota()
    tenant_quotas: dict[str, TenantQuota] = Field(default_factory=dict)

    def quota_for(self, tenant: str) -> TenantQuota:
        """The tenant's limits; tenant "" (auth off: one user) has none beyond the gateway-wide ones."""
        if not tenant:
            return UNLIMITED
        return self.tenant_quotas.get(tenant, self.quota)
