"""Deduplication quality on real labelled data and speed at scale, with the job's own code path
(``worker/kinds/dedup.find_pairs``: text pass, then exact or partitioned vector pairs; ``dedup.group``).

    .venv/bin/python bench/dedup.py bible [--thresholds 0.75,0.8,0.85,0.9] [--no-semhash]
    .venv/bin/python bench/dedup.py scale --rows 100000
    .venv/bin/python bench/dedup.py scale --rows 1000000

**bible**: the 31,095 KJV/WEB verse pairs, 62,190 texts embedded once with all-MiniLM-L6-v2
(``bench/dedup_vectors.py`` caches them). A verse's two translations are the true pairs. Pairs are
counted two ways: *raw* = every pair at or above the threshold (what exact mode finds); *star* = after
grouping, each removed row with the row it is removed for (``kept``), which is how SemHash reports a
duplicate (each filtered record with its ``duplicate_of``). SemHash 0.5 runs on the same vectors (an
encoder that looks them up), in the same run.

**scale**: synthetic 384-d vectors (said so): clustered (a centre per 200 rows, cosine to the centre ~0.5)
with 5 % of rows given a planted near-duplicate (cosine 0.85-0.99). Partitioned mode runs whole in a
child process (wall time, peak RSS with the data); exact all-pairs runs on a subsample and is
extrapolated by (rows / subsample)^2 (said in the output). Recall vs exact is measured on a random
sample of query rows whose exact neighbours at the threshold are found by brute force against all rows.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dedup_vectors import bible_texts, bible_vectors

from embedfleet import dedup, partitions
from embedfleet.collection_scan import RowBatch
from embedfleet.domain import DedupMode, DedupParams, KeepPolicy, ResultsRef
from embedfleet.gateway.kinds.dedup import DEFAULT_PROBE
from embedfleet.worker.kinds.dedup import find_pairs

_OUT = ResultsRef(filesystem="/tmp", directory="/tmp/unused")


def _params(
    mode: DedupMode, threshold: float, n_probe: int = DEFAULT_PROBE, policy: KeepPolicy = KeepPolicy.FIRST
) -> DedupParams:
    return DedupParams(collection="bench", mode=mode, threshold=threshold, n_probe=n_probe, policy=policy, output=_OUT)


def _rows(vectors: np.ndarray, texts: list[str]) -> RowBatch:
    n = len(vectors)
    return RowBatch(np.arange(n, dtype=np.int64), [f"{i:08d}" for i in range(n)], vectors, texts)


def exact(rows: RowBatch, threshold: float) -> dedup.Pairs:
    probes = np.zeros((len(rows), 1), np.int64)
    return find_pairs(rows, probes, [0], _params(DedupMode.EXACT, threshold))


def partitioned(
    rows: RowBatch, threshold: float, k: int = 0, n_probe: int = DEFAULT_PROBE, seed: int = 0
) -> dedup.Pairs:
    """Train on a sample, assign, compare within partitions: what a job's planner and parts do together."""
    n = len(rows)
    k = k or partitions.default_k(n)
    rng = np.random.default_rng(seed)
    sample = rows.vectors[rng.choice(n, min(n, k * 64), replace=False)]
    part = partitions.train(sample, k, seed=seed, niter=10)
    probes = part.assign(rows.vectors, n_probe)
    return find_pairs(rows, probes, list(range(part.k)), _params(DedupMode.PARTITIONED, threshold, n_probe))


def _pair_set(left: np.ndarray, right: np.ndarray) -> set[tuple[int, int]]:
    a, b = np.minimum(left, right), np.maximum(left, right)
    return set(zip(a.tolist(), b.tolist(), strict=True))


def star_pairs(pairs: dedup.Pairs, rows: RowBatch) -> set[tuple[int, int]]:
    groups = dedup.group(pairs, len(rows), rows.vectors, order_keys=rows.ids)
    return {(min(r, g.kept), max(r, g.kept)) for g in groups for r in g.removed}


