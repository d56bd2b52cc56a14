"""Operating the real system: the gateway's and a Celery worker's /metrics after a real index job, and
the worker's JSON log lines naming the job and part they belong to."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster

MODEL = {"model": "all-MiniLM-L6-v2"}
SUBMIT = {"method": "embedfleet.v1.JobService/SubmitIndexJob"}
GET = {"method": "embedfleet.v1.JobService/GetJob"}


class Scrape:
    """One /metrics page: sample values by name and labels, and the metric names it declares."""

    def __init__(self, port: int) -> None:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        families = list(text_string_to_metric_families(text))
        self.names = {f.name for f in families}
        self.samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.samples.get((name, frozenset((labels or {}).items())), 0.0)


@pytest.fixture(scope="module")
def cluster(celery_system: LocalCluster) -> LocalCluster:
    return celery_system


def test_gateway_and_worker_metrics_after_a_real_job(cluster: LocalCluster, wordnet_docs: list[dict]) -> None:
    gateway_port, worker_port = cluster.gateway_metrics_port, cluster.worker_metrics_ports[0]
    gateway_before, worker_before = Scrape(gateway_port), Scrape(worker_port)
    docs = wordnet_docs[:100]
    with EmbedfleetClient(cluster.gateway_address, timeout=120) as client:
        job = client.index(docs, collection=f"ops_{uuid.uuid4().hex[:8]}", chunk_size=25)
        assert job.state == JobState.SUCCEEDED, job.error
        with pytest.raises(grpc.RpcError):
            client.get_job("0" * 32)
    gateway, worker = Scrape(gateway_port), Scrape(worker_port)

    def gateway_delta(name: str, labels: dict[str, str]) -> float:
        return gateway.value(name, labels) - gateway_before.value(name, labels)

    assert gateway_delta("embedfleet_rpc_requests_total", {**SUBMIT, "code": "OK"}) == 1
    assert gateway_delta("embedfleet_rpc_duration_seconds_count", SUBMIT) == 1
    assert gateway_delta("embedfleet_rpc_requests_total", {**GET, "code": "NOT_FOUND"}) == 1
    assert gateway.value("embedfleet_rpc_duration_seconds_sum", SUBMIT) > 0
    # The job store's view: the job is finished, so nothing of it waits or runs.
    assert {"embedfleet_jobs", "embedfleet_parts"} <= gateway.names
    assert gateway.value("embedfleet_parts", {"state": "running"}) == 0

    def worker_delta(name: str, labels: dict[str, str] | None = None) -> float:
        return worker.value(name, labels) - worker_before.value(name, labels)

    assert worker_delta("embedfleet_documents_embedded_total", MODEL) == 100
    # One observation per forward pass: at least one per part, more where a part passes the token budget.
    batches = worker_delta("embedfleet_batch_size_count", MODEL)
    assert batches >= 4
    assert worker_delta("embedfleet_batch_size_sum", MODEL) == 100
    tokens = worker_delta("embedfleet_tokens_embedded_total", MODEL)
    assert 100 * 4 < tokens < 100 * 256  # [CLS] + words + [SEP], within the model's window
    assert worker_delta("embedfleet_batch_tokens_sum", MODEL) == tokens
    assert worker_delta("embedfleet_model_forward_seconds_count", MODEL) == batches
    assert worker_delta("embedfleet_milvus_write_seconds_count") == 4
    assert worker_delta("embedfleet_milvus_write_errors_total") == 0
    assert worker.value("embedfleet_redis_errors_total", {"error": "ConnectionError"}) == 0  # exported at 0

    assert cluster.log_dir is not None
    log_path = cluster.log_dir / "worker-0.log"
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(raw) for raw in log_path.read_text().splitlines() if job.id in raw]
        done = sorted(line["part"] for line in lines if line["message"].startswith("part done"))
        if done == [0, 1, 2, 3] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert done == [0, 1, 2, 3]
    assert all(line["job_id"] == job.id and line["level"] for line in lines)
