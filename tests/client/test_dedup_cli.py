"""`embedfleet dedup` and `embedfleet dedup-export` against the running test cluster (one backend: the CLI
only talks gRPC)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from click.testing import CliRunner

from embedfleet.client.cli import main
from embedfleet.local import LocalCluster


def _run(cluster: LocalCluster, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--gateway", cluster.gateway_address, *args], catch_exceptions=False)
    return result.exit_code, result.stdout


def test_dedup_dry_run_and_export(celery_system: LocalCluster, tmp_path: Path) -> None:
    texts = ["A cat sat on the mat.", "a cat sat on the mat", "Stock prices fell sharply."]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": f"c{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    collection = f"cli_dedup_{uuid.uuid4().hex[:8]}"
    assert _run(celery_system, "index", str(corpus), "--collection", collection)[0] == 0
    out_jsonl = tmp_path / "groups.jsonl"
    code, out = _run(celery_system, "--json", "dedup", collection, "--threshold", "0.95", "-o", str(out_jsonl))
    job = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and job["state"] == "SUCCEEDED" and job["outputs"]["removed"] == "0"
    assert [json.loads(line)["removed_ids"] for line in out_jsonl.read_text().splitlines()] == [["c1"]]
    code, _ = _run(celery_system, "dedup-export", job["id"], "-o", str(tmp_path / "groups.parquet"))
    assert code == 0 and pq.read_table(tmp_path / "groups.parquet").column("kept_id").to_pylist() == ["c0"]
    code, out = _run(celery_system, "--json", "dedup", collection, "--threshold", "1.5")
    assert code != 0 and "(0, 1]" in out