def prf(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float, float]:
    tp = len(found & truth)
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = call()
    return out, time.perf_counter() - start


class _Lookup:
    """A SemHash encoder that returns the benchmark's cached vectors (same vectors for both sides)."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.index = {t: i for i, t in enumerate(texts)}
        self.vectors = vectors

    def encode(self, inputs: Any, **kwargs: Any) -> np.ndarray:
        return self.vectors[[self.index[t] for t in inputs]]


def bible(thresholds: list[float], with_semhash: bool, verses: int) -> None:
    refs, texts = bible_texts(verses)
    vectors = bible_vectors(verses)
    n = len(refs)
    rows = _rows(vectors, texts)
    truth = {(i, n + i) for i in range(n)}
    semhash_index = None
    if with_semhash:
        from semhash import SemHash

        records = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
        semhash_index, build_s = _timed(
            lambda: SemHash.from_records(records, columns=["text"], model=_Lookup(texts, vectors))
        )
        print(f"SemHash index build (usearch, once): {build_s:.1f} s")
    print(f"{2 * n} texts, {n} true pairs; raw = pairs >= threshold, star = (removed, kept) after grouping")
    header = "| threshold | method | s | raw P | raw R | raw F1 | star P | star R | star F1 | raw pairs vs exact |"
    print(header)
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in thresholds:
        ex, ex_s = _timed(functools.partial(exact, rows, t))
        pa, pa_s = _timed(functools.partial(partitioned, rows, t))
        ex_raw = _pair_set(ex.left, ex.right)
        label = f"partitioned k={partitions.default_k(len(rows))} probe {DEFAULT_PROBE}"
        runs = [("exact", ex, ex_s), (label, pa, pa_s)]
        runs += [(f"{name} + mutual", dedup.mutual_best(p, len(rows)), s) for name, p, s in runs]
        for name, pairs, secs in runs:
            raw = _pair_set(pairs.left, pairs.right)
            star = star_pairs(pairs, rows)
            rp, rr, rf = prf(raw, truth)
            sp, sr, sf = prf(star, truth)
            vs = len(raw & ex_raw) / max(len(ex_raw), 1)
            cells = [f"{t:.2f}", name, f"{secs:.1f}", *(f"{v:.3f}" for v in (rp, rr, rf, sp, sr, sf)), f"{vs:.4f}"]
            print("| " + " | ".join(cells) + " |")
        if semhash_index is not None:
            result, sh_s = _timed(functools.partial(semhash_index.self_deduplicate, threshold=t))
            ends = ((int(d.record["id"]), int(d.duplicate_of["id"])) for d in result.filtered)
            star = {(min(a, b), max(a, b)) for a, b in ends}
            sp, sr, sf = prf(star, truth)
            print(f"| {t:.2f} | SemHash 0.5 | {sh_s:.1f} | | | | {sp:.3f} | {sr:.3f} | {sf:.3f} | |")
        sys.stdout.flush()


# -- scale ---------------------------------------------------------------------------------------
DIM = 384


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, planted pairs as (original, copy) rows): clustered unit vectors, 5 % with a near copy."""
    rng = np.random.default_rng(seed)
    planted = int(n * 0.05)
    base_n = n - planted
    centres = rng.standard_normal((max(1, base_n // 200), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, base_n, 100_000):
        m = min(100_000, base_n - start)
        noise = rng.standard_normal((m, DIM)).astype(np.float32) / np.sqrt(DIM)
        block = centres[rng.integers(0, len(centres), m)] + noise
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    originals = rng.choice(base_n, planted, replace=False)
    eps = rng.uniform(0.1, 0.55, planted).astype(np.float32)[:, None]  # cosine ~ 1/sqrt(1+eps^2): 0.88-0.995
    noise = rng.standard_normal((planted, DIM)).astype(np.float32) / np.sqrt(DIM)
    copies = out[originals] + eps * noise
    out[base_n:] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    return out, np.stack([originals, np.arange(base_n, n)], axis=1)


def _child(task: str, n: int, threshold: float, sub: int, queries: int, n_probe: int) -> dict[str, Any]:
    out: dict[str, Any] = {"import_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    vectors, planted = synthetic(n)
    rows = _rows(vectors, [])
    if task == "partitioned":
        pairs, secs = _timed(lambda: partitioned(rows, threshold, n_probe=n_probe))
        found = _pair_set(pairs.left, pairs.right)
        out.update(seconds=secs, pairs=len(found))
        out["planted_recall"] = len(found & _pair_set(planted[:, 0], planted[:, 1])) / len(planted)
        _, group_s = _timed(lambda: dedup.group(pairs, n, vectors))
        out["group_seconds"] = group_s
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the check below
        # Recall vs exact on sampled query rows: their exact neighbours at the threshold, by brute force.
        rng = np.random.default_rng(1)
        q = rng.choice(n, queries, replace=False)
        sims = np.concatenate([vectors[q] @ vectors[s : s + 200_000].T for s in range(0, n, 200_000)], axis=1)
        qi, xi = np.nonzero(sims >= threshold)
        keep = q[qi] != xi
        want = _pair_set(q[qi][keep], xi[keep])
        out["exact_sample_pairs"] = len(want)
        out["recall_vs_exact"] = len(want & found) / max(len(want), 1)
    else:
        idx = np.random.default_rng(2).choice(n, min(sub, n), replace=False)
        sub_rows = _rows(np.ascontiguousarray(vectors[idx]), [])
        _, secs = _timed(lambda: exact(sub_rows, threshold))
        out.update(seconds=secs, rows=len(idx))
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def scale(n: int, threshold: float, sub: int, queries: int, n_probe: int) -> None:
    ctx = mp.get_context("spawn")
    results: dict[str, dict[str, Any]] = {}
    for task in ("exact", "partitioned"):
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            results[task] = pool.apply(_child, (task, n, threshold, sub, queries, n_probe))
        print(task, results[task])
        sys.stdout.flush()
    ex, pa = results["exact"], results["partitioned"]
    extrapolated = ex["seconds"] * (n / ex["rows"]) ** 2
    print(
        f"\n| rows | threshold | partitioned s | peak RSS MB | recall vs exact (sampled) | planted recall | "
        f"exact s on {ex['rows']} rows | exact s extrapolated to {n} | speed-up |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cells = [
        str(n),
        str(threshold),
        f"{pa['seconds']:.1f} (+{pa['group_seconds']:.1f} grouping)",
        f"{pa['peak_rss_mb']:.0f} (imports {pa['import_rss_mb']:.0f})",
        f"{pa['recall_vs_exact']:.4f} ({pa['exact_sample_pairs']} pairs of {queries} rows)",
        f"{pa['planted_recall']:.4f}",
        f"{ex['seconds']:.1f}",
        f"{extrapolated:.0f}",
        f"{extrapolated / pa['seconds']:.0f}x",
    ]
    print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("bible")
    b.add_argument("--thresholds", default="0.75,0.8,0.85,0.9")
    b.add_argument("--no-semhash", action="store_true")
    b.add_argument("--verses", type=int, default=0, help="the first N verses only (0: all 31,095)")
    s = sub.add_parser("scale")
    s.add_argument("--rows", type=int, default=100_000)
    s.add_argument("--threshold", type=float, default=0.85)
    s.add_argument("--exact-rows", type=int, default=20_000, help="subsample exact mode runs on")
    s.add_argument("--queries", type=int, default=1000, help="rows whose exact neighbours check recall")
    s.add_argument("--n-probe", type=int, default=3, help="partitions each row probes (the job's default is 8)")
    args = parser.parse_args()
    if args.what == "bible":
        bible([float(t) for t in args.thresholds.split(",")], not args.no_semhash, args.verses)
    else:
        scale(args.rows, args.threshold, args.exact_rows, args.queries, args.n_probe)


if __name__ == "__main__":
    main()
