"""What a job costs Redis and the gateway at acceptance, before and after corpora moved to the dataset store.

    .venv/bin/python bench/data_plane.py --sizes 10000 100000 --runs 3 --before-python /tmp/efb/bin/python \\
        --streamed-only 1000000 --reference 1000000

Each measurement is one child process that builds a gateway core (real Redis, a dispatcher that queues
nothing, so broker messages are not counted) and accepts one embed job of N paragraphs (~475 bytes of text,
like the shared README's figure), then cancels it. It reports the Redis memory of every key the job created
(``MEMORY USAGE``), the growth of the process's peak RSS during acceptance, and the time to accept.
"before" runs the same child under an interpreter whose ``embedfleet`` is the branch start (staged in
Redis); "after" is this checkout (spilled to Parquet shards in the dataset store). Runs interleave before
and after; figures are medians. ``--reference N`` times accepting an N-row Parquet corpus by reference.
``--grpc N`` streams N documents through the SDK to a real gateway in the child (gRPC over 127.0.0.1, a
Celery dispatcher under the run's own key prefix, no worker), timed from the call to the accepted job;
its RSS figure holds the client's memory as well as the gateway's.

    .venv/bin/python bench/data_plane.py --sizes --grpc 100000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BASE_TEXTS = 1000


def _texts() -> list[str]:
    from corpora import wordnet_docs

    definitions = [str(d["text"]) for d in wordnet_docs(8 * BASE_TEXTS)]
    texts = []
    for i in range(BASE_TEXTS):
        text, j = "", i
        while len(text) < 475:
            text += definitions[j % len(definitions)] + ". "
            j += 7
        texts.append(text[:475])
    return texts


def _documents(n: int) -> Iterator[object]:
    from embedfleet.domain import Document

    texts = _texts()
    for i in range(n):
        yield Document(id=f"doc-{i:08d}", text=f"{i} {texts[i % BASE_TEXTS]}")


class _NoQueue:
    def dispatch_parts(self, job_id: str, parts: object) -> None:
        pass

    def dispatch_request(self, request_id: str) -> None:
        pass

    def close(self) -> None:
        pass


def _redis_usage(client: Any, prefix: str, skip: bytes | None = None) -> tuple[int, int]:
    """(keys, bytes by ``MEMORY USAGE``) under ``prefix``, leaving out keys whose name holds ``skip``."""
    keys = [k for k in client.scan_iter(match=f"{prefix}*", count=1000) if skip is None or skip not in k]
    return len(keys), sum(int(client.memory_usage(k) or 0) for k in keys)


def _delete_prefix(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for begin in range(0, len(keys), 1000):
        client.delete(*keys[begin : begin + 1000])


def child(n: int, redis_url: str, reference: str) -> dict[str, float]:
    """One acceptance in this process; every key and file it made is removed afterwards."""
    import redis

    from embedfleet.domain import EmbeddingOptions
    from embedfleet.gateway.context import GatewayContext
    from embedfleet.gateway.jobs import JobsCore
    from embedfleet.gateway.kinds.embed import EmbedJobRequest
    from embedfleet.gateway.settings import GatewaySettings
    from embedfleet.jobstore import JobStore

    prefix = f"efbench-{uuid.uuid4().hex[:8]}:"
    data = Path(tempfile.mkdtemp(prefix="efbench-")) if not reference else Path(reference).parent
    settings = GatewaySettings(
        redis_url=redis_url, key_prefix=prefix, data_uri=str(data), max_documents_per_job=10_000_000
    )
    client = redis.Redis.from_url(redis_url)
    store = JobStore(client, prefix, ttl_seconds=3600)

    def no_milvus() -> object:
        raise RuntimeError("no Milvus in this benchmark")

    core = JobsCore(GatewayContext(settings, store, _NoQueue(), no_milvus))
    documents = iter(()) if reference else _documents(n)
    if reference:
        from embedfleet.gateway.kinds.references import CorpusReference

        request = EmbedJobRequest(embedding=EmbeddingOptions(), reference=CorpusReference(uri=Path(reference).name))
    else:
        request = EmbedJobRequest(embedding=EmbeddingOptions())
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    snap = core.submit(request, documents)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    core.cancel(snap.id)
    keys, used = _redis_usage(client, prefix)
    _delete_prefix(client, prefix)
    if not reference:
        shutil.rmtree(data, ignore_errors=True)
    else:
        shutil.rmtree(data / "jobs", ignore_errors=True)
    return {
        "keys": keys,
        "redis_bytes": used,
        "rss_mb": rss_growth / 1024,
        "seconds": seconds,
        "parts": snap.parts_total,
    }


def child_grpc(n: int, redis_url: str) -> dict[str, float]:
    """One streamed submission of ``n`` documents over gRPC to a gateway in this process."""
    import redis

    from embedfleet.client.sdk import EmbedfleetClient
    from embedfleet.gateway.server import start_gateway
    from embedfleet.gateway.settings import GatewaySettings

    prefix = f"efbench-{uuid.uuid4().hex[:8]}:"
    data = Path(tempfile.mkdtemp(prefix="efbench-"))
    settings = GatewaySettings(
        redis_url=redis_url, key_prefix=prefix, data_uri=str(data), port=0, auth=False, max_documents_per_job=10_000_000
    )
    gateway = start_gateway(settings)
    client = redis.Redis.from_url(redis_url)
    try:
        docs = ({"id": d.id, "text": d.text} for d in _documents(n))  # type: ignore[attr-defined]
        with EmbedfleetClient(f"127.0.0.1:{gateway.port}", timeout=600) as sdk:
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            job = sdk.submit_embed(docs)
            seconds = time.perf_counter() - start
            rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
            sdk.cancel_job(job.id)
        keys, used = _redis_usage(client, prefix, skip=b":celery:")  # the broker's own keys are not the job's
        return {
            "keys": keys,
            "redis_bytes": used,
            "rss_mb": rss_growth / 1024,
            "seconds": seconds,
            "parts": job.chunks_total,
        }
    finally:
        gateway.stop(grace_s=0)
        _delete_prefix(client, prefix)
        shutil.rmtree(data, ignore_errors=True)


def _run(python: str, n: int, redis_url: str, reference: str = "", grpc: bool = False) -> dict[str, float]:
    args = [python, __file__, "--child", str(n), "--redis-url", redis_url, "--child-reference", reference]
    args += ["--child-grpc"] if grpc else []
    out = subprocess.run(args, check=True, capture_output=True, text=True, cwd=Path(__file__).parent).stdout
    return json.loads(out.strip().splitlines()[-1])


def _write_reference(n: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(tempfile.mkdtemp(prefix="efbench-ref-"))
    path = folder / "corpus.parquet"
    texts = _texts()
    with pq.ParquetWriter(path, pa.schema([("id", pa.string()), ("text", pa.string())])) as writer:
        for begin in range(0, n, 100_000):
            ids = range(begin, min(n, begin + 100_000))
            writer.write_table(
                pa.table({"id": [f"doc-{i:08d}" for i in ids], "text": [f"{i} {texts[i % BASE_TEXTS]}" for i in ids]})
            )
    return path


def _row(label: str, n: int, runs: list[dict[str, float]]) -> str:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    redis_mb, rss_mb = med["redis_bytes"] / 1e6, med["rss_mb"]
    return (
        f"| {label} | {n:,} | {int(med['parts']):,} | {int(med['keys']):,} | {redis_mb:,.2f} | "
        f"{med['redis_bytes'] / n:,.2f} | {rss_mb:,.1f} | {rss_mb * 1e6 / n:,.0f} | {med['seconds']:,.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before-python", default="", help="an interpreter whose embedfleet is the old code")
    parser.add_argument("--streamed-only", type=int, nargs="*", default=[], help="sizes measured after only")
    parser.add_argument("--reference", type=int, nargs="*", default=[], help="Parquet-by-reference sizes")
    parser.add_argument("--grpc", type=int, nargs="*", default=[], help="sizes streamed over gRPC to a gateway")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-reference", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child-grpc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measured = (
            child_grpc(args.child, args.redis_url)
            if args.child_grpc
            else child(args.child, args.redis_url, args.child_reference)
        )
        print(json.dumps(measured))
        return
    rows = []
    for n in args.sizes:
        results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for _ in range(args.runs):
            if args.before_python:
                results["before"].append(_run(args.before_python, n, args.redis_url))
            results["after"].append(_run(sys.executable, n, args.redis_url))
        if results["before"]:
            rows.append(_row("before: staged in Redis", n, results["before"]))
        rows.append(_row("after: spilled to shards", n, results["after"]))
    for n in args.streamed_only:
        rows.append(_row("after: spilled to shards", n, [_run(sys.executable, n, args.redis_url)]))
    for n in args.reference:
        path = _write_reference(n)
        try:
            runs = [_run(sys.executable, n, args.redis_url, str(path)) for _ in range(args.runs)]
            rows.append(_row("after: Parquet by reference", n, runs))
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
    for n in args.grpc:
        runs = [_run(sys.executable, n, args.redis_url, grpc=True) for _ in range(args.runs)]
        rows.append(_row("after: streamed over gRPC (SDK -> gateway)", n, runs))
    header = "| submission | documents | parts | Redis keys | Redis MB | Redis B/doc | peak RSS growth MB | RSS B/doc"
    print(header + " | accept s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
