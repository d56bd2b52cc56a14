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
