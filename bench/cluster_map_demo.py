"""Make docs/cluster_map.png and docs/cluster_map.html from a real cluster job: WordNet glosses of eight
lexical categories indexed with the packaged all-MiniLM-L6-v2 on a local Celery system, clustered by
k-means with k = 8, drawn with ``embedfleet cluster-map``'s renderer.

    .venv/bin/python bench/cluster_map_demo.py [--per-category 250]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import local_cluster

from embedfleet.client.cluster_map import render
from embedfleet.client.sdk import EmbedfleetClient

ROOT = Path(__file__).resolve().parents[1]
GLOSSES = ROOT.parent / "shared" / "data" / "wordnet-glosses" / "wordnet_synsets.jsonl"
CATEGORIES = (
    "noun.animal",
    "noun.food",
    "noun.plant",
    "noun.body",
    "verb.motion",
    "noun.location",
    "noun.communication",
    "verb.weather",
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-category", type=int, default=250)
    args = parser.parse_args()
    kept: dict[str, list[dict[str, object]]] = {c: [] for c in CATEGORIES}
    with GLOSSES.open() as fh:
        for line in fh:
            row = json.loads(line)
            bucket = kept.get(row["lexname"])
            if bucket is not None and len(bucket) < args.per_category:
                bucket.append({"id": row["id"], "text": row["definition"], "metadata": {"lexname": row["lexname"]}})
    docs = [d for c in CATEGORIES for d in kept[c]]
    with local_cluster("celery") as local, EmbedfleetClient(local.gateway_address, timeout=300) as client:
        client.index(docs, "wordnet_map")
        job = client.cluster("wordnet_map", k=len(CATEGORIES))
        print(job.state, job.outputs, {k: round(v, 3) for k, v in job.metrics.items()})
        cluster_map = client.cluster_map(job.id)
        title = f"WordNet glosses ({len(docs)}, {len(CATEGORIES)} lexical categories): k-means, k={job.outputs['k']}"
        for name in ("cluster_map.png", "cluster_map.html"):
            print(render(cluster_map, ROOT / "docs" / name, title))


if __name__ == "__main__":
    main()
