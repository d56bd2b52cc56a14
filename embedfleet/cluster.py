"""Clustering a collection's vectors: k-means with k given or chosen on a sample, or HDBSCAN, and the
summaries that make clusters readable (size, documents nearest the centre, c-TF-IDF terms, a 2-D map).

Transport- and Milvus-free: the worker's cluster part feeds batches in, the benchmark feeds arrays.

**Choosing k** (k = 0): for each candidate k in [k_min, k_max] (every value when there are at most
``K_CANDIDATES``, else that many spread geometrically), k-means is trained on a sub-sample of at most
``SILHOUETTE_SAMPLE`` vectors and scored by the mean cosine silhouette of that sub-sample; the best score
wins (the smaller k on a tie). The silhouette rewards clusters that are tight and apart, needs no labels,
and costs O(n^2) in the sub-sample, hence the cap.

**HDBSCAN** runs on the vectors reduced to ``HDBSCAN_DIMENSIONS`` principal components: density estimates
in 384 dimensions are dominated by noise and slow (BERTopic reduces with UMAP for the same reason).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from embedfleet import partitions
from embedfleet.cluster_types import NOISE, ClusterSummary, MapPoint, Representative
from embedfleet.collection_scan import Reservoir, RowBatch
from embedfleet.ctfidf import ClassTermCounts
from embedfleet.domain import ClusterMethod, ClusterParams
from embedfleet.errors import FailedPrecondition
from embedfleet.partitions import Partitioner

K_CANDIDATES = 8
SILHOUETTE_SAMPLE = 4000
HDBSCAN_DIMENSIONS = 10
MAP_POINTS = 2000
MAP_TEXT_CHARS = 300
TERM_ROWS = 200_000
# Independent k-means runs, the best objective kept: one random start can put two centroids in one
# group and leave two groups under one centroid, a local optimum that more iterations never leave.
KMEANS_RESTARTS = 3


@dataclass(frozen=True)
class KChoice:
    k: int
    silhouettes: dict[int, float]


def kmeans(sample: np.ndarray, k: int, seed: int) -> Partitioner:
    """Spherical k-means on all of ``sample`` (the caller sampled), k-means++ seeded, best of
    ``KMEANS_RESTARTS`` runs (random starts left two planted clusters under one centroid ~1 run in 3)."""
    return partitions.train(
        sample, k, seed=seed, restarts=KMEANS_RESTARTS, max_points_per_centroid=None, plus_plus=True
    )


def k_candidates(k_min: int, k_max: int) -> list[int]:
    if k_max - k_min + 1 <= K_CANDIDATES:
        return list(range(k_min, k_max + 1))
    return sorted({round(v) for v in np.geomspace(k_min, k_max, K_CANDIDATES)})


def choose_k(sample: np.ndarray, k_min: int, k_max: int, seed: int) -> KChoice:
    """The k in [k_min, k_max] with the best mean cosine silhouette on a sub-sample of ``sample``."""
    from sklearn.metrics import silhouette_score

    sub = sample[np.random.default_rng(seed).permutation(len(sample))[:SILHOUETTE_SAMPLE]]
    scores: dict[int, float] = {}
    for k in k_candidates(k_min, min(k_max, len(sub) - 1)):
        labels = kmeans(sub, k, seed).assign(sub)[:, 0]
        scores[k] = float(silhouette_score(sub, labels, metric="cosine")) if len(set(labels)) > 1 else -1.0
    best = max(scores, key=lambda k: (scores[k], -k))
    return KChoice(best, scores)


def hdbscan_labels(vectors: np.ndarray, min_cluster_size: int, min_samples: int) -> np.ndarray:
    """HDBSCAN (scikit-learn) labels of every vector, -1 for noise, on the leading principal components."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    dims = min(HDBSCAN_DIMENSIONS, vectors.shape[1], len(vectors))
    with threadpool_limits(1):  # see project_2d
        reduced = PCA(n_components=dims, random_state=0).fit_transform(vectors)
    model = HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min(min_samples, len(vectors)), copy=True)
    return np.asarray(model.fit_predict(reduced), dtype=np.int64)


