"""Semantic deduplication, the transport-free core: which pairs of vectors are near-duplicates, and
which groups they form.

Three passes, each a function of plain arrays so that the job, the index-time check and the benchmark
share them:

- ``text_keys``: a hash of the normalized text; rows with the same key are duplicates at similarity
  1.0 without a vector comparison, and only one row per key takes part in the vector passes.
- ``exact_pairs``: blocked all-pairs (every pair at or above the threshold, the reference).
- ``partition_pairs``: pairs within each partition and the neighbouring partitions its vectors probe
  (``embedfleet.partitions``): a pair (x, y) is compared when x's home partition is among y's probed
  partitions or the other way round, so pairs split by a border are still found.

``group`` joins pairs into connected groups (union-find, as scipy's connected components) and keeps one
row per group by a policy. Vectors are unit length: cosine similarity is the inner product.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from embedfleet.domain import KeepPolicy

# Rows per block of a similarity matrix: a (block, block) float32 matrix is 16 MB at 2,048.
DEFAULT_BLOCK = 2048
_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")


@dataclass(frozen=True)
class Pairs:
    """Near-duplicate pairs as row positions ``left < right`` with their cosine ``similarity``."""

    left: np.ndarray
    right: np.ndarray
    similarity: np.ndarray

    def __len__(self) -> int:
        return len(self.left)

    @staticmethod
    def concat(parts: Sequence[Pairs]) -> Pairs:
        """All pairs of ``parts``, each pair once (parts may find the same pair twice)."""
        if not parts:
            return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
        left = np.concatenate([p.left for p in parts])
        right = np.concatenate([p.right for p in parts])
        sim = np.concatenate([p.similarity for p in parts])
        keys, first = np.unique(left * (1 << 32) + right, return_index=True)
        del keys
        return Pairs(left[first], right[first], sim[first])

    def remap(self, positions: np.ndarray) -> Pairs:
        """The same pairs with positions mapped through ``positions`` (a subset's rows to the whole's)."""
        a, b = positions[self.left], positions[self.right]
        return Pairs(np.minimum(a, b), np.maximum(a, b), self.similarity)


def normalize_text(text: str) -> str:
    """What counts as the same text: Unicode NFKC, case folded, punctuation dropped, spaces collapsed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", folded)).strip()


def text_key(text: str) -> int:
    """A 63-bit hash of the normalized text (0 for a text that normalizes to nothing: never a duplicate)."""
    norm = normalize_text(text)
    if not norm:
        return 0
    return int.from_bytes(hashlib.blake2b(norm.encode(), digest_size=8).digest(), "big") >> 1


def text_pairs(keys: np.ndarray) -> tuple[Pairs, np.ndarray]:
    """(pairs of rows with the same non-zero key, each joined to its key's first row at similarity 1.0;
    the positions of the rows that represent themselves in the vector passes)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
    head = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
    dup = ~starts & (sorted_keys != 0)
    left, right = head[dup], order[dup]
    pairs = Pairs(np.minimum(left, right), np.maximum(left, right), np.ones(int(dup.sum()), np.float32))
    representatives = np.sort(order[~dup])
    return pairs, representatives


def _block_pairs(
    a: np.ndarray, b: np.ndarray, threshold: float, a_pos: np.ndarray, b_pos: np.ndarray, upper: bool
) -> Pairs:
    """Pairs between rows of ``a`` and ``b`` at or above ``threshold`` (``upper``: a is b, pairs i < j only)."""
    sims = a @ b.T
    i, j = np.nonzero(sims >= threshold)
    if upper:
        keep = i < j
        i, j = i[keep], j[keep]
    left, right = a_pos[i], b_pos[j]
    return Pairs(np.minimum(left, right), np.maximum(left, right), sims[i, j].astype(np.float32))


def exact_pairs(vectors: np.ndarray, threshold: float, block: int = DEFAULT_BLOCK) -> Pairs:
    """Every pair of rows whose cosine is >= ``threshold``, by blocks of the upper triangle (memory is
    one (block, block) matrix whatever the number of rows)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    pos = np.arange(n, dtype=np.int64)
    found: list[Pairs] = []
    for i in range(0, n, block):
        for j in range(i, n, block):
            a, b = vectors[i : i + block], vectors[j : j + block]
            found.append(_block_pairs(a, b, threshold, pos[i : i + block], pos[j : j + block], upper=i == j))
    return Pairs.concat(found)


