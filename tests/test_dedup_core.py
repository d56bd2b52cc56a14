"""The dedup core on constructed cases: exact mode finds every pair at or above the threshold and none
below, partitioned mode with probing finds what exact finds, the text pass and the keep policies."""

from __future__ import annotations

import numpy as np
import pytest

from embedfleet import dedup, partitions


def _unit(m: np.ndarray) -> np.ndarray:
    return (m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float32)


def _planted(n: int, dup_fraction: float, seed: int = 0, dim: int = 32) -> np.ndarray:
    """Random unit vectors, some followed by noisy copies at spread similarities."""
    rng = np.random.default_rng(seed)
    base = _unit(rng.standard_normal((n, dim)))
    copies = rng.choice(n, int(n * dup_fraction), replace=False)
    noise = rng.uniform(0.05, 0.6, len(copies))[:, None]
    near = _unit(base[copies] + noise * _unit(rng.standard_normal((len(copies), dim))))
    return np.concatenate([base, near])


def _brute(vectors: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = vectors @ vectors.T
    i, j = np.nonzero(np.triu(sims >= threshold, k=1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("threshold", [0.8, 0.9, 0.97])
def test_exact_mode_finds_every_pair_above_the_threshold_and_none_below(threshold: float) -> None:
    vectors = _planted(700, 0.3)
    pairs = dedup.exact_pairs(vectors, threshold, block=128)  # several blocks, diagonal and off-diagonal
    found = set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True))
    assert found == _brute(vectors, threshold)
    assert found, "the planted copies give pairs at every threshold tested"
    assert np.all(pairs.similarity >= threshold)
    np.testing.assert_allclose(pairs.similarity, np.sum(vectors[pairs.left] * vectors[pairs.right], axis=1), atol=1e-5)


def test_partitioned_mode_with_probing_finds_what_exact_finds() -> None:
    vectors = _planted(3000, 0.3, seed=1)
    ref = dedup.exact_pairs(vectors, 0.8)
    ref_set = set(zip(ref.left.tolist(), ref.right.tolist(), strict=True))
    part = partitions.train(vectors, 30, seed=0)
    one = dedup.partition_pairs(vectors, part.assign(vectors, 1), 0.8)
    probed = dedup.partition_pairs(vectors, part.assign(vectors, 5), 0.8)
    recall_one = len(ref_set & set(zip(one.left.tolist(), one.right.tolist(), strict=True))) / len(ref_set)
    found = set(zip(probed.left.tolist(), probed.right.tolist(), strict=True))
    assert found <= ref_set  # nothing below the threshold
    assert len(found) / len(ref_set) >= 0.99
    assert recall_one < len(found) / len(ref_set)  # probing neighbours is what recovers border pairs


def test_identical_texts_pair_without_a_vector_comparison() -> None:
    texts = ["Hello,  World!", "hello world", "Another text.", "HELLO WORLD", "", "..."]
    keys = np.asarray([dedup.text_key(t) for t in texts], dtype=np.int64)
    pairs, reps = dedup.text_pairs(keys)
    assert set(zip(pairs.left.tolist(), pairs.right.tolist(), strict=True)) == {(0, 1), (0, 3)}
    assert reps.tolist() == [0, 2, 4, 5]  # texts that normalize to nothing never pair


def test_groups_join_chains_and_keep_by_policy() -> None:
    rng = np.random.default_rng(3)
    centre = _unit(rng.standard_normal((1, 16)))
    vectors = _unit(np.concatenate([centre + 0.3 * rng.standard_normal((3, 16)), rng.standard_normal((2, 16))]))
    pairs = dedup.Pairs(np.array([0, 1]), np.array([1, 2]), np.array([0.9, 0.9], np.float32))  # a chain 0-1-2
    ids = ["c", "a", "b", "d", "e"]
    first = dedup.group(pairs, 5, vectors, order_keys=ids)
    assert [(g.kept, g.removed) for g in first] == [(1, (2, 0))]  # smallest id kept, removed in id order
    assert first[0].similarity == tuple(round(float(vectors[r] @ vectors[1]), 6) for r in (2, 0))
    longest = dedup.group(pairs, 5, vectors, policy=dedup.KeepPolicy.LONGEST, order_keys=ids, lengths=[5, 1, 9, 0, 0])
    assert longest[0].kept == 2
    nearest = dedup.group(pairs, 5, vectors, policy=dedup.KeepPolicy.NEAREST, order_keys=ids)
    members = vectors[[0, 1, 2]]
    assert nearest[0].kept == int(np.argmax(members @ members.mean(axis=0)))
    assert dedup.found_pairs(first) == {(0, 1), (0, 2), (1, 2)}


def test_default_k_grows_like_the_square_root() -> None:
    assert partitions.default_k(1) == 1
    assert partitions.default_k(10_000) == 100
    assert partitions.default_k(40) == 5  # each centroid keeps a few training points


def test_mutual_best_keeps_reciprocal_matches_and_identical_rows() -> None:
    # A chain a-b-c-d: b and c are each other's best; a's best is b but b prefers c; d's best is c.
    pairs = dedup.Pairs(np.array([0, 1, 2, 4]), np.array([1, 2, 3, 5]), np.array([0.85, 0.95, 0.9, 1.0], np.float32))
    kept = dedup.mutual_best(pairs, 6)
    assert list(zip(kept.left.tolist(), kept.right.tolist(), strict=True)) == [(1, 2), (4, 5)]
