#!/usr/bin/env python
"""embedfleet's embed job by reference against the Ray Data pipeline a user would write instead, in one run.

The same corpus (``--docs`` real mixed-length paragraphs: Brown corpus with Lee news, as in bench/engine.py)
is written as ``--files`` Parquet files. Three paths embed it with the packaged all-MiniLM-L6-v2 on the CPU:

- ``encode``: one ``SentenceTransformer.encode`` over all texts in this process (batch 32, sorted by length):
  the baseline, with no reading or writing.
- ``embedfleet``: an embed job that names the files by reference (``source.uri``); one Celery worker reads
  its parts, embeds and writes the vectors as Parquet to the dataset store. Timed submit -> SUCCEEDED.
- ``ray data``: ``read_parquet`` -> ``map_batches`` (one actor holding the model, batches of
  ``--batch-size`` rows, ``encode`` per batch, torch on every core) -> ``write_parquet``, on a local Ray
  (127.0.0.1) started once.

Runs interleave the three paths; figures are medians of ``--runs``, with ratios to ``encode``.

    .venv/bin/python bench/ray_data.py --docs 4000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pyarrow as pa
import pyarrow.parquet as pq
from corpora import mixed_paragraphs
from harness import local_cluster
from sentence_transformers import SentenceTransformer

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.registry import DEFAULT_MODELS

MODEL_PATH = str(DEFAULT_MODELS[0].local_path())


class Embedder:
    """The Ray Data actor: the model loaded once, each batch encoded as the user's pipeline would."""

    def __init__(self) -> None:
        import torch

        # Ray sets OMP_NUM_THREADS to the actor's one CPU; the model gets every core, as the other paths do.
        torch.set_num_threads(os.cpu_count() or 2)
        self.model = SentenceTransformer(MODEL_PATH, device="cpu")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        vectors = self.model.encode(list(batch["text"]), batch_size=32, normalize_embeddings=True)
        return {"id": batch["id"], "embedding": list(vectors)}


def write_files(docs: list[dict[str, object]], folder: Path, files: int) -> None:
    folder.mkdir(parents=True)
    step = -(-len(docs) // files)
    for i, start in enumerate(range(0, len(docs), step)):
        rows = [{"id": str(d["id"]), "text": str(d["text"])} for d in docs[start : start + step]]
        pq.write_table(pa.Table.from_pylist(rows), folder / f"part-{i:03d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="Ray Data rows per map_batches call")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()

    import ray
    import ray.data

    docs = mixed_paragraphs(args.docs)
    texts = [str(d["text"]) for d in docs]
    model = SentenceTransformer(MODEL_PATH, device="cpu")
    model.encode(texts[:64])  # warm-up
    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    timings: dict[str, list[float]] = {"encode": [], "embedfleet": [], "ray data": []}
    with (
        local_cluster("celery", redis_url=args.redis_url) as cluster,
        EmbedfleetClient(cluster.gateway_address, timeout=600) as client,
    ):
        name = f"ray-data-{uuid.uuid4().hex[:8]}"
        write_files(docs, cluster.data_dir / "data" / "corpora" / name, args.files)
        files = str(cluster.data_dir / "data" / "corpora" / name)
        client.embed_corpus(docs[:64])  # warm the worker
        for run in range(args.runs):
            start = time.perf_counter()
            model.encode(texts, batch_size=32, normalize_embeddings=True)
            timings["encode"].append(len(texts) / (time.perf_counter() - start))

            start = time.perf_counter()
            job = client.wait(client.submit_embed(None, source_uri=f"corpora/{name}").id)
            if job.state != JobState.SUCCEEDED or job.done != len(docs):
                sys.exit(f"embed job ended {job.state} with {job.done}/{len(docs)}: {job.error}")
            timings["embedfleet"].append(len(docs) / (time.perf_counter() - start))

            start = time.perf_counter()
            out = cluster.data_dir / f"ray-out-{run}"
            (
                ray.data.read_parquet(files)
                # One CPU reserved for the actor leaves one for the read and write tasks (reserving every core
                # for it leaves them none, and the pipeline never starts).
                .map_batches(
                    Embedder, batch_size=args.batch_size, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1
                )
                .write_parquet(str(out))
            )
            written = pq.read_table(out).num_rows
            if written != len(docs):
                sys.exit(f"Ray Data wrote {written} of {len(docs)} rows")
            timings["ray data"].append(len(docs) / (time.perf_counter() - start))
            print(
                f"run {run + 1}: " + ", ".join(f"{path} {values[-1]:.1f} docs/s" for path, values in timings.items()),
                file=sys.stderr,
            )
    ray.shutdown()
    base = statistics.median(timings["encode"])
    print(f"\n`{shlex.join(['.venv/bin/python', 'bench/ray_data.py', *sys.argv[1:]])}`\n")
    print(
        f"{len(docs)} mixed-length paragraphs in {args.files} Parquet files, all-MiniLM-L6-v2 on CPU "
        f"({os.cpu_count()} cores), median of {args.runs} interleaved runs\n"
    )
    print("| path | docs/s (median) | ratio to plain encode |")
    print("|---|---:|---:|")
    labels = {
        "encode": "plain `SentenceTransformer.encode` (no I/O; baseline)",
        "embedfleet": "embedfleet embed job by reference (Parquet in, Parquet out; 1 Celery worker)",
        "ray data": f"Ray Data `read_parquet` → `map_batches` (1 actor, batch {args.batch_size}) → `write_parquet`",
    }
    for path, values in timings.items():
        value = statistics.median(values)
        print(f"| {labels[path]} | {value:.1f} | {value / base:.2f} |")


if __name__ == "__main__":
    main()
