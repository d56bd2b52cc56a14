"""The clustering pieces without services: c-TF-IDF equals BERTopic's formula on joined class documents,
the reservoir is uniform and reproducible, k candidates and the size order, page tokens, and the map
renderer's two formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import planted
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import adjusted_rand_score

from embedfleet import errors
from embedfleet.client.cluster_map import labels, render, render_html
from embedfleet.cluster import choose_k, k_candidates, kmeans, order_by_size, project_2d, term_stride
from embedfleet.cluster_types import ClusterMap, ClusterSummary, MapPoint
from embedfleet.collection_scan import Reservoir, RowBatch, check_filter
from embedfleet.ctfidf import ClassTermCounts
from embedfleet.gateway.clusters import _page

DOCS = [
    ("the cat sat on the mat, a cat purrs", 0),
    ("dogs bark; the dog runs after a cat", 1),
    ("kittens and cats sleep all day", 0),
    ("a stock market crash: stocks and bonds fell", 2),
    ("bonds rally as the market recovers", 2),
    ("the puppy and the dog play", 1),
]


def test_ctfidf_is_bertopics_formula_on_joined_class_documents() -> None:
    """BERTopic: one document per class, CountVectorizer, W = tf / |class| * log(1 + A / f); counted in two
    batches here, so the per-batch vocabularies must fold into one."""
    counts = ClassTermCounts()
    for half in (DOCS[:3], DOCS[3:]):
        counts.add([t for t, _ in half], np.array([c for _, c in half]))
    found = counts.top_terms(50)

    joined = [" ".join(t for t, c in DOCS if c == cls) for cls in (0, 1, 2)]
    vectorizer = CountVectorizer(stop_words="english")
    tf = vectorizer.fit_transform(joined).toarray().astype(float)
    frequency = tf.sum(axis=0)
    average = int(tf.sum(axis=1).mean())
    expected = tf / tf.sum(axis=1, keepdims=True) * np.log(1 + average / frequency)
    terms = vectorizer.get_feature_names_out()
    for cls in (0, 1, 2):
        want = {str(terms[j]): expected[cls, j] for j in np.flatnonzero(expected[cls])}
        assert dict(found[cls]) == pytest.approx(want)
        scores = [s for _, s in found[cls]]
        assert scores == sorted(scores, reverse=True)
    assert found[0][0][0] == "cat" and found[2][0][0] in {"bonds", "market"}


def _rows(start: int, stop: int) -> RowBatch:
    """Rows ``start``..``stop - 1``: the row number as pk, id, 1-d vector and text."""
    numbers = np.arange(start, stop)
    return RowBatch(
        numbers, [f"d{i}" for i in numbers], numbers.astype(np.float32)[:, None], [f"t{i}" for i in numbers]
    )


def test_reservoir_is_uniform_reproducible_and_keeps_payloads() -> None:
    hits = np.zeros(1000)
    for seed in range(200):
        reservoir = Reservoir(100, 1, seed)
        for start in range(0, 1000, 64):  # batches of uneven sizes
            reservoir.add(_rows(start, min(start + 64, 1000)), lambda i, start=start: f"row{start + i}")
        kept, payloads = reservoir.rows(), reservoir.payloads()
        assert len(kept) == 100 and len(set(kept.pks.tolist())) == 100
        assert payloads == [f"row{p}" for p in kept.pks]  # rows stay whole, payloads with them
        assert kept.ids == [f"d{p}" for p in kept.pks] and kept.texts == [f"t{p}" for p in kept.pks]
        assert kept.vectors[:, 0].tolist() == kept.pks.tolist()
        hits[kept.pks] += 1
    # Each row is kept with probability 0.1: 20 of 200 runs on average, early and late rows alike.
    assert abs(hits[:500].mean() - 20) < 1.5 and abs(hits[500:].mean() - 20) < 1.5
    first, second = Reservoir(10, 1, 3), Reservoir(10, 1, 3)
    for r in (first, second):
        r.add(_rows(0, 50))
    assert np.array_equal(first.rows().pks, second.rows().pks)
    short = Reservoir(10, 1, 0)
    short.add(_rows(0, 3))
    assert len(short.rows()) == 3 and short.payloads() == [None] * 3


def test_k_candidates_sizes_and_strides() -> None:
    assert k_candidates(2, 6) == [2, 3, 4, 5, 6]
    wide = k_candidates(2, 200)
    assert wide[0] == 2 and wide[-1] == 200 and len(wide) == 8 and wide == sorted(wide)
    assert order_by_size(np.array([5, 5, 1, -1, 1, 1, 7])).tolist() == [1, 1, 0, -1, 0, 0, 2]
    assert (term_stride(10), term_stride(200_000), term_stride(1_000_000)) == (1, 1, 5)


def test_filters_and_page_tokens_are_checked() -> None:
    assert check_filter(' metadata["a"] == 1 ', max_bytes=100) == 'metadata["a"] == 1'
    for bad in ("x" * 101, "a\x00b"):
        with pytest.raises(errors.InvalidArgument):
            check_filter(bad, max_bytes=100)
    assert _page(0, "", 100, 1000) == (0, 100) and _page(5, "40", 100, 1000) == (40, 5)
    for size, token in ((1001, ""), (10, "-1"), (10, "abc"), (10, "9" * 20)):
        with pytest.raises(errors.InvalidArgument):
            _page(size, token, 100, 1000)


def _map() -> ClusterMap:
    rng = np.random.default_rng(0)
    xy = project_2d(np.concatenate([rng.normal(c, 0.1, (30, 8)) for c in (0.0, 3.0)]))
    points = [
        MapPoint(f"d{i}", i // 30 if i % 29 else -1, float(x), float(y), f"text <{i}> & more")
        for i, (x, y) in enumerate(xy)
    ]
    clusters = [ClusterSummary(c, 30, [(f"term{c}", 1.0), ("shared", 0.5)], []) for c in (0, 1)]
    return ClusterMap(points, clusters)


def test_map_renders_png_and_self_contained_html(tmp_path: Path) -> None:
    cluster_map = _map()
    placed = labels(cluster_map)
    assert sorted(placed) == [0, 1] and placed[0][2] == "0: term0, shared"
    page = render_html(cluster_map, "a <title>")
    assert page.count("<circle") == 60 and "text &lt;3&gt; &amp; more" in page and "a &lt;title&gt;" in page
    assert "<script" not in page and "0: term0, shared" in page
    png = render(cluster_map, tmp_path / "m.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    with pytest.raises(ValueError, match=r"\.png or \.html"):
        render(cluster_map, tmp_path / "m.svg")


def test_kmeans_recovers_planted_clusters_whatever_the_row_order() -> None:
    """A collection scan returns rows in no fixed order, so the seeding must not depend on luck: with plain
    k-means++ (3 restarts) about 1 order in 40 left two planted clusters under one centroid, or made the
    silhouette prefer k = 3; greedy k-means++ recovers all four in every order tried."""
    vectors, truth = planted(4, 60)
    for trial in range(60):
        order = np.random.default_rng(trial).permutation(len(vectors))
        assert choose_k(vectors[order], 2, 9, seed=0).k == 4, trial
        labels = kmeans(vectors[order], 4, seed=0).assign(vectors[order])[:, 0]
        assert adjusted_rand_score(truth[order], labels) == 1.0, trial
