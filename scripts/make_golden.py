#!/usr/bin/env python
"""Write golden vectors: fixed texts embedded by each shipped model, committed under tests/golden/.

Why: a dependency upgrade (torch, transformers, sentence-transformers, tokenizers) can change the
vectors a model produces without any error; vectors already stored in Milvus would then silently stop
matching new queries. ``tests/worker/test_golden.py`` re-embeds these texts through the same serving
path (``SentenceTransformerEncoder`` + ``embed_texts``, on CPU) and fails if anything moved.

Regenerate only on purpose (a new model, or a reviewed change that requires re-indexing):

    HF_HUB_OFFLINE=1 python scripts/make_golden.py [--model NAME ...]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from embedfleet.domain import InputType
from embedfleet.registry import DEFAULT_MODELS, ModelRegistry

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "tests" / "golden"

# Short and long, punctuation, digits, casing, non-ASCII, an empty-ish string and one past 256 tokens:
# the tokenizer paths that upgrades most often change.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on stage.",
    "Embeddings map text to vectors so that similar meanings are close together.",
    "What is the capital of Australia?",
    "Canberra is the capital city of Australia.",
    "I can't believe it's not butter!",
    "The interest rate rose by 0.25% to 4.35% on 3 March 2024.",
    "naïve café façade — déjà vu, Zürich, São Paulo",
    "東京は日本の首都です。",
    "ok",
    "BREAKING: Markets RALLY as inflation COOLS",
    "def add(a, b):\n    return a + b",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "the the the the the the the the",
    " ".join(["Long documents are truncated at the model's maximum sequence length."] * 40),
]


def golden_path(model_name: str) -> Path:
    return GOLDEN_DIR / f"{model_name}.npz"


def write_golden(model_name: str, out_dir: Path = GOLDEN_DIR) -> Path:
    import sentence_transformers
    import tokenizers
    import torch
    import transformers

    from embedfleet.worker.embedding import embed_texts
    from embedfleet.worker.models.torch import SentenceTransformerEncoder

    spec = ModelRegistry(DEFAULT_MODELS).resolve(model_name)
    encoder = SentenceTransformerEncoder(spec, "cpu", 32)
    vectors = {input_type.value: embed_texts(encoder, SENTENCES, input_type=input_type) for input_type in InputType}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.npz"
    np.savez_compressed(
        path,
        sentences=np.array(SENTENCES),
        document=vectors["document"].vectors.astype(np.float32),
        query=vectors["query"].vectors.astype(np.float32),
        model_name=np.array(spec.name),
        model_version=np.array(vectors["document"].version),
        made_with=np.array(
            f"sentence-transformers {sentence_transformers.__version__}, transformers {transformers.__version__}, "
            f"tokenizers {tokenizers.__version__}, torch {torch.__version__}"
        ),
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="registry name (default: every shipped model)")
    parser.add_argument("--out-dir", type=Path, default=GOLDEN_DIR)
    args = parser.parse_args()
    for name in args.model or [m.name for m in DEFAULT_MODELS]:
        path = write_golden(name, args.out_dir)
        print(f"wrote {path} ({len(SENTENCES)} texts)")


if __name__ == "__main__":
    main()