def partition_members(probes: np.ndarray, partitions: Iterable[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For each partition: (partition, positions of the rows at home in it, positions of the rows that
    probe it from another home). One sort of the assignments, not a scan of them per partition."""
    homes = probes[:, 0]
    home_order = np.argsort(homes, kind="stable")
    home_sorted = homes[home_order]
    rows = np.repeat(np.arange(len(probes)), probes.shape[1] - 1)
    visited = probes[:, 1:].reshape(-1)
    away = visited != homes[rows]
    rows, visited = rows[away], visited[away]
    guest_order = np.argsort(visited, kind="stable")
    guest_rows, guest_sorted = rows[guest_order], visited[guest_order]
    for p in partitions:
        lo, hi = np.searchsorted(home_sorted, p), np.searchsorted(home_sorted, p, side="right")
        g_lo, g_hi = np.searchsorted(guest_sorted, p), np.searchsorted(guest_sorted, p, side="right")
        yield p, np.sort(home_order[lo:hi]), np.sort(guest_rows[g_lo:g_hi])


def pairs_in_partition(
    vectors: np.ndarray, members: np.ndarray, guests: np.ndarray, threshold: float, block: int = DEFAULT_BLOCK
) -> Pairs:
    """Pairs among a partition's members and between its members and its guests (as positions of
    ``vectors``)."""
    found: list[Pairs] = []
    for i in range(0, len(members), block):
        rows = members[i : i + block]
        a = vectors[rows]
        for j in range(i, len(members), block):
            cols = members[j : j + block]
            found.append(_block_pairs(a, vectors[cols], threshold, rows, cols, upper=i == j))
        for j in range(0, len(guests), block):
            cols = guests[j : j + block]
            found.append(_block_pairs(a, vectors[cols], threshold, rows, cols, upper=False))
    return Pairs.concat(found)


def partition_pairs(vectors: np.ndarray, probes: np.ndarray, threshold: float) -> Pairs:
    """All pairs partitioned mode finds, every partition in turn (``probes`` from ``Partitioner.assign``)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    partitions = np.unique(probes[:, 0]).tolist()
    found = [pairs_in_partition(vectors, m, g, threshold) for _, m, g in partition_members(probes, partitions)]
    return Pairs.concat(found)


def mutual_best(pairs: Pairs, n: int) -> Pairs:
    """Only the pairs in which each row is the other's most similar row (reciprocal nearest neighbours
    among the pairs found), plus every pair at similarity 1 (identical texts and vectors).

    Union-find over every pair above a threshold chains rows that are each close to the next one but not
    to each other (neighbouring verses, boilerplate variants); keeping only reciprocal best matches breaks
    those chains. Run it on all of a job's pairs at once: a row's best match may be in another part."""
    best = np.full(n, -np.inf, dtype=np.float32)
    np.maximum.at(best, pairs.left, pairs.similarity)
    np.maximum.at(best, pairs.right, pairs.similarity)
    sim = pairs.similarity
    keep = ((sim >= best[pairs.left]) & (sim >= best[pairs.right])) | (sim >= 1 - 1e-6)
    return Pairs(pairs.left[keep], pairs.right[keep], sim[keep])


@dataclass(frozen=True)
class Group:
    """One group of near-duplicates: the kept row, the removed rows and each one's cosine to the kept row."""

    kept: int
    removed: tuple[int, ...]
    similarity: tuple[float, ...]


def group(
    pairs: Pairs,
    n: int,
    vectors: np.ndarray,
    *,
    policy: KeepPolicy = KeepPolicy.FIRST,
    order_keys: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
) -> list[Group]:
    """Connected groups of the pair graph over ``n`` rows, one kept per group by ``policy``.

    ``order_keys`` (the document ids) decide ``first`` and break ties; ``lengths`` (text lengths) decide
    ``longest``; ``nearest`` keeps the row of highest cosine to the group's mean vector."""
    if len(pairs) == 0:
        return []
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs.left, pairs.right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    touched = np.unique(np.concatenate([pairs.left, pairs.right]))
    by_label = labels[touched]
    order = np.argsort(by_label, kind="stable")
    touched, by_label = touched[order], by_label[order]
    cuts = np.nonzero(np.diff(by_label))[0] + 1
    keys = order_keys if order_keys is not None else [f"{i:020d}" for i in range(n)]
    groups: list[Group] = []
    for rows in np.split(touched, cuts):
        kept = _keep(rows, vectors, policy, keys, lengths)
        removed = sorted((int(r) for r in rows if r != kept), key=lambda r: keys[r])
        sims = vectors[removed] @ vectors[kept] if removed else np.zeros(0, np.float32)
        groups.append(Group(kept, tuple(removed), tuple(round(float(s), 6) for s in sims)))
    groups.sort(key=lambda g: keys[g.kept])
    return groups


def _keep(
    rows: np.ndarray, vectors: np.ndarray, policy: KeepPolicy, keys: Sequence[str], lengths: Sequence[int] | None
) -> int:
    by_key = sorted((int(r) for r in rows), key=lambda r: keys[r])
    if policy == KeepPolicy.LONGEST and lengths is not None:
        return max(by_key, key=lambda r: lengths[r])  # max keeps the first of equals: the smallest id
    if policy == KeepPolicy.NEAREST:
        members = vectors[by_key]
        scores = members @ members.mean(axis=0)
        return by_key[int(np.argmax(scores))]
    return by_key[0]


def found_pairs(groups: Sequence[Group]) -> set[tuple[int, int]]:
    """The pairs a set of groups implies (every two rows of a group), as (smaller, larger) positions:
    how the benchmark and tests count what a grouping found."""
    out: set[tuple[int, int]] = set()
    for g in groups:
        rows = sorted((g.kept, *g.removed))
        out.update((a, b) for k, a in enumerate(rows) for b in rows[k + 1 :])
    return out