def order_by_size(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0.. by descending size (ties by the old id); noise stays -1."""
    clusters, sizes = np.unique(labels[labels != NOISE], return_counts=True)
    order = clusters[np.lexsort((clusters, -sizes))]
    table = {int(old): new for new, old in enumerate(order)}
    table[NOISE] = NOISE
    return np.fromiter((table[int(v)] for v in labels), np.int64, len(labels))


def centroids_of(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Unit-length means of clusters 0..k-1 (noise left out)."""
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    kept = labels != NOISE
    np.add.at(sums, labels[kept], vectors[kept])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.float32)


class Assigner:
    """Labels and similarity to the cluster's centre for batches of rows."""

    def __init__(self, centroids: np.ndarray, labels: np.ndarray | None = None) -> None:
        self.centroids = centroids
        self._partitioner = Partitioner(centroids)
        self._labels = labels  # fixed labels by row position (HDBSCAN), else nearest centroid
        self._offset = 0

    @property
    def k(self) -> int:
        return len(self.centroids)

    def __call__(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._labels is None:
            ids, sims = self._partitioner.nearest(vectors)
            return ids[:, 0], sims[:, 0]
        labels = self._labels[self._offset : self._offset + len(vectors)]
        self._offset += len(vectors)
        sims = np.einsum("ij,ij->i", vectors, self.centroids[np.maximum(labels, 0)])
        return labels, np.where(labels == NOISE, np.float32(0), sims).astype(np.float32)


@dataclass
class Summarizer:
    """Builds the summaries while rows stream past: sizes, the nearest documents, term counts, a map sample.

    ``sizes`` and the nearest documents count every row; terms every ``term_every``-th row."""

    top_terms: int
    representatives: int
    seed: int
    dimensions: int
    # Count terms in every n-th row only (``term_stride``): c-TF-IDF's tokenizing is the slowest step per
    # row (~10^4 rows/s here), and a uniform subsample of 2 x 10^5 rows ranks a cluster's terms alike.
    term_every: int = 1
    _row: int = 0
    sizes: dict[int, int] = field(default_factory=dict)
    _nearest: dict[int, list[tuple[float, str, str]]] = field(default_factory=dict)
    _terms: ClassTermCounts = field(default_factory=ClassTermCounts)
    _map: Reservoir | None = None

    def __post_init__(self) -> None:
        self._map = Reservoir(MAP_POINTS, self.dimensions, self.seed)

    def add(self, batch: RowBatch, labels: np.ndarray, sims: np.ndarray) -> None:
        """Count ``batch`` (scanned with its texts) in the summaries; ``labels`` and ``sims`` per row."""
        ids, texts = batch.ids, batch.texts
        order = np.lexsort((-sims, labels))
        clusters, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
        for cluster, start, count in zip(clusters.tolist(), starts.tolist(), counts.tolist(), strict=True):
            self.sizes[cluster] = self.sizes.get(cluster, 0) + count
            heap = self._nearest.setdefault(cluster, [])
            for row in order[start : start + min(count, self.representatives)].tolist():
                item = (float(sims[row]), ids[row], texts[row])
                if len(heap) < self.representatives:
                    heapq.heappush(heap, item)
                else:
                    heapq.heappushpop(heap, item)
        counted = np.flatnonzero((np.arange(self._row, self._row + len(ids)) % self.term_every) == 0)
        self._terms.add([texts[i] for i in counted.tolist()], labels[counted])
        assert self._map is not None
        self._map.add(batch, lambda i: int(labels[i]))
        self._row += len(ids)

    def summaries(self) -> list[ClusterSummary]:
        """Every cluster, largest first, noise last."""
        terms = self._terms.top_terms(self.top_terms)
        clusters = sorted(self.sizes, key=lambda c: (c == NOISE, -self.sizes[c], c))
        return [
            ClusterSummary(
                cluster=c,
                size=self.sizes[c],
                terms=terms.get(c, []),
                representatives=[Representative(i, t, s) for s, i, t in sorted(self._nearest.get(c, []), reverse=True)],
            )
            for c in clusters
        ]

    def map_points(self) -> list[MapPoint]:
        """The map sample projected on its first two principal components."""
        assert self._map is not None
        rows = self._map.rows()
        if len(rows) == 0:
            return []
        xy = project_2d(rows.vectors)
        points = zip(rows.ids, self._map.payloads(), rows.texts, xy, strict=True)
        return [MapPoint(i, c, float(x), float(y), t[:MAP_TEXT_CHARS]) for i, c, t, (x, y) in points]


def term_stride(rows: int) -> int:
    """``term_every`` for a selection of ``rows``: every row up to ``TERM_ROWS``, then a uniform 1-in-n."""
    return max(1, -(-rows // TERM_ROWS))


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """PCA to two dimensions (the top eigenvectors of the d x d scatter matrix; signs fixed so reruns draw
    the same map). One BLAS thread: on a loaded 2-core machine OpenBLAS' threads spin against each other
    and a 2,000 x 384 decomposition took 10 s instead of 0.1 s."""
    from threadpoolctl import threadpool_limits

    centred = (vectors - vectors.mean(axis=0)).astype(np.float64)
    with threadpool_limits(1):
        _, eigenvectors = np.linalg.eigh(centred.T @ centred)
    axes = eigenvectors[:, ::-1][:, :2].T
    axes = axes * np.sign(axes.sum(axis=1, keepdims=True) + 1e-12)
    xy = centred @ axes.T
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))) if xy.shape[1] < 2 else xy


