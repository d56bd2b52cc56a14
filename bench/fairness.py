"""A small job submitted behind a large one, first come first served vs fair windows, on each backend.

    .venv/bin/python bench/fairness.py --large-docs 960 --chunk-size 32 --runs 2

One cluster per backend (one Celery worker process, or one Ray actor). Each run submits a large
embed job and, right behind it, a 1-document job, then calls ``Embed`` (one text) back to back
until the large job is done. Runs alternate between ``dispatch_window = 0`` (every chunk queued
at submission: the old behaviour, the baseline) and the default window, set on the running
gateway, so drift on the shared machine hits both. Reports medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from corpora import wordnet_docs
from harness import local_cluster, percentile

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.local import LocalCluster


def one_run(client: EmbedfleetClient, docs: list[dict[str, object]], chunk_size: int) -> tuple[float, list[float]]:
    """Seconds from submitting the small job to its SUCCEEDED, and Embed latencies (ms) during the large job."""
    large = client.submit_embed(docs, chunk_size=chunk_size)
    start = time.perf_counter()
    small = client.submit_embed([{"id": "small", "text": "a small job behind a large one"}])
    latencies: list[float] = []
    small_s = 0.0
    while True:
        t = time.perf_counter()
        client.embed(["how long do I wait?"], input_type="query")
        latencies.append((time.perf_counter() - t) * 1000)
        if not small_s and client.get_job(small.id).finished:
            if client.get_job(small.id).state != JobState.SUCCEEDED:
                sys.exit("the small job did not succeed")
            small_s = time.perf_counter() - start
        if client.get_job(large.id).finished:
            break
    if not small_s:
        small_s = time.perf_counter() - start  # finished with the large job
    if client.wait(large.id).state != JobState.SUCCEEDED:
        sys.exit("the large job did not succeed")
    return small_s, latencies


def bench_backend(cluster: LocalCluster, args: argparse.Namespace) -> dict[int, tuple[list[float], list[float]]]:
    docs = wordnet_docs(args.large_docs)
    fair = GatewaySettings.model_fields["dispatch_window"].default
    results: dict[int, tuple[list[float], list[float]]] = {0: ([], []), fair: ([], [])}
    with EmbedfleetClient(cluster.gateway_address, timeout=600) as client:
        client.embed_corpus(docs[:64])  # warm-up
        for run in range(args.runs):
            for window in (0, fair) if run % 2 == 0 else (fair, 0):
                cluster.gateway.ctx.settings.dispatch_window = window
                small_s, latencies = one_run(client, docs, args.chunk_size)
                results[window][0].append(small_s)
                results[window][1].extend(latencies)
                print(
                    f"{cluster.backend} run {run + 1} window {window}: small job {small_s:.1f} s, Embed p50 "
                    f"{percentile(latencies, 50):.0f} ms p99 {percentile(latencies, 99):.0f} ms",
                    file=sys.stderr,
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large-docs", type=int, default=960)
    parser.add_argument("--chunk-size", type=int, default=32)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--backends", default="celery,ray")
    args = parser.parse_args()
    rows = []
    for backend in args.backends.split(","):
        with local_cluster(backend) as cluster:
            results = bench_backend(cluster, args)
        (base_small, base_lat), (fair_small, fair_lat) = results.values()
        window = list(results)[1]
        b, f = statistics.median(base_small), statistics.median(fair_small)
        rows.append(
            f"| {backend} | {b:.1f} | {f:.1f} (window {window}) | **{f / b:.2f}** | "
            f"{percentile(base_lat, 50):.0f} / {percentile(base_lat, 99):.0f} | "
            f"{percentile(fair_lat, 50):.0f} / {percentile(fair_lat, 99):.0f} |"
        )
    print(
        f"\nLarge job: {args.large_docs} WordNet definitions in chunks of {args.chunk_size}; median of "
        f"{args.runs} interleaved runs per setting ({os.cpu_count()} cores)\n"
    )
    print(
        "| backend | small job s, FIFO (baseline) | small job s, fair | ratio "
        "| Embed p50/p99 ms, FIFO | Embed p50/p99 ms, fair |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
