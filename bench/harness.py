"""What the load and fairness benchmarks share: a local cluster on one backend, percentiles, and
process memory read from /proc (no psutil here)."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from embedfleet.local import LocalCluster

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@contextlib.contextmanager
def local_cluster(
    backend: str, *, redis_url: str = REDIS_URL, extra_env: dict[str, str] | None = None
) -> Iterator[LocalCluster]:
    """Milvus Lite, one worker (a Celery process or a Ray actor) and the gateway, all on 127.0.0.1,
    under a fresh key prefix that is deleted afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(
            data_dir=Path(tmp),
            redis_url=redis_url,
            key_prefix=f"efbench-{uuid.uuid4().hex[:8]}:",
            backend=backend,
            gateway_port=0,
            milvus_port=0,
            # BENCH_LOG_DIR keeps the processes' logs after the run (for a cell that went wrong).
            log_dir=Path(os.environ.get("BENCH_LOG_DIR") or Path(tmp) / "logs"),
            extra_env=extra_env or {},
        )
        try:
            with cluster:
                yield cluster
        finally:
            cluster.clear_redis()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, by linear interpolation; 0 for none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(max(int(q) - 1, 0), 98)]


def rss_mb(pid: int) -> float:
    """Resident memory of one process and all its descendants, in MB."""
    total_kb = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    return total_kb / 1024


def worker_pids(cluster: LocalCluster) -> list[int]:
    """The processes doing the bulk work: the Celery worker (with its pool) or the Ray actors."""
    if cluster.backend == "ray":
        return [int(p) for p in cluster.gateway.ctx.dispatcher.actor_pids()]  # type: ignore[attr-defined]
    return [p.pid for name, p in cluster.processes.items() if name.startswith("worker-")]
