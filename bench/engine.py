#!/usr/bin/env python
"""The engine against the loops and servers it replaces, on real mixed-length English, in one run.

    .venv/bin/python bench/engine.py --docs 1500 --runs 3

Corpus: Brown corpus paragraphs with Lee background news articles mixed in (``corpora.mixed_paragraphs``),
all-MiniLM-L6-v2 from its package, CPU. Interleaved rounds of, each timed on the client:

* ``plain``: one ``SentenceTransformer.encode(all texts, batch_size=32)`` in this process (it sorts every
  text by length: the fastest plain use of the model) — the baseline of every ratio;
* ``index torch`` / ``index int8``: an index job through the gateway, Celery on Redis, one worker process
  and Milvus Lite, submit -> SUCCEEDED, on the torch and the onnx-int8 backends;
* ``embed torch``: an embed job, submit -> every vector back on the client (``embed_corpus``);
* ``infinity``: infinity-emb 0.0.78 serving the same model directory (torch engine, batch 32) on
  127.0.0.1, 8 concurrent requests of 64 texts over the same corpus. It cannot share the project's
  environment (it needs sentence-transformers < 4, transformers < 5, numpy < 2), so this script creates
  ``bench/.venv-infinity`` on first use: torch==2.13.0 (the CPU wheel) first, then infinity-emb[server]
  0.0.78, sentence-transformers 3.4.1, transformers 4.57.6, numpy < 2 (``--no-infinity`` skips it).

Then, in this process with the engine alone (no cluster), a sweep over the token budget and the part
size (docs/s, real tokens/s, padded / real tokens), with the same texts cut by count (ST ``encode`` per part)
as the without-budget reference, and the plot ``bench/engine_plot.png``. The table is written to
``bench/results/engine.md``. The machine is shared: medians of the rounds, ratios within the same round.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from corpora import mixed_paragraphs

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import InputType, JobState
from embedfleet.local import LocalCluster, free_port, wait_for_port
from embedfleet.registry import DEFAULT_MODELS
from embedfleet.worker.models.batching import BatchPolicy, padded_tokens, plan_batches

BENCH = Path(__file__).resolve().parent
INFINITY_VENV = BENCH / ".venv-infinity"
ONNX_CACHE = BENCH / ".cache" / "onnx"
TORCH = DEFAULT_MODELS[0]
INT8 = TORCH.model_copy(update={"name": "all-MiniLM-L6-v2-int8", "backend": "onnx-int8"})
INFINITY_PACKAGES = [
    "infinity-emb[server]==0.0.78",
    "sentence-transformers==3.4.1",
    "transformers==4.57.6",
    "numpy<2",
]


def model_dir() -> str:
    path = TORCH.local_path()
    assert path is not None
    return str(path)


# --- infinity ------------------------------------------------------------------------------------


def ensure_infinity() -> Path:
    """bench/.venv-infinity with infinity-emb, created once (torch first, so pip never pulls a CUDA torch)."""
    binary = INFINITY_VENV / "bin" / "infinity_emb"
    if binary.exists():
        return binary
    subprocess.run([sys.executable, "-m", "venv", str(INFINITY_VENV)], check=True)
    pip = [str(INFINITY_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *INFINITY_PACKAGES], check=True)
    return binary


class Infinity:
    """infinity_emb v2 on 127.0.0.1 serving the packaged model; ``embed`` posts concurrent requests."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.port = free_port()
        args = [str(binary), "v2", "--model-id", model_dir(), "--served-model-name", "minilm", "--engine", "torch"]
        args += ["--device", "cpu", "--batch-size", "32", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--no-vector-disk-cache", "--no-model-warmup"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0"}
        self.process = subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
        wait_for_port(self.port, timeout_s=180, process=self.process)
        self._ready()

    def _ready(self) -> None:
        deadline = time.monotonic() + 180
        while True:
            try:
                self.embed(["warm up"], concurrency=1)
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(1)

    def _post(self, texts: list[str]) -> int:
        body = json.dumps({"model": "minilm", "input": texts}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/embeddings", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as response:
            return len(json.loads(response.read())["data"])

    def embed(self, texts: list[str], concurrency: int = 8, request_size: int = 64) -> int:
        requests = [texts[i : i + request_size] for i in range(0, len(texts), request_size)]
        with ThreadPoolExecutor(concurrency) as pool:
            return sum(pool.map(self._post, requests))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# --- the timed paths -----------------------------------------------------------------------------


def timed(fn: Callable[[], int], expected: int) -> float:
    """docs/s of ``fn``, which returns how many documents it completed (checked)."""
    start = time.perf_counter()
    done = fn()
    elapsed = time.perf_counter() - start
    if done != expected:
        sys.exit(f"a benchmark path completed {done} of {expected} documents")
    return expected / elapsed


def index_job(client: EmbedfleetClient, docs: list[dict[str, object]], model: str) -> int:
    job = client.index(docs, f"bench_engine_{uuid.uuid4().hex[:8]}", model=model, timeout=900)
    if job.state != JobState.SUCCEEDED:
        sys.exit(f"index job ended {job.state}: {job.error}")
    return job.done


def embed_job(client: EmbedfleetClient, docs: list[dict[str, object]]) -> int:
    vectors = client.embed_corpus(docs, model=TORCH.name)
    assert isinstance(vectors, np.ndarray)
    return int(vectors.shape[0])


def cluster_rounds(args: argparse.Namespace, docs: list[dict[str, object]], log_dir: Path) -> dict[str, list[float]]:
    """The end-to-end paths, interleaved round by round, plus each round's ratios to ``plain``."""
    from sentence_transformers import SentenceTransformer

    texts = [str(d["text"]) for d in docs]
    model = SentenceTransformer(model_dir(), device="cpu", local_files_only=True)
    model.max_seq_length = TORCH.max_seq_length
    os.environ["EMBEDFLEET_MODELS"] = json.dumps([m.model_dump(mode="json") for m in (TORCH, INT8)])
    os.environ["EMBEDFLEET_PRELOAD_MODELS"] = json.dumps([TORCH.name, INT8.name])
    os.environ["EMBEDFLEET_MODEL_CACHE_DIR"] = str(ONNX_CACHE)
    from embedfleet.worker.models.onnx import OnnxInt8Encoder

    OnnxInt8Encoder(INT8, "cpu", 0, ONNX_CACHE)  # export, quantize and gate once, before the worker loads it
    infinity = None if args.no_infinity else Infinity(ensure_infinity(), log_dir / "infinity.log")
    paths: dict[str, Callable[[], int]] = {"plain": lambda: len(model.encode(texts, batch_size=32))}
    results: dict[str, list[float]] = {}
    try:
        with (
            LocalCluster(
                data_dir=log_dir / "cluster",
                key_prefix=f"efbench-{uuid.uuid4().hex[:8]}:",
                gateway_port=0,
                milvus_port=0,
                log_dir=log_dir,
            ) as cluster,
            EmbedfleetClient(cluster.gateway_address, timeout=900) as client,
        ):
            paths["index torch"] = lambda: index_job(client, docs, TORCH.name)
            paths["index int8"] = lambda: index_job(client, docs, INT8.name)
            paths["embed torch"] = lambda: embed_job(client, docs)
            if infinity is not None:
                paths["infinity"] = lambda: infinity.embed(texts)
            warm = docs[:64]
            index_job(client, warm, TORCH.name), index_job(client, warm, INT8.name), embed_job(client, warm)
            model.encode(texts[:64])
            names = list(paths)
            for run in range(args.runs):
                for name in names[run % len(names) :] + names[: run % len(names)]:  # a rotating order
                    results.setdefault(name, []).append(timed(paths[name], len(docs)))
                plain = results["plain"][-1]
                for name in names[1:]:
                    results.setdefault(f"{name} ÷ plain", []).append(results[name][-1] / plain)
                if infinity is not None:
                    results.setdefault("embed torch ÷ infinity", []).append(
                        results["embed torch"][-1] / results["infinity"][-1]
                    )
                load = os.getloadavg()[0]
                line = ", ".join(f"{n} {results[n][-1]:.1f}" for n in names)
                print(f"round {run + 1}: {line} docs/s (load {load:.1f})", file=sys.stderr, flush=True)
            cluster.clear_redis()
    finally:
        if infinity is not None:
            infinity.stop()
    return results


# --- the engine alone: token budget and part size --------------------------------------------------


def sweep(texts: list[str], budgets: list[int], part_sizes: list[int]) -> list[dict[str, float | str]]:
    """docs/s, real tokens/s and padded / real tokens of the torch engine over parts of ``part`` texts
    at each budget, and of ST ``encode`` per part (count 32) as the no-budget reference."""
    from embedfleet.worker.models.torch import SentenceTransformerEncoder

    rows: list[dict[str, float | str]] = []
    base = SentenceTransformerEncoder(TORCH, "cpu")
    lengths = [min(len(ids), TORCH.max_seq_length) for ids in base.model.tokenizer(texts)["input_ids"]]
    real = sum(lengths)
    base.encode(texts[:64], InputType.DOCUMENT)  # warm-up

    def run(label: str, budget: int, part: int, encode: Callable[[list[str]], object], padded: int) -> None:
        start = time.perf_counter()
        for i in range(0, len(texts), part):
            encode(texts[i : i + part])
        elapsed = time.perf_counter() - start
        rows.append(
            {
                "path": label,
                "budget": budget,
                "part": part,
                "docs_s": len(texts) / elapsed,
                "tokens_s": real / elapsed,
                "padding": padded / real,
            }
        )
        print(f"sweep {label} budget {budget} part {part}: {rows[-1]['docs_s']:.1f} docs/s", file=sys.stderr)

    def padded_for(policy: BatchPolicy, part: int) -> int:
        return sum(
            padded_tokens(lengths[i : i + part], plan_batches(lengths[i : i + part], policy))
            for i in range(0, len(lengths), part)
        )

    default_part = 256
    st_policy = BatchPolicy(tokens=10**9, max_texts=32)  # ST sorts a call's texts, then cuts by 32
    arrival = sum(
        max(lengths[j : j + 32]) * len(lengths[j : j + 32])
        for i in range(0, len(lengths), default_part)
        for j in range(i, min(i + default_part, len(lengths)), 32)
    )
    rows.append(
        {"path": "count 32, arrival order (no sort)", "budget": 0, "part": default_part, "padding": arrival / real}
    )
    run(
        "ST encode per part (count 32, sorted)",
        0,
        default_part,
        lambda chunk: base.model.encode(chunk, batch_size=32),
        padded_for(st_policy, default_part),
    )
    for budget in budgets:
        encoder = SentenceTransformerEncoder(TORCH, "cpu", budget=budget)
        run(
            "engine",
            budget,
            default_part,
            functools.partial(encoder.encode, input_type=InputType.DOCUMENT),
            padded_for(encoder.policy, default_part),
        )
    for part in part_sizes:
        run(
            "engine",
            base.policy.tokens,
            part,
            functools.partial(base.encode, input_type=InputType.DOCUMENT),
            padded_for(base.policy, part),
        )
    return rows


def plot(rows: list[dict[str, float | str]], out: Path, default_budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    by_budget = sorted((r for r in rows if r["path"] == "engine" and r["part"] == 256), key=lambda r: r["budget"])
    left.plot([r["budget"] for r in by_budget], [r["docs_s"] for r in by_budget], "o-", label="engine, parts of 256")
    st_row = next(r for r in rows if str(r["path"]).startswith("ST encode"))
    left.axhline(float(st_row["docs_s"]), color="grey", linestyle="--", label="ST encode per part (count 32)")
    left.set_xscale("log", base=2)
    left.set(xlabel="token budget (padded tokens per forward pass)", ylabel="docs/s", title="docs/s vs token budget")
    left.legend()
    by_part = sorted(
        (r for r in rows if r["path"] == "engine" and r["budget"] == default_budget), key=lambda r: r["part"]
    )
    right.plot([r["part"] for r in by_part], [r["docs_s"] for r in by_part], "o-", label=f"budget {default_budget}")
    right.set_xscale("log", base=2)
    right.set(xlabel="part size (documents)", ylabel="docs/s", title="docs/s vs part size")
    right.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sweep-docs", type=int, default=600, help="texts for the in-process budget/part sweep")
    parser.add_argument("--budgets", default="1024,2048,4096,8192,16384")
    parser.add_argument("--part-sizes", default="64,128,512,600")
    parser.add_argument("--no-infinity", action="store_true")
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--only-sweep", action="store_true", help="the in-process sweep alone (no cluster)")
    args = parser.parse_args()

    docs = mixed_paragraphs(args.docs)
    texts = [str(d["text"]) for d in docs]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir(), local_files_only=True)
    ids = tokenizer(texts)["input_ids"]
    tokens = [min(len(row), TORCH.max_seq_length) for row in ids]
    bytes_per_token = sum(len(t.encode()) for t in texts) / sum(len(row) for row in ids)
    results: dict[str, list[float]] = {}
    if not args.only_sweep:
        with tempfile.TemporaryDirectory() as tmp:
            results = cluster_rounds(args, docs, Path(tmp))
    rows = (
        []
        if args.no_sweep
        else sweep(
            texts[: args.sweep_docs],
            [int(b) for b in args.budgets.split(",")],
            [int(p) for p in args.part_sizes.split(",")],
        )
    )
    from embedfleet.worker.models.batching import DEFAULT_TOKEN_BUDGET

    lines = [
        f"`{shlex.join(['.venv/bin/python', 'bench/engine.py', *sys.argv[1:]])}` — {len(docs)} texts "
        f"(Brown paragraphs + Lee background news), mean {statistics.mean(tokens):.0f} tokens "
        f"(median {statistics.median(tokens):.0f}, {sum(len(r) > TORCH.max_seq_length for r in ids)} over the "
        f"256-token window), {bytes_per_token:.2f} UTF-8 bytes per token; {os.cpu_count()} cores shared; "
        f"medians of {args.runs} interleaved rounds.",
        "",
        "| path | docs/s (median) | per-round values |",
        "|---|---:|---|",
    ]
    for name, values in results.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"| {name} | {statistics.median(values):.2f} | {shown} |")
    if rows:
        lines += [
            "",
            f"Engine alone (torch, CPU), {args.sweep_docs} texts, one pass per configuration:",
            "",
            "| path | token budget | part size | docs/s | real tokens/s | padded ÷ real tokens |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            speed = f"{r['docs_s']:.1f} | {r['tokens_s']:.0f}" if "docs_s" in r else "— | —"
            lines.append(f"| {r['path']} | {r['budget'] or '—'} | {r['part']} | {speed} | {r['padding']:.2f} |")
        plot(rows, BENCH / "engine_plot.png", DEFAULT_TOKEN_BUDGET["cpu"])
    text = "\n".join(lines)
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / ("engine_sweep.md" if args.only_sweep else "engine.md")).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
