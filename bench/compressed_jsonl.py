"""Reading a compressed JSONL corpus part by part: from the start of the stream every time, against
going on from where the process's last part of the file ended (``corpus_refs._Cursors``).

    .venv/bin/python bench/compressed_jsonl.py --rows 200000 --part 1000 --runs 3

One ``.jsonl.gz`` file of N WordNet-definition records (repeated to reach N), planned as the gateway
plans it; then every part ``read_rows`` in corpus order, timed: "from the start" with the cursors off
(what every part did before), "one process" with them on, and "two processes" where each of two
processes reads every other part at the same time (a Celery pool of two, or two Ray actors: each skips
the other's parts). Runs interleave the three; medians are reported with rows/s and their ratio.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from corpora import wordnet_docs

from embedfleet import corpus_refs
from embedfleet.corpus_refs import expand, plan_reference, read_rows
from embedfleet.datastore import DataStore
from embedfleet.domain import CorpusRef


def _read(ref: CorpusRef, part: int, offset: int, stride: int, cursors: int) -> None:
    corpus_refs._CURSORS = corpus_refs._Cursors(size=cursors)
    for first in range(offset * part, ref.rows, stride * part):
        read_rows(ref, first, min(part, ref.rows - first))


def _timed(ref: CorpusRef, part: int, processes: int, cursors: int) -> float:
    start = time.perf_counter()
    if processes == 1:
        _read(ref, part, 0, 1, cursors)
    else:
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_read, args=(ref, part, i, processes, cursors)) for i in range(processes)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
            if w.exitcode:
                raise SystemExit(f"a reader exited {w.exitcode}")
    return ref.rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--part", type=int, default=1000, help="rows per part")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    docs = wordnet_docs(10_000)
    with tempfile.TemporaryDirectory() as tmp:
        lines = (json.dumps({"id": f"d{i}", "text": docs[i % len(docs)]["text"]}) + "\n" for i in range(args.rows))
        raw = "".join(lines).encode()
        packed = gzip.compress(raw)
        (Path(tmp) / "corpus.jsonl.gz").write_bytes(packed)
        size = f"{len(raw) / 1e6:.0f} MB of JSONL, {len(packed) / 1e6:.1f} MB gzip"
        store = DataStore(tmp)
        ref = plan_reference(
            store.uri, expand(store.fs, store.path("corpus.jsonl.gz"), "corpus.jsonl.gz"), None,
            ("id", "text", "metadata"), 1 << 20, 65536,
        )  # fmt: skip
        paths = {"from the start (before)": (1, 0), "one process, cursor": (1, 4), "two processes, cursors": (2, 4)}
        figures: dict[str, list[float]] = {name: [] for name in paths}
        for run in range(args.runs):
            for name, (processes, cursors) in paths.items():
                figures[name].append(_timed(ref, args.part, processes, cursors))
            print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f} rows/s" for k, v in figures.items()), flush=True)
    base = statistics.median(figures["from the start (before)"])
    print(f"\n{args.rows:,} rows in one .jsonl.gz ({size}), parts of {args.part:,} rows, medians of {args.runs} runs\n")
    print("| reading every part | rows/s (median) | ratio |")
    print("|---|---:|---:|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):,.0f} | {statistics.median(values) / base:.1f} |")


if __name__ == "__main__":
    main()
