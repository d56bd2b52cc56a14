"""The metrics a process exports: job-store gauges read at scrape time, Redis errors counted where
redis-py meets the server, encode calls, and the /metrics HTTP server (real Redis, real sockets)."""

from __future__ import annotations

import os
import urllib.request
import uuid

import pytest
import redis
from fakes import FAKE_SPEC, HashEncoder
from prometheus_client import REGISTRY, CollectorRegistry

from embedfleet.domain import EmbeddingOptions, EmbedParams, InputType, JobSpec
from embedfleet.jobstore import JobStore
from embedfleet.local import free_port
from embedfleet.metrics import JobStoreCollector
from embedfleet.metrics_server import gateway_registry, serve_metrics
from embedfleet.worker.embedding import embed_texts

REDIS_URL = os.environ.get("EMBEDFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _job(store: JobStore, parts: int) -> str:
    job_id = uuid.uuid4().hex
    spec = JobSpec(params=EmbedParams(), embedding=EmbeddingOptions(model=FAKE_SPEC.name), part_size=1)
    store.create_job(job_id, spec, total=parts, parts=parts)
    return job_id


def _value(name: str, labels: dict[str, str] | None = None, registry: CollectorRegistry = REGISTRY) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


def test_job_and_part_gauges_are_what_the_store_knows(store: JobStore) -> None:
    registry = CollectorRegistry()
    registry.register(JobStoreCollector(store))
    assert _value("embedfleet_parts", {"state": "pending"}, registry) == 0  # present at 0, not absent
    first, finished = _job(store, 4), _job(store, 1)
    _job(store, 2)  # never dispatched
    store.mark_dispatched(first, [0, 1, 2, 3])
    store.start_part(first, 0)
    store.finish_part(first, 1, done=1, failed=0, truncated=0)
    store.start_part(finished, 0)
    store.finish_part(finished, 0, done=1, failed=0, truncated=0)  # SUCCEEDED: no longer active
    cancelled = _job(store, 3)
    store.cancel(cancelled)

    assert _value("embedfleet_jobs", {"state": "RUNNING"}, registry) == 1  # first
    assert _value("embedfleet_jobs", {"state": "QUEUED"}, registry) == 1
    assert _value("embedfleet_parts", {"state": "running"}, registry) == 1
    assert _value("embedfleet_parts", {"state": "queued"}, registry) == 2
    assert _value("embedfleet_parts", {"state": "pending"}, registry) == 2
    assert _value("embedfleet_parts", {"state": "done"}, registry) == 1
    assert store.activity().parts_waiting == 4


def test_redis_errors_are_counted_by_class() -> None:
    def errors(kind: str) -> float:
        return _value("embedfleet_redis_errors_total", {"error": kind})

    dead = JobStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "eftest-dead:", 60)  # nothing listens there
    before = errors("ConnectionError")
    with pytest.raises(redis.ConnectionError):
        dead.r.ping()
    assert errors("ConnectionError") > before

    live = JobStore.from_url(REDIS_URL, "eftest-unused:", 60)
    before = errors("ResponseError")
    with pytest.raises(redis.ResponseError):
        live.r.execute_command("EMBEDFLEET-NO-SUCH-COMMAND")
    assert errors("ResponseError") == before + 1
    # A script the server has not cached yet: redis-py's NoScriptError-then-load is not a failure.
    script = live.r.register_script(f"return 1 -- {uuid.uuid4().hex}")
    assert script() == 1
    assert errors("ResponseError") == before + 1 and errors("NoScriptError") == 0


def test_an_encode_call_is_counted_once() -> None:
    model = {"model": FAKE_SPEC.name}
    before = {
        name: _value(name, model)
        for name in (
            "embedfleet_documents_embedded_total",
            "embedfleet_tokens_embedded_total",
            "embedfleet_batch_size_count",
            "embedfleet_batch_size_sum",
            "embedfleet_batch_tokens_sum",
            "embedfleet_model_forward_seconds_count",
        )
    }
    encoder = HashEncoder()
    encoder.calibration_vectors()  # calibration is not user work: not counted
    embed_texts(encoder, ["one two three", "four five", "a b c d e f g h i j"], input_type=InputType.DOCUMENT)
    delta = {name: _value(name, model) - value for name, value in before.items()}
    assert delta == {
        "embedfleet_documents_embedded_total": 3,
        "embedfleet_tokens_embedded_total": 3 + 2 + 8,  # the last text is cut to the model's 8 tokens
        "embedfleet_batch_size_count": 1,
        "embedfleet_batch_size_sum": 3,
        "embedfleet_batch_tokens_sum": 13,
        "embedfleet_model_forward_seconds_count": 1,
    }


def test_metrics_server_serves_the_gateway_registry(store: JobStore) -> None:
    assert serve_metrics("127.0.0.1", 0, CollectorRegistry()) is None  # port 0: off
    server = serve_metrics("127.0.0.1", free_port(), gateway_registry(store))
    assert server is not None
    try:
        with pytest.raises(OSError):
            serve_metrics("127.0.0.1", server.port, CollectorRegistry())  # taken, and no fallback asked
        fallback = serve_metrics("127.0.0.1", server.port, CollectorRegistry(), free_port_if_taken=True)
        assert fallback is not None and fallback.port != server.port
        fallback.stop()
        text = urllib.request.urlopen(f"http://{server.address}/metrics", timeout=5).read().decode()
    finally:
        server.stop()
    assert 'embedfleet_parts{state="pending"} 0.0' in text  # the store's gauges
    assert "# TYPE embedfleet_rpc_requests_total counter" in text  # and the process's metrics
