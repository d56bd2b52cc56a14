"""The command line against the running test cluster (click's runner, in-process)."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import grpc
import numpy as np
import pytest
from click.testing import CliRunner

from embedfleet.client import cli
from embedfleet.client.cli import main
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.local import LocalCluster


@pytest.fixture(scope="module")
def cluster(celery_system: LocalCluster) -> LocalCluster:
    """The CLI only talks gRPC: one backend is enough."""
    return celery_system


def _run(cluster: LocalCluster, *args: str) -> tuple[int, str]:
    cli.console.width = 200  # tables would otherwise be cut to the runner's 80 columns
    result = CliRunner().invoke(main, ["--gateway", cluster.gateway_address, *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_index_search_jobs_and_models(cluster: LocalCluster, tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    lines = [{"id": f"c{i}", "text": t} for i, t in enumerate(["a cat on a mat", "stock prices fell", "a kitten"])]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in lines))
    collection = f"cli_{uuid.uuid4().hex[:8]}"
    code, out = _run(cluster, "index", str(corpus), "--collection", collection, "--name", "cli-test")
    assert code == 0 and "SUCCEEDED" in out
    code, out = _run(cluster, "search", collection, "a small cat", "--top-k", "2")
    assert code == 0 and "c2" in out and "c1" not in out
    code, out = _run(cluster, "jobs", "list", "--state", "succeeded")
    assert code == 0 and "cli-test" in out
    code, out = _run(cluster, "models")
    assert code == 0 and "all-MiniLM-L6-v2" in out and "teacher" in out


def test_embed_to_npy(cluster: LocalCluster, tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": str(i), "text": f"text {i}"}) + "\n" for i in range(5)))
    code, _ = _run(cluster, "embed", str(corpus), "-o", str(tmp_path / "v.npy"), "--precision", "float16")
    assert code == 0
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (5, 384) and vectors.dtype == np.float16


def test_errors_are_one_line_and_exit_nonzero(cluster: LocalCluster, tmp_path: Path) -> None:
    code, out = _run(cluster, "jobs", "get", "f" * 32)
    assert code == cli.EXIT_BY_CODE[grpc.StatusCode.NOT_FOUND] == 4 and "NOT_FOUND" in out and "Traceback" not in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    code, out = _run(cluster, "index", str(bad), "--collection", "cli_bad")
    assert code == cli.EXIT_LOCAL_INPUT == 3 and "bad.jsonl:1: not valid JSON" in out


def test_eval_command(cluster: LocalCluster) -> None:
    code, out = _run(cluster, "eval", "teacher", "--eval-limit", "50")
    assert code == 0 and "lee_spearman" in out and "ndcg_at_10" in out


def test_json_output_for_scripts(cluster: LocalCluster, tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"j{i}", "text": f"json text {i}"}) + "\n" for i in range(3)))
    collection = f"cli_{uuid.uuid4().hex[:8]}"
    code, out = _run(cluster, "--json", "index", str(corpus), "--collection", collection)
    job = json.loads(out)
    assert code == 0 and job["state"] == "SUCCEEDED" and job["done"] == 3
    code, out = _run(cluster, "--json", "jobs", "get", job["id"])
    assert code == 0 and json.loads(out)["id"] == job["id"]
    code, out = _run(cluster, "--json", "jobs", "list", "--limit", "50")
    assert code == 0 and job["id"] in [j["id"] for j in json.loads(out)]
    code, out = _run(cluster, "--json", "search", collection, "json text 1", "--top-k", "1")
    assert code == 0 and json.loads(out)["hits"][0]["id"] == "j1"
    code, out = _run(cluster, "--json", "models")
    assert code == 0 and json.loads(out)[0]["name"] == "all-MiniLM-L6-v2"
    code, out = _run(cluster, "--json", "jobs", "get", "0" * 32)
    assert code == 4 and json.loads(out)["error"]["code"] == "NOT_FOUND"


def test_completion_and_exit_codes_in_help(cluster: LocalCluster) -> None:
    code, out = _run(cluster, "completion", "bash")
    assert code == 0 and "_EMBEDFLEET_COMPLETE" in out
    code, out = _run(cluster, "--help")
    assert code == 0 and "Exit codes" in out


def test_status_shows_workers_queue_and_running_jobs(cluster: LocalCluster, wordnet_docs: list[dict]) -> None:
    corpus_docs = wordnet_docs[:1000]
    with EmbedfleetClient(cluster.gateway_address) as client:
        job = client.submit_index(corpus_docs, f"cli_status_{uuid.uuid4().hex[:8]}", chunk_size=10)
        try:
            code, out = _run(cluster, "status", "--json")  # 100 chunks on one CPU worker: still running
            assert code == 0
            status = json.loads(out)
            [worker] = [w for w in status["workers"] if w["worker_id"].startswith("local-0-")]
            assert worker["device"] == "cpu" and "all-MiniLM-L6-v2" in worker["models"]
            assert worker["metrics_address"] == f"127.0.0.1:{cluster.worker_metrics_ports[0]}"
            [listed] = [j for j in status["jobs"] if j["id"] == job.id]
            assert listed["state"] in ("QUEUED", "RUNNING") and listed["total"] == 1000
            assert status["active_jobs"] >= 1
            assert 0 < status["parts_queued"] + status["parts_running"] <= 100
            code, out = _run(cluster, "status")
            assert code == 0 and job.id in out and "local-0-" in out and "chunk(s) waiting" in out
        finally:
            client.cancel_job(job.id)
    code, out = _run(cluster, "status", "--json")
    assert job.id not in [j["id"] for j in json.loads(out)["jobs"]]  # cancelled: no longer active


def test_index_by_reference_and_resume(cluster: LocalCluster) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = cluster.data_dir / "data" / f"cli-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": ["r1", "r2"], "text": ["a red fox", "a blue whale"]}), folder / "c.parquet")
    collection = f"cli_{uuid.uuid4().hex[:8]}"
    code, out = _run(cluster, "index", f"{folder.name}/c.parquet", "--by-reference", "--collection", collection)
    assert code == 0 and "SUCCEEDED" in out
    job_id = re.search(r"\b[0-9a-f]{32}\b", out).group(0)  # type: ignore[union-attr]
    code, out = _run(cluster, "jobs", "resume", job_id)
    assert code != 0 and "only FAILED or CANCELLED jobs can be resumed" in out


def test_index_with_extra_fields_renamed_columns_and_dedup_on_ingest(cluster: LocalCluster) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = cluster.data_dir / "data" / f"cli-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    texts = ["a red fox runs", "a red fox runs", "a blue whale sings"]  # the second is the first again
    pq.write_table(pa.table({"idx": ["h1", "h2", "h3"], "sentence": texts}), folder / "hub.parquet")
    collection = f"cli_{uuid.uuid4().hex[:8]}"
    args = ["index", f"{folder.name}/hub.parquet", "--by-reference", "--collection", collection]
    args += ["--column", "id=idx", "--column", "text=sentence", "--extra-field", "codes:384:int8"]
    args += ["--extra-field", "bits::binary:rotated", "--dedup-threshold", "0.99"]
    code, out = _run(cluster, *args)
    assert code == 0 and "SUCCEEDED" in out, out
    code, out = _run(cluster, "--json", "collections", "get", collection)
    described = json.loads(out)
    assert described["row_count"] == 2  # the repeat skipped on ingest
    assert [(f["name"], f["dimensions"], f["precision"], f["bits"]) for f in described["fields"]] == [
        ("codes", 384, "int8", "axes"),
        ("bits", 384, "binary", "rotated"),
    ]
    bad_args = (["--extra-field", "v:x"], ["--extra-field", "b::binary:r:x"], ["--column", "text"])
    for bad in (*bad_args, ["--index-param", "M=many"]):
        code, out = _run(cluster, "index", "c.jsonl", "--collection", collection, *bad)
        assert code == 2 and "use " in out, out
