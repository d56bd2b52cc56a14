"""The fault matrix (issue 10): each fault injected into a real local system, on each queue backend.

    .venv/bin/python bench/fault_matrix.py                      # every cell, both backends (~10 min)
    .venv/bin/python bench/fault_matrix.py --backend celery --fault worker_kill

Every cell runs an index job of real WordNet definitions (the packaged all-MiniLM-L6-v2, Milvus
Lite, one worker) with **default** leases and recovery intervals, injects its fault while parts
run, and checks the end state the way a user would: the job SUCCEEDED with every document written
exactly once (row count and ids read back from Milvus), or FAILED naming its failed parts and then,
resumed, SUCCEEDED exactly once. It prints one Markdown row per cell with the recovery time:

* **stall**: seconds from the fault (or, for an outage, from the service being back) until the job
  made progress again;
* **total**: seconds from submission to the end state.

Faults:

* ``worker_kill``: SIGKILL of the process running parts (Celery: main process and pool child at
  once, as an OOM kill of the container; Ray: the actor's process).
* ``gateway_kill_job`` (Celery): a second gateway, a separate process, takes the job and is
  SIGKILLed while its parts run; the first gateway's recovery loop carries on.
* ``gateway_kill_submit`` (Celery): that gateway is SIGKILLed while a client streams documents to
  it; nothing of the half-sent job may run, its staged inputs are reaped, and the client's retry of
  the whole corpus (same ids) is written once.
* ``milvus_blip``: Milvus Lite killed and started again 3 s later (inside the retry budget).
* ``milvus_outage``: Milvus Lite down for longer than the retry budget: the job FAILS naming its
  parts; with Milvus back, ``ResumeJob`` finishes it.
* ``redis_restart_aof`` / ``redis_restart_volatile`` (Celery, a private redis-server): Redis
  killed mid-job and started again with append-only persistence (the job survives) or without any
  (the job store and the broker's queue are gone: the job is NOT_FOUND, new jobs run).
* ``visibility_timeout`` (Celery, visibility timeout 4 s): a part that runs longer than the
  broker's visibility timeout is delivered again while it runs; the owner lease keeps the second
  delivery from running it a second time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import grpc
from corpora import wordnet_docs
from harness import local_cluster, worker_pids

from embedfleet import milvus
from embedfleet.client.errors import EmbedfleetRpcError
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.client.types import Job
from embedfleet.domain import JobState
from embedfleet.gateway.retention import sweep_job_data
from embedfleet.local import LocalCluster, free_port, wait_for_port

DOCS = 640
CHUNK = 64  # 10 parts: several run before and after each fault


@dataclass
class Cell:
    backend: str
    fault: str
    outcome: str
    stall_s: float
    total_s: float
    exact: bool

    def row(self) -> str:
        mark = "yes" if self.exact else "**no**"
        return f"| {self.backend} | {self.fault} | {self.outcome} | {self.stall_s:.1f} | {self.total_s:.1f} | {mark} |"


class Run:
    """One job in a cluster: its documents, its collection, and the clock."""

    def __init__(self, cluster: LocalCluster, client: EmbedfleetClient, tag: str) -> None:
        self.cluster, self.client = cluster, client
        self.docs = [{"id": f"{tag}-{d['id']}", "text": d["text"]} for d in wordnet_docs(DOCS)]
        self.collection = f"faults_{tag}_{uuid.uuid4().hex[:6]}"
        self.started = time.monotonic()
        self.job: Job | None = None

    def submit(self, client: EmbedfleetClient | None = None) -> Job:
        self.job = (client or self.client).submit_index(self.docs, self.collection, chunk_size=CHUNK)
        return self.job

    @property
    def job_id(self) -> str:
        assert self.job is not None
        return self.job.id

    def done(self) -> int:
        return self.client.get_job(self.job_id).done

    def until_done_at_least(self, n: int, timeout_s: float = 300) -> None:
        _until(lambda: self.done() >= n, timeout_s, f"{n} documents done")

    def progress_after(self, mark: float, before: int, timeout_s: float = 600) -> float:
        """Seconds from ``mark`` until more than ``before`` documents are done (or the job ended)."""

        def moved() -> bool:
            job = self.client.get_job(self.job_id)
            return job.done > before or job.state.terminal

        _until(moved, timeout_s, "progress after the fault")
        return time.monotonic() - mark

    def wait(self) -> Job:
        """The job's end state; a watch cut UNAVAILABLE is opened again, as a client would (seen during
        long Milvus outages: the SDK's watch stream ends with GOAWAY "too_many_pings")."""
        for attempt in range(5):
            try:
                return self.client.wait(self.job_id, timeout=900)
            except EmbedfleetRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == 4:
                    raise
                print(f"  watch cut ({exc}); watching again", file=sys.stderr)
        raise AssertionError("unreachable")

    def exactly_once(self) -> bool:
        client = milvus.connect(self.cluster.milvus_uri)
        client.load_collection(self.collection)  # released if Milvus restarted
        ids: list[str] = []
        for batch in _iterate_ids(client, self.collection):
            ids.extend(batch)
        return len(ids) == len(self.docs) and sorted(ids) == sorted(str(d["id"]) for d in self.docs)

    def cell(self, fault: str, outcome: str, stall_s: float) -> Cell:
        return Cell(self.cluster.backend, fault, outcome, stall_s, time.monotonic() - self.started, self.exactly_once())


