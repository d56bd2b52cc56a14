"""What a cluster job produces, as plain values: shared by the worker (which computes them), the dataset
store tables and the gateway (which serves them), without the numerical libraries behind them."""

from __future__ import annotations

from dataclasses import dataclass

NOISE = -1


@dataclass(frozen=True)
class Representative:
    id: str
    text: str
    similarity: float


@dataclass(frozen=True)
class ClusterSummary:
    cluster: int
    size: int
    terms: list[tuple[str, float]]
    representatives: list[Representative]


@dataclass(frozen=True)
class MapPoint:
    id: str
    cluster: int
    x: float
    y: float
    text: str


@dataclass(frozen=True)
class Assignment:
    """A row's cluster: its document id, the cluster (-1: noise) and its cosine to the cluster's centre."""

    id: str
    cluster: int
    similarity: float


@dataclass(frozen=True)
class ClusterMap:
    """A sample of rows on the plane and the clusters to label them with (representatives left out)."""

    points: list[MapPoint]
    clusters: list[ClusterSummary]
    projection: str = "pca"
