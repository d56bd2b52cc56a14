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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from embedfleet.cluster_types import NOISE, ClusterSummary, MapPoint, Representative
from embedfleet.collection_scan import Reservoir
from embedfleet.ctfidf import ClassTermCounts
from embedfleet.partitions import assign, train_kmeans

K_CANDIDATES = 8
SILHOUETTE_SAMPLE = 4000
HDBSCAN_DIMENSIONS = 10
MAP_POINTS = 2000
MAP_TEXT_CHARS = 300


@dataclass(frozen=True)
class KChoice:
    k: int
    silhouettes: dict[int, float]


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
        labels = assign(sub, train_kmeans(sub, k, seed))[0][:, 0]
        scores[k] = float(silhouette_score(sub, labels, metric="cosine")) if len(set(labels)) > 1 else -1.0
    best = max(scores, key=lambda k: (scores[k], -k))
    return KChoice(best, scores)


def hdbscan_labels(vectors: np.ndarray, min_cluster_size: int, min_samples: int) -> np.ndarray:
    """HDBSCAN (scikit-learn) labels of every vector, -1 for noise, on the leading principal components."""
    from sklearn.cluster import HDBSCAN
    from sklearn.decomposition import PCA

    dims = min(HDBSCAN_DIMENSIONS, vectors.shape[1], len(vectors))
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
        self._labels = labels  # fixed labels by row position (HDBSCAN), else nearest centroid
        self._offset = 0

    @property
    def k(self) -> int:
        return len(self.centroids)

    def __call__(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._labels is None:
            ids, sims = assign(vectors, self.centroids)
            return ids[:, 0].astype(np.int64), sims[:, 0]
        labels = self._labels[self._offset : self._offset + len(vectors)]
        self._offset += len(vectors)
        sims = np.einsum("ij,ij->i", vectors, self.centroids[np.maximum(labels, 0)])
        return labels, np.where(labels == NOISE, np.float32(0), sims).astype(np.float32)


@dataclass
class Summarizer:
    """Builds the summaries while rows stream past: sizes, the nearest documents, term counts, a map sample."""

    top_terms: int
    representatives: int
    seed: int
    dimensions: int
    sizes: dict[int, int] = field(default_factory=dict)
    _nearest: dict[int, list[tuple[float, str, str]]] = field(default_factory=dict)
    _terms: ClassTermCounts = field(default_factory=ClassTermCounts)
    _map: Reservoir | None = None

    def __post_init__(self) -> None:
        self._map = Reservoir(MAP_POINTS, self.dimensions, self.seed)

    def add(
        self, ids: Sequence[str], texts: Sequence[str], vectors: np.ndarray, labels: np.ndarray, sims: np.ndarray
    ) -> None:
        for cluster, count in zip(*np.unique(labels, return_counts=True), strict=True):
            self.sizes[int(cluster)] = self.sizes.get(int(cluster), 0) + int(count)
        order = np.lexsort((-sims, labels))
        start = 0
        while start < len(order):
            cluster = int(labels[order[start]])
            end = start
            while end < len(order) and labels[order[end]] == cluster:
                end += 1
            heap = self._nearest.setdefault(cluster, [])
            for row in order[start : min(end, start + self.representatives)]:
                item = (float(sims[row]), ids[row], texts[row])
                if len(heap) < self.representatives:
                    heapq.heappush(heap, item)
                else:
                    heapq.heappushpop(heap, item)
            start = end
        self._terms.add(texts, labels)
        assert self._map is not None
        self._map.add(vectors, [(i, int(c), t[:MAP_TEXT_CHARS]) for i, c, t in zip(ids, labels, texts, strict=True)])

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
        vectors, payloads = self._map.sample()
        if len(vectors) == 0:
            return []
        xy = project_2d(vectors)
        return [MapPoint(i, c, float(x), float(y), t) for (i, c, t), (x, y) in zip(payloads, xy, strict=True)]


def project_2d(vectors: np.ndarray) -> np.ndarray:
    """PCA to two dimensions (an SVD of the centred vectors; the sign fixed so reruns draw the same map)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2] * np.sign(vt[:2].sum(axis=1, keepdims=True) + 1e-12)
    xy = centred @ axes.T
    return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))) if xy.shape[1] < 2 else xy
