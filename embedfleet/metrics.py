"""Every Prometheus metric of embedfleet, defined once.

Names and units follow the Prometheus conventions: an ``embedfleet_`` namespace, base units in the
name (``_seconds``), ``_total`` on counters, labels only with a small fixed set of values (RPC method
and status code, model name, job/part state, Redis error class), never ids.

Process metrics (RPCs, embedding, Milvus writes, Redis errors) live in prometheus-client's default
registry and count what *this* process did. The job and part gauges are different: they are what the
job store knows, read at scrape time by ``JobStoreCollector`` (a gateway registers it), so every
gateway of a deployment exports the same store-wide figures: aggregate them with ``max``, not ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the job store imports this module (its Redis error counter)
    from embedfleet.jobstore import JobStore

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_COUNT_BUCKETS = tuple(float(2**i) for i in range(13))  # 1 .. 4096 texts
_TOKEN_BUCKETS = tuple(float(2**i) for i in range(4, 21))  # 16 .. ~1M tokens

RPC_REQUESTS = Counter(
    "embedfleet_rpc_requests_total",
    "gRPC calls the gateway answered, by full method name and final status code.",
    ["method", "code"],
)
TENANT_RPC_REQUESTS = Counter(
    "embedfleet_tenant_rpc_requests_total",
    "gRPC calls by the caller's tenant ('' with auth off, or for a call refused before its key was accepted), "
    "full method name and final status code: who uses the shared deployment, and who is refused.",
    ["tenant", "method", "code"],
)
RPC_DURATION = Histogram(
    "embedfleet_rpc_duration_seconds",
    "Time from a call's arrival to its last response message (whole stream for streaming RPCs).",
    ["method"],
    buckets=_LATENCY_BUCKETS,
)
DOCUMENTS_EMBEDDED = Counter(
    "embedfleet_documents_embedded_total",
    "Texts a model encoded for a part or an Embed request (calibration texts not counted).",
    ["model"],
)
TOKENS_EMBEDDED = Counter(
    "embedfleet_tokens_embedded_total",
    "Tokens the model processed for those texts (after truncation to its window, without padding).",
    ["model"],
)
BATCH_SIZE = Histogram(
    "embedfleet_batch_size",
    "Texts per forward pass (a token-budget batch of a part or of one Embed request).",
    ["model"],
    buckets=_COUNT_BUCKETS,
)
BATCH_TOKENS = Histogram(
    "embedfleet_batch_tokens",
    "Tokens per forward pass (after truncation, without padding).",
    ["model"],
    buckets=_TOKEN_BUCKETS,
)
MODEL_FORWARD = Histogram(
    "embedfleet_model_forward_seconds",
    "Time a model took to encode one call's texts (tokenizing and every forward pass).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
MILVUS_WRITE = Histogram(
    "embedfleet_milvus_write_seconds",
    "Time to write one part's rows into Milvus (every upsert request, and on a process's first write to a "
    "collection, checking it), successful or not.",
    buckets=_LATENCY_BUCKETS,
)
MILVUS_WRITE_ERRORS = Counter(
    "embedfleet_milvus_write_errors_total",
    "Milvus upserts that failed (the part is retried; upserts make the retry safe).",
)
REDIS_ERRORS = Counter(
    "embedfleet_redis_errors_total",
    "Failed Redis operations of the job store, by error class (ConnectionError, TimeoutError, ResponseError).",
    ["error"],
)
# Known label values exported at 0 from the start, so an alert on their rate sees a series before the first error.
for _error in ("ConnectionError", "TimeoutError", "ResponseError"):
    REDIS_ERRORS.labels(_error)


class JobStoreCollector(Collector):
    """``embedfleet_jobs{state}`` and ``embedfleet_parts{state}``, read from the job store at scrape time.

    ``embedfleet_parts{state=~"pending|queued|running"}`` summed is the autoscaling signal for Celery
    workers (the chart's KEDA docs point here): a Redis-list length misses the messages workers have
    prefetched, while the job store counts every part that is not finished, wherever it sits.
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        activity = self.store.activity()
        jobs = GaugeMetricFamily(
            "embedfleet_jobs", "Active jobs in the job store, by state (QUEUED, RUNNING).", labels=["state"]
        )
        for state, count in sorted(activity.jobs.items()):
            jobs.add_metric([state], count)
        parts = GaugeMetricFamily(
            "embedfleet_parts",
            "Parts of active jobs by state: pending (not yet in the queue), queued, running, done, failed.",
            labels=["state"],
        )
        for state, count in sorted(activity.parts.items()):
            parts.add_metric([state], count)
        yield jobs
        yield parts
