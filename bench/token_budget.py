#!/usr/bin/env python
"""The worker's CPU batch policy (padded tokens and texts per forward) on parts as jobs cut them.

    .venv/bin/python bench/token_budget.py --runs 3

Two real corpora, all-MiniLM-L6-v2 from its package on the CPU, this process only (no cluster):
short texts (the first 3,000 WordNet definitions) and mixed-length English (900 Brown paragraphs with
Lee news, ``corpora.mixed_paragraphs``). Each corpus is cut into parts by the gateway's own part
sizing (``PartCutter`` at the default ``part_tokens``), and every part is encoded by the engine
(``SentenceTransformerEncoder``) under each (token budget, most texts) policy, as a worker encodes
the parts it is given. The baseline is one plain ``SentenceTransformer.encode(all texts,
batch_size=32)`` of the whole corpus in the same round. Rounds interleave every configuration;
the table gives each one's median docs/s and its ratio to the baseline's median.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from corpora import mixed_paragraphs, wordnet_docs

from embedfleet.domain import InputType
from embedfleet.gateway.kinds.part_sizing import PartStarts, part_sizing
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.registry import DEFAULT_MODELS
from embedfleet.worker.models.batching import DEFAULT_MAX_BATCH, DEFAULT_TOKEN_BUDGET
from embedfleet.worker.models.torch import SentenceTransformerEncoder

TORCH = DEFAULT_MODELS[0]
POLICIES = "512x64,512x256,1024x64,1024x256,2048x256,4096x64,4096x256"


def parts(texts: list[str]) -> list[list[str]]:
    """``texts`` cut as the gateway cuts a corpus into parts (token-sized, default settings)."""
    starts = PartStarts(part_sizing(0, GatewaySettings(), TORCH.max_seq_length))
    for text in texts:
        starts.add(len(text.encode()))
    bounds = [*starts.starts, len(texts)]
    return [texts[a:b] for a, b in itertools.pairwise(bounds)]


def encode_parts(encoder: SentenceTransformerEncoder, cut: list[list[str]]) -> None:
    """Every part through the engine, one ``encode`` each, as a worker runs the parts it is given."""
    for part in cut:
        encoder.encode(part, InputType.DOCUMENT)


def timed(run: Callable[[], object], docs: int) -> float:
    start = time.perf_counter()
    run()
    return docs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--policies", default=POLICIES, help="comma-separated BUDGETxTEXTS")
    args = parser.parse_args()

    corpora = {
        "WordNet definitions": [str(d["text"]) for d in wordnet_docs(3000)],
        "mixed paragraphs": [str(d["text"]) for d in mixed_paragraphs(900)],
    }
    policies = [tuple(int(v) for v in p.split("x")) for p in args.policies.split(",")]
    encoders = {p: SentenceTransformerEncoder(TORCH, "cpu", p[1], budget=p[0]) for p in policies}
    plain = next(iter(encoders.values())).model
    for encoder in encoders.values():
        encoder.encode(corpora["mixed paragraphs"][:64], InputType.DOCUMENT)  # warm-up
    figures: dict[tuple[str, str], list[float]] = {}
    for run in range(args.runs):
        for corpus, texts in corpora.items():
            cut = parts(texts)
            plain_run = functools.partial(plain.encode, texts, batch_size=32)
            figures.setdefault((corpus, "plain"), []).append(timed(plain_run, len(texts)))
            for (budget, most), encoder in encoders.items():
                runs = figures.setdefault((corpus, f"{budget}x{most}"), [])
                runs.append(timed(functools.partial(encode_parts, encoder, cut), len(texts)))
            print(f"run {run + 1} {corpus}: " + ", ".join(
                f"{k[1]} {v[-1]:.1f}" for k, v in figures.items() if k[0] == corpus
            ), flush=True)  # fmt: skip
    default = f"{DEFAULT_TOKEN_BUDGET['cpu']}x{DEFAULT_MAX_BATCH['cpu']}"
    print(f"\nmedians of {args.runs} interleaved rounds; {os.cpu_count()} cores; the default policy is {default}\n")
    for corpus, texts in corpora.items():
        sizes = [len(p) for p in parts(texts)]
        base = statistics.median(figures[(corpus, "plain")])
        print(f"{corpus}: {len(texts):,} texts in {len(sizes)} parts (median {statistics.median(sizes):.0f} texts)\n")
        print("| policy (padded tokens x texts) | docs/s (median) | ÷ plain encode |")
        print("|---|---:|---:|")
        for (name, label), values in figures.items():
            if name == corpus:
                shown = "plain `encode(batch_size=32)`" if label == "plain" else label
                print(f"| {shown} | {statistics.median(values):.1f} | {statistics.median(values) / base:.2f} |")
        print()


if __name__ == "__main__":
    main()