def _iterate_ids(client: object, collection: str) -> Iterator[list[str]]:
    iterator = client.query_iterator(collection, batch_size=1000, output_fields=[milvus.ID_FIELD])  # type: ignore[attr-defined]
    while batch := iterator.next():
        yield [row[milvus.ID_FIELD] for row in batch]
    iterator.close()


def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


def _succeeded(job: Job) -> str:
    if job.state != JobState.SUCCEEDED:
        first = f" (first: part {job.failed_chunks[0].chunk_index}: {job.failed_chunks[0].message[:160]})"
        return f"**{job.state.value}**: {job.error[:80]}{first if job.failed_chunks else ''}"
    return f"SUCCEEDED {job.done}/{job.total}"


# --- faults -----------------------------------------------------------------------------------------


def worker_kill(cluster: LocalCluster, client: EmbedfleetClient) -> Cell:
    run = Run(cluster, client, "wk")
    run.submit()
    run.until_done_at_least(CHUNK)
    before = run.done()
    if cluster.backend == "celery":
        main = cluster.processes["worker-0"].pid
        children = Path(f"/proc/{main}/task/{main}/children").read_text().split()
        victims = [main, *map(int, children)]
    else:
        victims = worker_pids(cluster)[:1]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    stall = run.progress_after(time.monotonic(), before)
    return run.cell("worker SIGKILL mid-part", _succeeded(run.wait()), stall)


@contextlib.contextmanager
def second_gateway(cluster: LocalCluster) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Another gateway of the same system in its own process (as a second replica would be)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "embedfleet.client.cli", "gateway", "--host", "127.0.0.1", "--port", str(port)],
        env=cluster.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 60, process)
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def gateway_kill_job(cluster: LocalCluster, client: EmbedfleetClient) -> Cell:
    run = Run(cluster, client, "gj")
    with second_gateway(cluster) as (process, address), EmbedfleetClient(address, timeout=120) as other:
        run.submit(other)
        run.until_done_at_least(CHUNK)
        before = run.done()
        process.kill()
        mark = time.monotonic()
    stall = run.progress_after(mark, before)
    return run.cell("gateway SIGKILL mid-job", _succeeded(run.wait()), stall)


