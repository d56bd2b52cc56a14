"""The benchmark corpora, read from ../shared/data beside the repository (see its README)."""

from __future__ import annotations

import json
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORDNET = SHARED_DATA / "wordnet-glosses" / "wordnet_synsets.jsonl"


def wordnet_docs(n: int) -> list[dict[str, object]]:
    """The first ``n`` WordNet definitions as index-job documents (id, text, metadata.lexname)."""
    docs: list[dict[str, object]] = []
    with WORDNET.open() as fh:
        for line in fh:
            row = json.loads(line)
            docs.append({"id": row["id"], "text": row["definition"], "metadata": {"lexname": row["lexname"]}})
            if len(docs) == n:
                break
    return docs


BROWN = SHARED_DATA / "brown-corpus" / "brown_docs.jsonl"
LEE_BACKGROUND = SHARED_DATA / "gensim-testdata" / "lee_background.txt"


def mixed_paragraphs(n: int, seed: int = 0) -> list[dict[str, object]]:
    """``n`` real English texts of mixed length as documents: Brown corpus paragraphs (all 15 genres,
    a seeded sample) with the Lee background news articles (long: most pass a 256-token window) mixed in
    at about one in seven, shuffled so parts see the mix a real corpus has."""
    import random

    rng = random.Random(seed)
    paragraphs = [
        (f"{row['id']}-{i}", text)
        for line in BROWN.open()
        for row in [json.loads(line)]
        for i, text in enumerate(row["paragraphs"])
    ]
    news = [
        (f"lee-{i}", text.strip()) for i, text in enumerate(LEE_BACKGROUND.read_text().splitlines()) if text.strip()
    ]
    take_news = min(len(news), n // 7)
    chosen = rng.sample(paragraphs, n - take_news) + rng.sample(news, take_news)
    rng.shuffle(chosen)
    return [{"id": doc_id, "text": text} for doc_id, text in chosen]
