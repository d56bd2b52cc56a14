"""The end of a dedup job: join every part's pairs into groups, keep one row per group by the job's
policy, write the groups to the dataset store and, only when the job asked for it, delete the removed
rows from Milvus. The job's outputs say how many groups and duplicates it found and how many rows it
removed (0 on a dry run)."""

from __future__ import annotations

import numpy as np
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import dedup, milvus
from embedfleet.dedup_store import DedupStore, StoredGroup
from embedfleet.domain import DedupAction, DedupParams
from embedfleet.errors import Retryable
from embedfleet.jobstore import JobStore

# Primary keys per Milvus delete call.
_DELETE_BATCH = 1000


def merge(
    params: DedupParams, store: DedupStore, parts: int, client: MilvusClient, jobs: JobStore, job_id: str
) -> list[StoredGroup]:
    found = store.read_parts(parts)
    order = np.argsort(found.pks)
    pks = found.pks[order]
    left = order[np.searchsorted(pks, found.left)]
    right = order[np.searchsorted(pks, found.right)]
    pairs = dedup.Pairs.concat([dedup.Pairs(np.minimum(left, right), np.maximum(left, right), found.similarity)])
    if params.mutual:
        pairs = dedup.mutual_best(pairs, len(found.pks))
    groups = dedup.group(
        pairs,
        len(found.pks),
        found.vectors,
        policy=params.policy,
        order_keys=found.ids,
        lengths=found.text_bytes.tolist(),
    )
    stored = [
        StoredGroup(
            kept_id=found.ids[g.kept],
            kept_pk=int(found.pks[g.kept]),
            removed_ids=[found.ids[r] for r in g.removed],
            removed_pks=[int(found.pks[r]) for r in g.removed],
            similarity=list(g.similarity),
        )
        for g in groups
    ]
    store.write_groups(stored)
    duplicates = sum(len(g.removed_pks) for g in stored)
    removed = (
        delete_rows(client, params.collection, [pk for g in stored for pk in g.removed_pks])
        if (params.action == DedupAction.DELETE)
        else 0
    )
    jobs.report(
        job_id,
        metrics={"groups": float(len(stored)), "duplicates": float(duplicates), "pairs": float(len(pairs))},
        outputs={"groups": str(len(stored)), "duplicates": str(duplicates), "removed": str(removed)},
    )
    return stored


def delete_rows(client: MilvusClient, collection: str, pks: list[int]) -> int:
    """Delete rows by primary key; returns how many of them are gone afterwards. Counting what is gone
    (rather than adding up Milvus' delete counts) gives the same answer when a merge runs twice."""
    removed = 0
    try:
        for start in range(0, len(pks), _DELETE_BATCH):
            batch = pks[start : start + _DELETE_BATCH]
            client.delete(collection, ids=batch)
            expr = f"{milvus.PK_FIELD} in [{', '.join(str(pk) for pk in batch)}]"
            left = client.query(collection, filter=expr, output_fields=["count(*)"])
            removed += len(batch) - int(left[0]["count(*)"])
    except MilvusException as exc:
        raise Retryable(f"deleting duplicates from {collection!r} failed: {exc.message}") from exc
    return removed
