"""Bounded load: concurrent SDK clients submit small jobs and call Embed and Search while a large
index job runs. Loopback only; stops at ``--duration`` seconds or ``--max-requests``, whichever
comes first, and cancels the large job if it is still running then.

    .venv/bin/python bench/load.py --backend celery --duration 180 --clients 4

Reports requests/s, Embed and Search latency while the large job runs (p50/p99), errors (the goal
is 0), small-job completion time (submit to SUCCEEDED) with the large job running, and memory at
start and end: the bench process (the in-process gateway plus the client threads), the worker
(Celery process and pool, or the Ray actors), and Redis (the keys under this run's prefix; the
server's total is shared with whatever else uses that Redis).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc
import redis
from corpora import wordnet_docs
from harness import local_cluster, percentile, rss_mb, worker_pids

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster

OPS = ("embed", "search", "embed", "small_job")  # each client cycles through these


@dataclass
class Tally:
    """What every client thread records, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def record(self, op: str, seconds: float, during_bulk: bool) -> None:
        with self.lock:
            self.latencies[op if during_bulk else f"{op} (bulk over)"].append(seconds * 1000)

    def fail(self, op: str, exc: BaseException) -> None:
        code = exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__
        with self.lock:
            self.errors[f"{op}: {code}"] += 1


class Budget:
    """The run's request count: the clients stop once ``limit`` requests were started."""

    def __init__(self, limit: int) -> None:
        self._left = itertools.count(limit, -1)
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            return next(self._left) > 0


def memory(cluster: LocalCluster, client: redis.Redis) -> dict[str, float]:
    keys = list(client.scan_iter(match=f"{cluster.key_prefix}*", count=1000))
    prefix_bytes = sum(client.memory_usage(k) or 0 for k in keys)
    return {
        "bench process (gateway + clients) MB": rss_mb(os.getpid()),
        "worker MB": sum(rss_mb(p) for p in worker_pids(cluster)),
        "Redis: this run's keys MB": prefix_bytes / 2**20,
        "Redis: this run's key count": float(len(keys)),
        "Redis server used_memory MB (shared)": float(client.info("memory")["used_memory"]) / 2**20,
    }


def run_client(
    address: str, collection: str, tally: Tally, stop: threading.Event, budget: Budget, bulk: threading.Event
) -> None:
    with EmbedfleetClient(address, timeout=120) as client:
        for n in itertools.count():
            if stop.is_set() or not budget.take():
                return
            op = OPS[n % len(OPS)]
            during = bulk.is_set()
            start = time.perf_counter()
            try:
                if op == "embed":
                    client.embed([f"load query {n}", "a second text"], input_type="query")
                elif op == "search":
                    client.search(collection, f"a kind of animal {n}", top_k=5)
                else:
                    docs = [{"id": f"s{n}-{i}", "text": f"small job {n} text {i}"} for i in range(3)]
                    job = client.wait(client.submit_embed(docs).id)
                    if job.state != JobState.SUCCEEDED:
                        raise RuntimeError(f"small job ended {job.state}: {job.error}")
            except Exception as exc:
                tally.fail(op, exc)
                continue
            finally:
                with tally.lock:
                    tally.requests += 1
            tally.record(op, time.perf_counter() - start, during and bulk.is_set())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="celery", choices=("celery", "ray"))
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    parser.add_argument("--max-requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--large-docs", type=int, default=20_000)
    parser.add_argument("--chunk-size", type=int, default=256)
    args = parser.parse_args()

    docs = wordnet_docs(args.large_docs)
    r = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    with local_cluster(args.backend) as cluster, EmbedfleetClient(cluster.gateway_address, timeout=600) as client:
        collection = f"load_search_{uuid.uuid4().hex[:6]}"
        client.index(docs[:500], collection)  # something to search; also warms the worker
        before = memory(cluster, r)
        large = client.submit_index(docs, f"load_bulk_{uuid.uuid4().hex[:6]}", chunk_size=args.chunk_size)
        bulk, stop = threading.Event(), threading.Event()
        bulk.set()
        tally, budget = Tally(), Budget(args.max_requests)
        threads = [
            threading.Thread(target=run_client, args=(cluster.gateway_address, collection, tally, stop, budget, bulk))
            for _ in range(args.clients)
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        deadline = start + args.duration
        while time.perf_counter() < deadline and any(t.is_alive() for t in threads):
            if client.get_job(large.id).finished:
                bulk.clear()
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        final = client.get_job(large.id)
        if not final.finished:
            client.cancel_job(large.id)
        after = memory(cluster, r)

    print(
        f"\n{args.backend}: {args.clients} clients for {elapsed:.0f} s while an index job of {args.large_docs} "
        f"WordNet definitions (chunks of {args.chunk_size}) ran; it reached {final.done}/{final.total} "
        f"({final.state.value}, {final.docs_per_second:.0f} docs/s)\n"
    )
    print(f"requests: {tally.requests} ({tally.requests / elapsed:.1f}/s); errors: {sum(tally.errors.values())}")
    for what, count in tally.errors.most_common():
        print(f"  {what}: {count}")
    print("\n| call | n | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    for op, values in sorted(tally.latencies.items()):
        label = op.replace("small_job", "small job, submit → SUCCEEDED")
        print(
            f"| {label} | {len(values)} | {percentile(values, 50):.0f} | {percentile(values, 99):.0f} | "
            f"{max(values):.0f} |"
        )
    print("\n| memory | start | end |")
    print("|---|---:|---:|")
    for key in before:
        print(f"| {key} | {before[key]:.1f} | {after[key]:.1f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
