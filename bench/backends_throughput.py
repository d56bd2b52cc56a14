"""Index throughput of the Celery backend and the Ray backend against a plain in-process loop, one run.

    .venv/bin/python bench/backends_throughput.py --docs 2000 --runs 3

The same work three ways, on the same model, data and Milvus Lite server type:

* plain: this process loads ``SentenceTransformer`` and, chunk by chunk (the job's chunk size),
  encodes (batch 32, normalized) and upserts the rows with the worker's own ``MilvusSink`` (same
  schema, keys and batching) — no gateway, queue, job store or worker process;
* celery: an index job through the gateway, Celery on Redis and one worker process (concurrency 1);
* ray: the same job through the gateway's RayDispatcher and one Ray actor given every core (so torch
  gets as many threads as in the other two; Ray sets OMP_NUM_THREADS to the actor's num_cpus).

Jobs are timed on the client from submit to SUCCEEDED, so gRPC streaming of the documents, the job
store and the queue are all counted. Both clusters stay up for the whole run and the three modes
take turns in a rotating order, so drift on a shared machine (another process training a model)
hits each alike; each run writes a fresh collection. Reported: medians of ``--runs`` runs and the
two ratios (backend / plain). The load average is printed per run to judge noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # the local Ray instance listens on 127.0.0.1 only

from corpora import wordnet_docs
from sentence_transformers import SentenceTransformer

from embedfleet import milvus
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import Document, JobState
from embedfleet.local import LocalCluster
from embedfleet.model_store import weights_checksum
from embedfleet.registry import DEFAULT_MODELS
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.settings import WorkerSettings

MILVUS_BATCH_BYTES = WorkerSettings.model_fields["milvus_max_batch_bytes"].default  # the worker's default


class PlainLoop:
    """The job's work without the system: encode a chunk, upsert it, next chunk."""

    def __init__(self, milvus_uri: str, chunk_size: int) -> None:
        spec = DEFAULT_MODELS[0]
        path = spec.local_path()
        assert path is not None
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.model.max_seq_length = spec.max_seq_length
        self.binding = milvus.CollectionBinding(spec.name, weights_checksum(path), spec.dimensions)
        self.sink = MilvusSink(milvus.connect(milvus_uri), MILVUS_BATCH_BYTES)
        self.chunk_size = chunk_size

    def index(self, docs: list[dict[str, object]], collection: str) -> None:
        documents = [
            Document(id=str(d["id"]), text=str(d["text"]), metadata_json=json.dumps(d["metadata"])) for d in docs
        ]
        for start in range(0, len(documents), self.chunk_size):
            chunk = documents[start : start + self.chunk_size]
            vectors = self.model.encode(
                [d.text for d in chunk], batch_size=32, normalize_embeddings=True, show_progress_bar=False
            )
            self.sink.write(collection, self.binding, chunk, vectors)


def job_runner(client: EmbedfleetClient, chunk_size: int) -> Callable[[list[dict[str, object]], str], float]:
    """Runs an index job to the end; returns the server-side docs/s for the record."""

    def run(docs: list[dict[str, object]], collection: str) -> float:
        job = client.index(docs, collection, chunk_size=chunk_size)
        if job.state != JobState.SUCCEEDED or job.done != len(docs):
            sys.exit(f"benchmark job ended {job.state} with {job.done}/{len(docs)} done: {job.error}")
        return job.docs_per_second

    return run


def cluster(tmp: Path, name: str, backend: str, redis_url: str, extra_env: dict[str, str]) -> LocalCluster:
    return LocalCluster(
        data_dir=tmp / name,
        redis_url=redis_url,
        key_prefix=f"efbench-{name}-{uuid.uuid4().hex[:8]}:",
        backend=backend,
        workers=1,
        gateway_port=0,
        milvus_port=0,
        log_dir=tmp / name / "logs",
        extra_env=extra_env,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    docs = wordnet_docs(args.docs)
    cores = os.cpu_count() or 1
    seconds: dict[str, list[float]] = {"plain": [], "celery": [], "ray": []}
    server_side: dict[str, list[float]] = {"celery": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        celery = cluster(tmp, "celery", "celery", args.redis_url, {})
        ray_cluster = cluster(tmp, "ray", "ray", args.redis_url, {"EMBEDFLEET_RAY_NUM_CPUS_PER_ACTOR": str(cores)})
        with (
            celery,
            ray_cluster,
            EmbedfleetClient(celery.gateway_address, timeout=600) as celery_client,
            EmbedfleetClient(ray_cluster.gateway_address, timeout=600) as ray_client,
        ):
            plain = PlainLoop(celery.milvus_uri, args.chunk_size)
            modes: dict[str, Callable[[list[dict[str, object]], str], float | None]] = {
                "plain": plain.index,
                "celery": job_runner(celery_client, args.chunk_size),
                "ray": job_runner(ray_client, args.chunk_size),
            }
            for name, run in modes.items():  # warm-up: model first use, collection creation path
                run(docs[:64], f"bench_warmup_{name}_{uuid.uuid4().hex[:6]}")
            order = list(modes)
            for round_index in range(args.runs):
                for name in order[round_index % 3 :] + order[: round_index % 3]:
                    load_before = os.getloadavg()[0]
                    start = time.perf_counter()
                    server = modes[name](docs, f"bench_{name}_{round_index}_{uuid.uuid4().hex[:6]}")
                    seconds[name].append(time.perf_counter() - start)
                    if server is not None:
                        server_side[name].append(server)
                    print(
                        f"round {round_index + 1} {name:>6}: {seconds[name][-1]:6.2f} s, "
                        f"{len(docs) / seconds[name][-1]:6.1f} docs/s (load average before: {load_before:.2f})",
                        file=sys.stderr,
                        flush=True,
                    )
        for local in (celery, ray_cluster):  # after stop: nothing is left running that writes keys
            local.clear_redis()

    rate = {name: len(docs) / statistics.median(values) for name, values in seconds.items()}
    print(
        f"\n{len(docs)} WordNet definitions, all-MiniLM-L6-v2 (torch, CPU), chunk size {args.chunk_size}, "
        f"one worker with all {cores} cores per backend, median of {args.runs} runs\n"
    )
    print("| mode | runs (s) | docs/s (median) | server-side docs/s | ratio to plain |")
    print("|---|---|---:|---:|---:|")
    for name, label in (("plain", "plain in-process loop"), ("celery", "Celery backend"), ("ray", "Ray backend")):
        runs = ", ".join(f"{s:.2f}" for s in seconds[name])
        server_cell = f"{statistics.median(server_side[name]):.1f}" if name in server_side else "-"
        print(f"| {label} | {runs} | {rate[name]:.1f} | {server_cell} | {rate[name] / rate['plain']:.2f} |")
    print(
        f"\nCelery / plain = {rate['celery'] / rate['plain']:.2f}, Ray / plain = {rate['ray'] / rate['plain']:.2f} "
        f"(Ray / Celery = {rate['ray'] / rate['celery']:.2f})"
    )


if __name__ == "__main__":
    main()