def gateway_kill_submit(cluster: LocalCluster, client: EmbedfleetClient) -> Cell:
    run = Run(cluster, client, "gs")
    ctx = cluster.gateway.ctx
    jobs_before = {j.id for j in client.list_jobs(page_size=1000)}
    staging_before = set(ctx.store.r.zrange(f"{cluster.key_prefix}jobs:staging", 0, -1))
    with second_gateway(cluster) as (process, address), EmbedfleetClient(address, timeout=120) as other:

        def trickle() -> Iterator[dict[str, object]]:
            for i, doc in enumerate(run.docs):
                if i == DOCS // 2:
                    process.kill()  # mid-stream: half the corpus sent
                    time.sleep(0.5)
                yield doc

        refused = ""
        try:
            other.submit_index(trickle(), run.collection, chunk_size=CHUNK)
        except grpc.RpcError as exc:
            refused = exc.code().name if isinstance(exc, EmbedfleetRpcError) else type(exc).__name__
    mark = time.monotonic()
    if not refused:
        raise AssertionError("a submission to a killed gateway was accepted")
    if {j.id for j in client.list_jobs(page_size=1000)} != jobs_before:
        raise AssertionError("the half-sent submission became a job")
    abandoned = set(ctx.store.r.zrange(f"{cluster.key_prefix}jobs:staging", 0, -1)) - staging_before
    if not abandoned:  # killed before it read the stream: nothing was staged, nothing to reap
        run.submit()
        return run.cell(
            "gateway SIGKILL mid-submission",
            f"client got {refused}; nothing staged; retry: {_succeeded(run.wait())}",
            0.0,
        )

    # Its staging marker lapses after the staging lease (60 s by default); the recovery loop's pass
    # then drops it, and the retention sweep the half-written input shards.
    def reaped() -> bool:
        ctx.store.reap_abandoned_staging()
        return not abandoned & set(ctx.store.r.zrange(f"{cluster.key_prefix}jobs:staging", 0, -1))

    _until(reaped, 180, "the abandoned submission's staging to be reaped")
    swept = sweep_job_data(ctx.datastore, ctx.store, grace_s=0)
    reaped_s = time.monotonic() - mark
    run.submit()  # the client's retry of the whole corpus
    final = run.wait()
    outcome = (
        f"client got {refused}; no job; staging reaped after {reaped_s:.0f} s, "
        f"{len(swept)} spill dir swept; retry: {_succeeded(final)}"
    )
    return run.cell("gateway SIGKILL mid-submission", outcome, reaped_s)


def _stop_milvus(cluster: LocalCluster) -> None:
    server = cluster.processes.pop("milvus")
    server.kill()
    server.wait()


def milvus_blip(cluster: LocalCluster, client: EmbedfleetClient) -> Cell:
    run = Run(cluster, client, "mb")
    run.submit()
    run.until_done_at_least(CHUNK)
    _stop_milvus(cluster)
    time.sleep(3)
    before = run.done()
    cluster.start_milvus()  # same port, same data directory
    stall = run.progress_after(time.monotonic(), before)
    return run.cell("Milvus killed, back after 3 s", _succeeded(run.wait()), stall)


def milvus_outage(cluster: LocalCluster, client: EmbedfleetClient) -> Cell:
    run = Run(cluster, client, "mo")
    run.submit()
    run.until_done_at_least(CHUNK)
    _stop_milvus(cluster)
    down_at = time.monotonic()
    failed = run.wait()
    failed_s = time.monotonic() - down_at
    named = len(failed.failed_chunks)
    cluster.start_milvus()
    before = failed.done
    mark = time.monotonic()
    client.resume_job(run.job_id)  # a unary call: the SDK itself retries it on UNAVAILABLE
    stall = run.progress_after(mark, before)
    final = run.wait()
    outcome = f"{failed.state.value} after {failed_s:.0f} s naming {named} part(s); resumed: {_succeeded(final)}"
    return run.cell("Milvus down past the retry budget", outcome, stall)