def fit(params: ClusterParams, sample: np.ndarray, metrics: dict[str, float]) -> Assigner:
    """The clusters of ``sample`` as the job asks (k-means with k given or chosen, or HDBSCAN), as an
    ``Assigner`` for the rows; the choice of k is added to ``metrics``."""
    if len(sample) < 2:
        raise FailedPrecondition(f"the filter selects {len(sample)} row(s) of {params.collection!r}; need at least 2")
    if params.method == ClusterMethod.HDBSCAN:
        labels = order_by_size(hdbscan_labels(sample, params.min_cluster_size, params.min_samples))
        return Assigner(centroids_of(sample, labels, int(labels.max()) + 1), labels)
    k = params.k
    if k == 0:
        choice = choose_k(sample, params.k_min, params.k_max, params.seed)
        k = choice.k
        metrics.update({f"silhouette.k{c}": s for c, s in choice.silhouettes.items()})
        metrics["silhouette"] = choice.silhouettes[k]
    k = min(k, len(sample))
    trained = kmeans(sample, k, params.seed)
    # Number clusters by their size in the sample, so cluster 0 is the largest.
    labels = trained.assign(sample)[:, 0]
    order = np.argsort(-np.bincount(labels, minlength=trained.k), kind="stable")
    return Assigner(trained.centroids[order])


class RowWriter(Protocol):
    def write(self, ids: list[str], pks: np.ndarray, clusters: np.ndarray, similarities: np.ndarray) -> None: ...


def assign_all(
    assigner: Assigner,
    batches: Iterable[RowBatch],
    summarizer: Summarizer,
    table: RowWriter,
    progress: Callable[[int, int], None] = lambda done, batches: None,
) -> int:
    """Assign every batch (scanned with its texts), write its rows and feed the summaries;
    ``progress(rows, batches)`` after each. Returns the rows assigned."""
    done = 0
    for number, batch in enumerate(batches):
        labels, sims = assigner(batch.vectors)
        table.write(batch.ids, batch.pks, labels, sims)
        summarizer.add(batch, labels, sims)
        done += len(batch)
        progress(done, number)
    return done
