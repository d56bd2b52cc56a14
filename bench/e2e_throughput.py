"""End-to-end index throughput vs. the model alone, measured in the same run.

    .venv/bin/python bench/e2e_throughput.py --docs 2000 --runs 3
    .venv/bin/python bench/e2e_throughput.py --docs 100000 --runs 1 --by-reference 8 --latency-calls 0

Baseline: one ``SentenceTransformer.encode`` over the same texts in this process (batch 32, which sorts
by length: the fastest plain use of the model). System: the same texts as an index job through the
gateway, Celery on Redis, one worker process and Milvus Lite, timed from submit to SUCCEEDED on the
client. With ``--by-reference N`` the corpus is N Parquet files in the dataset store that the job names
(``source.uri``): the workers read their parts, nothing is streamed through the gateway. Runs alternate
between the two so drift on a shared machine hits both; medians are reported with their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from corpora import wordnet_docs
from sentence_transformers import SentenceTransformer

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster
from embedfleet.registry import DEFAULT_MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--latency-calls", type=int, default=50, help="unary Embed calls to time")
    parser.add_argument(
        "--by-reference", type=int, default=0, metavar="FILES", help="index from this many Parquet files by reference"
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()

    docs = wordnet_docs(args.docs)
    texts = [str(d["text"]) for d in docs]
    model = SentenceTransformer(str(DEFAULT_MODELS[0].local_path()), device="cpu")
    model.encode(texts[:64])  # warm-up

    baseline: list[float] = []
    system: list[float] = []
    server_side: list[float] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            data_dir=Path(tmp),
            redis_url=args.redis_url,
            key_prefix=f"efbench-{uuid.uuid4().hex[:8]}:",
            gateway_port=0,
            milvus_port=0,
            log_dir=Path(tmp) / "logs",
        ) as cluster,
        EmbedfleetClient(cluster.gateway_address, timeout=600) as client,
    ):
        client.index(docs[:64], "bench_warmup")  # warm the worker (model, collection path)
        source = write_corpus(cluster, docs, args.by_reference) if args.by_reference else ""
        for run in range(args.runs):
            start = time.perf_counter()
            model.encode(texts, batch_size=32, normalize_embeddings=True)
            baseline.append(len(texts) / (time.perf_counter() - start))

            start = time.perf_counter()
            collection = f"bench_{run}_{uuid.uuid4().hex[:6]}"
            if source:
                job = client.index(None, collection, source_uri=source, chunk_size=args.chunk_size)
            else:
                job = client.index(docs, collection, chunk_size=args.chunk_size)
            elapsed = time.perf_counter() - start
            if job.state != JobState.SUCCEEDED or job.done != len(docs):
                sys.exit(f"benchmark job ended {job.state} with {job.done}/{len(docs)} done: {job.error}")
            system.append(len(docs) / elapsed)
            server_side.append(job.docs_per_second)
            print(
                f"run {run + 1}: encode {baseline[-1]:.1f} docs/s, index job {system[-1]:.1f} docs/s "
                f"(server-side {server_side[-1]:.1f})",
                file=sys.stderr,
            )
        queries = [str(d["text"]) for d in docs[: args.latency_calls]]
        direct_ms, unary_ms = [], []
        for query in queries:  # alternate, one query at a time, as an interactive caller would
            start = time.perf_counter()
            model.encode([query], normalize_embeddings=True)
            direct_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            client.embed([query], input_type="query")
            unary_ms.append((time.perf_counter() - start) * 1000)
        cluster.clear_redis()

    b, s, ss = statistics.median(baseline), statistics.median(system), statistics.median(server_side)
    how = f"by reference from {args.by_reference} Parquet files" if args.by_reference else "streamed"
    print(
        f"\n{len(docs)} WordNet definitions ({how}), all-MiniLM-L6-v2 on CPU, chunk size {args.chunk_size}, "
        f"median of {args.runs} runs ({os.cpu_count()} cores)\n"
    )
    print("| measurement | docs/s (median) | ratio to plain encode |")
    print("|---|---:|---:|")
    print(f"| plain `SentenceTransformer.encode` (baseline) | {b:.1f} | 1.00 |")
    print(f"| index job, submit → SUCCEEDED (client clock) | {s:.1f} | {s / b:.2f} |")
    print(f"| index job, first chunk start → last chunk done (server) | {ss:.1f} | {ss / b:.2f} |")
    if not queries:
        return
    d50, u50 = statistics.median(direct_ms), statistics.median(unary_ms)
    d90, u90 = (statistics.quantiles(x, n=10)[-1] for x in (direct_ms, unary_ms))
    print(f"\nOne-text latency over {len(queries)} calls (worker idle):\n")
    print("| path | median ms | p90 ms |")
    print("|---|---:|---:|")
    print(f"| `model.encode([text])` in process (baseline) | {d50:.1f} | {d90:.1f} |")
    print(f"| `Embed` RPC: gateway → Redis queue → worker → reply | {u50:.1f} | {u90:.1f} |")
    print(f"\nEmbed overhead over the bare model call: {u50 - d50:.1f} ms at the median")


def write_corpus(cluster: LocalCluster, docs: list[dict[str, object]], files: int) -> str:
    """The corpus as ``files`` Parquet files in the cluster's dataset store; the reference to them."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    name = f"bench-{uuid.uuid4().hex[:8]}"
    folder = cluster.data_dir / "data" / "corpora" / name
    folder.mkdir(parents=True)
    step = -(-len(docs) // files)
    for i, start in enumerate(range(0, len(docs), step)):
        rows = [{**d, "metadata": json.dumps(d.get("metadata") or {})} for d in docs[start : start + step]]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{i:03d}.parquet")
    return f"corpora/{name}"


if __name__ == "__main__":
    main()
