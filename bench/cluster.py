"""Clustering benchmark: correctness on real labelled data and time/memory at scale.

quality  NMI and ARI against the labels of the Brown corpus (500 documents, 15 genres) and a 20,000-gloss
         sample of WordNet (45 lexical categories), all-MiniLM-L6-v2 vectors (bench/cluster_data.py), for
         the job's k-means (faiss, k = the number of labels), k-means with k chosen by silhouette, and
         HDBSCAN; beside them, in the same run and interleaved, scikit-learn's KMeans (k-means++, 3 inits)
         as the baseline. Medians over ``--repeats`` seeds.
scale    The cluster job's pipeline (reservoir sample, k-means on the sample, batch-by-batch assignment,
         c-TF-IDF summaries and the Parquet tables) on SYNTHETIC 384-d vectors: planted clusters, generated
         batch by batch from a seed (both passes see the same rows, and no copy of the data is held, as
         when reading Milvus). The Milvus read is not timed here. Each size runs in a fresh process, so
         its peak RSS is its own. At 100k the baseline is faiss k-means trained on every row.

    .venv/bin/python bench/cluster.py quality --repeats 3 [--data brown wordnet]
    .venv/bin/python bench/cluster.py scale --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from embedfleet.cluster import RowWriter, Summarizer, assign_all, fit, term_stride
from embedfleet.cluster_store import assignments, write_summaries
from embedfleet.collection_scan import RowBatch, sample
from embedfleet.domain import ClusterMethod, ClusterParams, ResultsRef

HDBSCAN_MIN_CLUSTER = {"brown": 5, "wordnet": 40}


def _params(**kw: object) -> ClusterParams:
    return ClusterParams.model_validate(
        {"collection": "bench", "results": ResultsRef(filesystem="", directory="")} | kw
    )


def _labels_of(params: ClusterParams, vectors: np.ndarray) -> np.ndarray:
    metrics: dict[str, float] = {}
    return fit(params, vectors, metrics)(vectors)[0]


def _sklearn_kmeans(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return np.asarray(KMeans(k, n_init=3, random_state=seed).fit_predict(vectors))


@dataclass
class Scores:
    nmi: list[float]
    ari: list[float]
    seconds: list[float]
    extra: list[str]

    def row(self, name: str, baseline: Scores | None) -> str:
        nmi, ari, secs = (statistics.median(v) for v in (self.nmi, self.ari, self.seconds))
        ratio = ""
        if baseline is not None:
            ratio = (
                f" | {nmi / statistics.median(baseline.nmi):.2f}x | {secs / statistics.median(baseline.seconds):.2f}x"
            )
        else:
            ratio = " | | "
        return f"| {name} | {nmi:.3f} | {ari:.3f} | {secs:.2f}{ratio} | {', '.join(sorted(set(self.extra)))} |"


def quality(repeats: int, datasets: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from cluster_data import brown, wordnet

    print("| data | method | NMI | ARI | seconds | NMI / baseline | time / baseline | notes |")
    print("|---|---|---|---|---|---|---|---|")
    loaders = {"brown": brown, "wordnet": wordnet}
    for name in datasets:
        load = loaders[name]
        vectors, labels, _ = load()
        k = len(set(labels))
        runs = _methods(vectors, k, HDBSCAN_MIN_CLUSTER[name])
        scores = {method: Scores([], [], [], []) for method in runs}
        for seed in range(1, repeats + 1):  # interleaved: every method once per round
            for method, run in runs.items():
                started = time.perf_counter()
                predicted, note = run(seed)
                scores[method].seconds.append(time.perf_counter() - started)
                scores[method].nmi.append(normalized_mutual_info_score(labels, predicted))
                scores[method].ari.append(adjusted_rand_score(labels, predicted))
                scores[method].extra.append(note)
        baseline = scores["sklearn KMeans (baseline)"]
        for method, score in scores.items():
            line = score.row(method, None if score is baseline else baseline)
            print(line.replace("| ", f"| {name} ({len(labels)}, {k} labels) | ", 1))


def _methods(vectors: np.ndarray, k: int, min_cluster: int) -> dict[str, Callable[[int], tuple[np.ndarray, str]]]:
    """Each method as a function of the seed: (labels, a note)."""
    return {
        "sklearn KMeans (baseline)": lambda s: (_sklearn_kmeans(vectors, k, s), ""),
        "k-means (faiss), k = labels": lambda s: (_labels_of(_params(k=k, seed=s), vectors), ""),
        "k-means, k by silhouette": lambda s: _chosen(vectors, s),
        "HDBSCAN": lambda s: _hdbscan(vectors, min_cluster),
    }


def _chosen(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    params = _params(k_min=5, k_max=60, seed=seed)
    metrics: dict[str, float] = {}
    assigner = fit(params, vectors, metrics)
    return assigner(vectors)[0], f"k={assigner.k}"


def _hdbscan(vectors: np.ndarray, min_cluster: int) -> tuple[np.ndarray, str]:
    labels = _labels_of(_params(method=ClusterMethod.HDBSCAN, min_cluster_size=min_cluster, min_samples=5), vectors)
    clusters = len(set(labels.tolist()) - {-1})
    return labels, f"{clusters} clusters, noise {np.mean(labels == -1):.0%} (noise counted as one label)"


# -- scale -------------------------------------------------------------------------------------------
DIM, CENTRES, BATCH = 384, 100, 2000
VOCABULARY = [f"w{i}" for i in range(3000)]


def synthetic(rows: int, seed: int = 7, texts: bool = True) -> Iterator[RowBatch]:
    """Planted clusters (cosine to their centre ~0.85) with texts of 4 topic words and 6 shared fillers each
    (fillers drawn from 500 prepared phrases, so making the texts costs the benchmark little)."""
    setup = np.random.default_rng(seed)
    centres = setup.standard_normal((CENTRES, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    topics = [f"topic{c}a topic{c}b topic{c}c topic{c}d " for c in range(CENTRES)]
    phrases = [" ".join(setup.choice(VOCABULARY, 6)) for _ in range(500)]
    # Noise rows drawn from a bank: generating 384 normals per row would cost the benchmark more than the
    # pipeline it measures (a row repeats a (centre, noise) pair with probability rows / 5 x 10^6).
    bank = 0.03 * setup.standard_normal((50_000, DIM), dtype=np.float32)
    for start in range(0, rows, BATCH):
        rng = np.random.default_rng((seed, start))
        n = min(BATCH, rows - start)
        labels = rng.integers(0, CENTRES, n)
        vectors = centres[labels] + bank[rng.integers(0, len(bank), n)]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        picks = rng.integers(0, len(phrases), n)
        batch_texts = (
            [topics[c] + phrases[p] for c, p in zip(labels.tolist(), picks.tolist(), strict=True)] if texts else []
        )
        ids = [f"r{i}" for i in range(start, start + n)]
        yield RowBatch(np.arange(start, start + n, dtype=np.int64), ids, vectors, batch_texts)


class _Keep:
    """Writes the assignments table and keeps the labels, to score them against the planted clusters."""

    def __init__(self, table: RowWriter) -> None:
        self.table = table
        self.clusters: list[np.ndarray] = []

    def write(self, ids: list[str], pks: np.ndarray, clusters: np.ndarray, sims: np.ndarray) -> None:
        self.table.write(ids, pks, clusters, sims)
        self.clusters.append(clusters)


def scale_one(rows: int, full_training: bool) -> dict[str, float]:
    """One run of the job's pipeline on ``rows`` synthetic rows (in this process)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    vectors = sample(synthetic(rows, texts=False), 100_000, DIM, seed=1).vectors
    timings["sample_s"] = time.perf_counter() - started
    params = _params(k=CENTRES, rows=rows)
    mark = time.perf_counter()
    assigner = fit(params, vectors, {})
    timings["train_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ref = ResultsRef(filesystem=tmp, directory=f"{tmp}/out")
        summarizer = Summarizer(10, 5, 1, DIM, term_stride(rows))
        with assignments(ref) as table:
            keeper = _Keep(table)
            assign_all(assigner, synthetic(rows), summarizer, keeper)
        predicted = keeper.clusters
        write_summaries(ref, summarizer.summaries(), summarizer.map_points())
        timings["assign_summarize_write_s"] = time.perf_counter() - mark
        timings["total_s"] = time.perf_counter() - started
    labels_true = np.concatenate(
        [
            np.random.default_rng((7, start)).integers(0, CENTRES, min(BATCH, rows - start))
            for start in range(0, rows, BATCH)
        ]
    )  # the planted clusters: the first draw of each batch in ``synthetic``
    labels_pred = np.concatenate(predicted)
    timings["nmi_vs_planted"] = normalized_mutual_info_score(labels_true, labels_pred)
    if full_training:  # the baseline: the same k-means trained on every row instead of the sample
        everything = np.concatenate([b.vectors for b in synthetic(rows, texts=False)])
        mark = time.perf_counter()
        full = fit(_params(k=CENTRES, rows=rows, sample_size=rows), everything, {})
        timings["full_train_s"] = time.perf_counter() - mark
        timings["nmi_sample_vs_full"] = normalized_mutual_info_score(full(everything)[0], labels_pred)
    return timings


def scale(sizes: list[int]) -> None:
    print(
        "| rows | sample, s | train, s | assign + summaries + Parquet, s | total, s | peak RSS, MB | NMI vs planted |"
    )
    print("|---|---|---|---|---|---|---|")
    baselines = []
    for rows in sizes:
        command = [sys.executable, __file__, "scale-one", "--rows", str(rows)]
        if rows <= 100_000:
            command.append("--full-training")
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(
            f"| {rows:,} | {result['sample_s']:.1f} | {result['train_s']:.1f} "
            f"| {result['assign_summarize_write_s']:.1f} | {result['total_s']:.1f} | {result['peak_rss_mb']:.0f} "
            f"| {result['nmi_vs_planted']:.3f} |"
        )
        if "full_train_s" in result:
            baselines.append(
                f"{rows:,} rows: k-means trained on every row took {result['full_train_s']:.1f} s "
                f"({result['full_train_s'] / result['train_s']:.1f}x the sample's {result['train_s']:.1f} s); "
                f"NMI between the two assignments {result['nmi_sample_vs_full']:.3f}"
            )
    for line in baselines:
        print(f"\nbaseline, {line}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    quality_args = sub.add_parser("quality")
    quality_args.add_argument("--repeats", type=int, default=3)
    quality_args.add_argument("--data", nargs="+", choices=["brown", "wordnet"], default=["brown", "wordnet"])
    sub.add_parser("scale").add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    one = sub.add_parser("scale-one")
    one.add_argument("--rows", type=int, required=True)
    one.add_argument("--full-training", action="store_true")
    args = parser.parse_args()
    if args.command == "quality":
        quality(args.repeats, args.data)
    elif args.command == "scale":
        scale(args.rows)
    else:
        import resource

        result = scale_one(args.rows, args.full_training)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))


if __name__ == "__main__":
    main()