class PrivateRedis:
    """A redis-server of the bench's own on a free loopback port. ``restart`` kills it (as a crash
    would) and starts it again with or without append-only persistence (fsync on every write)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, persistent: bool = True) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
        args += ["--save", "", "--appendonly", "yes" if persistent else "no", "--appendfsync", "always"]
        if not persistent:
            shutil.rmtree(self.data_dir / "appendonlydir", ignore_errors=True)
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, 30, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, persistent: bool) -> None:
        self.kill()
        self.start(persistent)


def redis_restart(persistent: bool) -> Callable[[LocalCluster, EmbedfleetClient], Cell]:
    def fault(cluster: LocalCluster, client: EmbedfleetClient) -> Cell:
        redis_server: PrivateRedis = cluster.private_redis  # type: ignore[attr-defined]
        run = Run(cluster, client, "rr")
        run.submit()
        run.until_done_at_least(CHUNK)
        before = run.done()
        redis_server.restart(persistent)
        mark = time.monotonic()
        if persistent:
            stall = run.progress_after(mark, before)
            return run.cell("Redis killed, restarted (AOF, fsync always)", _succeeded(run.wait()), stall)

        def job_gone() -> bool:
            try:
                client.get_job(run.job_id)
            except EmbedfleetRpcError as exc:
                print("  ", exc, file=sys.stderr)
                return exc.code() == grpc.StatusCode.NOT_FOUND
            return False

        _until(job_gone, 60, "the lost job to read NOT_FOUND")
        fresh = Run(cluster, client, "rn")
        fresh.submit()
        final = fresh.wait()
        stall = time.monotonic() - mark
        cell = fresh.cell("Redis killed, restarted empty (no persistence)", "", stall)
        cell.outcome = f"old job NOT_FOUND (lost with Redis); a new job: {_succeeded(final)}"
        return cell

    return fault


def visibility_timeout(cluster: LocalCluster, client: EmbedfleetClient) -> Cell:
    run = Run(cluster, client, "vt")
    run.docs = run.docs[:320]
    run.job = client.submit_index(run.docs, run.collection, chunk_size=320)  # one part, ~10 s > 4 s
    final = run.wait()
    outcome = f"{_succeeded(final)}, {final.chunks_finished} part counted once"
    return run.cell("part outlives the visibility timeout (4 s)", outcome, 0.0)


# (fault name, backends it runs on, cluster flavour, the fault)
FAULTS: dict[str, tuple[tuple[str, ...], str, Callable[[LocalCluster, EmbedfleetClient], Cell]]] = {
    "worker_kill": (("celery", "ray"), "default", worker_kill),
    "gateway_kill_job": (("celery",), "default", gateway_kill_job),
    "gateway_kill_submit": (("celery",), "default", gateway_kill_submit),
    "milvus_blip": (("celery", "ray"), "default", milvus_blip),
    "milvus_outage": (("celery", "ray"), "default", milvus_outage),
    "redis_restart_aof": (("celery",), "private", redis_restart(True)),
    "redis_restart_volatile": (("celery",), "private", redis_restart(False)),
    "visibility_timeout": (("celery",), "private", visibility_timeout),
}


@contextlib.contextmanager
def cluster_for(backend: str, flavour: str) -> Iterator[LocalCluster]:
    if flavour == "default":
        with local_cluster(backend) as cluster:
            yield cluster
        return
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = PrivateRedis(Path(tmp))
        redis_server.start()
        try:
            env = {"EMBEDFLEET_VISIBILITY_TIMEOUT_SECONDS": "4"}
            with local_cluster(backend, redis_url=redis_server.url, extra_env=env) as cluster:
                cluster.private_redis = redis_server  # type: ignore[attr-defined]
                yield cluster
        finally:
            redis_server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["celery", "ray"], action="append")
    parser.add_argument("--fault", choices=list(FAULTS), action="append")
    args = parser.parse_args()
    backends = args.backend or ["celery", "ray"]
    faults = args.fault or list(FAULTS)
    print("| backend | fault | outcome | stall s | total s | exactly once |")
    print("|---|---|---|---:|---:|---|")
    for backend in backends:
        for flavour in ("default", "private"):
            chosen = [f for f in faults if backend in FAULTS[f][0] and FAULTS[f][1] == flavour]
            if not chosen:
                continue
            with (
                cluster_for(backend, flavour) as cluster,
                EmbedfleetClient(cluster.gateway_address, timeout=120) as client,
            ):
                client.embed(["warm up"])
                for name in chosen:
                    try:
                        cell = FAULTS[name][2](cluster, client)
                    except Exception as exc:  # a cell that breaks is a finding: report it, go on
                        traceback.print_exc()
                        cell = Cell(backend, name, f"**error**: {type(exc).__name__}: {exc}"[:200], 0, 0, False)
                    print(cell.row(), flush=True)


if __name__ == "__main__":
    main()
