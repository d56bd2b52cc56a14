"""One tenant's bulk jobs vs another tenant's small job, with and without the per-tenant queue share.

    .venv/bin/python bench/tenant_fairness.py --bulk-jobs 3 --bulk-docs 192 --chunk-size 16 --runs 3

One Celery cluster (one worker process, the real model), auth on, two tenants. Each run: tenant
``bulk`` submits ``--bulk-jobs`` embed jobs, then tenant ``small`` submits a 1-document job; we time
the small job from submission to SUCCEEDED, then cancel the bulk jobs and let the queue drain. Runs
alternate between the baseline (``max_queued_parts = 0``: no tenant share, each job only its own
window, so a tenant with k jobs holds k windows of the queue — the behaviour before tenants) and
the default share, set on the running gateway, so drift on the shared machine hits both. Reports
medians and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from corpora import wordnet_docs
from harness import local_cluster

from embedfleet.apikeys import KeyStore, Role
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.gateway.quotas import TenantQuota
from embedfleet.local import LocalCluster


def one_run(
    bulk: EmbedfleetClient, small: EmbedfleetClient, docs: list[dict[str, object]], args: argparse.Namespace
) -> float:
    """Seconds from submitting the small tenant's job to its SUCCEEDED, behind the bulk tenant's jobs."""
    jobs = [bulk.submit_embed(docs, chunk_size=args.chunk_size) for _ in range(args.bulk_jobs)]
    start = time.perf_counter()
    job = small.submit_embed([{"id": "small", "text": "a small job of another tenant"}])
    final = small.wait(job.id)
    elapsed = time.perf_counter() - start
    if final.state != JobState.SUCCEEDED:
        sys.exit(f"the small job ended {final.state}")
    for j in jobs:
        bulk.cancel_job(j.id)
    for j in jobs:
        bulk.wait(j.id)
    time.sleep(2)  # cancelled parts still in the queue are skipped by the worker
    return elapsed


def bench(cluster: LocalCluster, args: argparse.Namespace) -> dict[int, list[float]]:
    settings = cluster.gateway.ctx.settings
    settings.auth = True
    keys = KeyStore(cluster.gateway.ctx.store.r, cluster.key_prefix)
    _, bulk_key = keys.create("bulk", Role.WRITER)
    _, small_key = keys.create("small", Role.WRITER)
    share = TenantQuota().max_queued_parts
    results: dict[int, list[float]] = {0: [], share: []}
    docs = wordnet_docs(args.bulk_docs)
    with (
        EmbedfleetClient(cluster.gateway_address, api_key=bulk_key, timeout=600) as bulk,
        EmbedfleetClient(cluster.gateway_address, api_key=small_key, timeout=600) as small,
    ):
        bulk.embed_corpus(docs[:32])  # warm-up
        for run in range(args.runs):
            for cap in (0, share) if run % 2 == 0 else (share, 0):
                settings.quota = TenantQuota(max_queued_parts=cap, max_concurrent_jobs=0)
                elapsed = one_run(bulk, small, docs, args)
                results[cap].append(elapsed)
                print(f"run {run + 1} share {cap}: small job {elapsed:.2f} s", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulk-jobs", type=int, default=3)
    parser.add_argument("--bulk-docs", type=int, default=192)
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with local_cluster("celery") as cluster:
        window = cluster.gateway.ctx.settings.dispatch_window
        results = bench(cluster, args)
    (base_cap, base), (share, fair) = results.items()
    b, f = statistics.median(base), statistics.median(fair)
    print(
        f"\nTenant bulk: {args.bulk_jobs} embed jobs x {args.bulk_docs} WordNet definitions in chunks of "
        f"{args.chunk_size} (job window {window}); tenant small: 1 document. Median of {args.runs} interleaved "
        f"runs per setting ({os.cpu_count()} cores)\n"
    )
    print("| setting | small job s (median) | runs |")
    print("|---|---:|---|")
    print(
        f"| no tenant share (max_queued_parts {base_cap}, baseline) | {b:.2f} | {', '.join(f'{x:.2f}' for x in base)} |"
    )
    print(f"| tenant share max_queued_parts {share} | {f:.2f} | {', '.join(f'{x:.2f}' for x in fair)} |")
    print(f"\nratio fair / baseline: **{f / b:.2f}**")


if __name__ == "__main__":
    main()
