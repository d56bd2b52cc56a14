"""Partitions of a vector space: spherical k-means (faiss) trained on a sample, and nearest-centroid
assignment of every vector with its ``n_probe`` nearest partitions.

Dedup compares vectors only within a partition and the neighbouring partitions a vector probes (a pair
split by a border is still found when one side probes the other's partition); clustering uses the home
partition as the cluster, and its similarity to the centroid (``nearest``). Vectors are the collections'
normalized ones, so nearness is inner product, i.e. cosine.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

# Fewer training points per centroid than this make centroids noisy (faiss would warn below 39).
MIN_POINTS_PER_CENTROID = 8
# k-means++ seeding looks at most this many sample vectors (k passes over them).
SEEDING_POOL = 20_000
# Rows assigned per faiss search call: bounds the (rows, k) distance matrix.
_ASSIGN_BLOCK = 65536


@dataclass(frozen=True)
class Partitioner:
    """``centroids`` float32 (k, d), unit length."""

    centroids: np.ndarray

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, vectors: np.ndarray, n_probe: int = 1) -> np.ndarray:
        """int64 (n, n_probe): each vector's nearest partitions, nearest first (column 0 is its home)."""
        return self.nearest(vectors, n_probe)[0]

    def nearest(self, vectors: np.ndarray, n_probe: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Each vector's ``n_probe`` nearest partitions, nearest first, and its cosine to their centroids:
        (int64 (n, n_probe), float32 (n, n_probe))."""
        n_probe = max(1, min(n_probe, self.k))
        index = faiss.IndexFlatIP(self.centroids.shape[1])
        index.add(np.ascontiguousarray(self.centroids, dtype=np.float32))
        ids = np.empty((len(vectors), n_probe), dtype=np.int64)
        sims = np.empty((len(vectors), n_probe), dtype=np.float32)
        for start in range(0, len(vectors), _ASSIGN_BLOCK):
            block = np.ascontiguousarray(vectors[start : start + _ASSIGN_BLOCK], dtype=np.float32)
            sims[start : start + len(block)], ids[start : start + len(block)] = index.search(block, n_probe)
        return ids, sims

    def to_bytes(self) -> bytes:
        return self.centroids.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, dimensions: int) -> Partitioner:
        return cls(np.frombuffer(data, dtype="<f4").reshape(-1, dimensions).copy())


def default_k(rows: int) -> int:
    """Partitions for ``rows`` vectors: about sqrt(rows) (so within-partition work is ~rows^1.5), at
    least 1, and few enough that each centroid trains on MIN_POINTS_PER_CENTROID sample points."""
    return max(1, min(int(np.sqrt(max(rows, 1))), max(rows // MIN_POINTS_PER_CENTROID, 1)))


def train(
    sample: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    niter: int = 20,
    restarts: int = 1,
    max_points_per_centroid: int | None = 256,
    plus_plus: bool = False,
) -> Partitioner:
    """Spherical k-means on ``sample`` (float32, (n, d)); k is capped at the sample's size.

    ``restarts`` independent runs keep the tightest (highest total cosine to the centroids). faiss starts
    from k random vectors, which often puts two centroids in one group and none in another, a local
    optimum more iterations never leave; ``plus_plus`` seeds each run with k-means++ instead (k passes over
    at most ``SEEDING_POOL`` vectors: worth it where the clusters are the result, as in a cluster job).
    faiss trains on at most ``max_points_per_centroid`` x k points, on all of the sample when None."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    k = max(1, min(k, len(sample)))
    if k == 1:
        mean = sample.mean(axis=0, keepdims=True) if len(sample) else np.ones((1, sample.shape[1]), np.float32)
        return Partitioner(_unit(mean))
    best: tuple[float, Partitioner] | None = None
    for run in range(max(1, restarts)):
        kmeans = faiss.Kmeans(
            sample.shape[1],
            k,
            niter=niter,
            seed=seed + run,
            spherical=True,
            verbose=False,
            max_points_per_centroid=max_points_per_centroid or max(256, -(-len(sample) // k)),
            min_points_per_centroid=1,  # small samples are fine: no warning for fewer than 39 per centroid
        )
        kmeans.train(sample, init_centroids=kmeans_plus_plus(sample, k, seed + run) if plus_plus else None)
        assert kmeans.centroids is not None  # set by train
        trained = Partitioner(_unit(kmeans.centroids))
        score = float(trained.nearest(sample)[1].sum()) if restarts > 1 else 0.0
        if best is None or score > best[0]:
            best = (score, trained)
    assert best is not None
    return best[1]


def kmeans_plus_plus(sample: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Greedy k-means++ seeds (scikit-learn's: each step keeps the best of 2 + log k candidates, which
    plain k-means++ lacks and which halves how often two seeds land in one group) from a random pool of at
    most ``SEEDING_POOL`` vectors. Euclidean distance between unit vectors orders pairs as cosine does."""
    from sklearn.cluster import kmeans_plusplus

    rng = np.random.default_rng(seed)
    pool = sample[rng.permutation(len(sample))[: max(SEEDING_POOL, k)]].astype(np.float32)
    seeds, _ = kmeans_plusplus(pool, k, random_state=seed)
    return np.ascontiguousarray(seeds, dtype=np.float32)


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)
