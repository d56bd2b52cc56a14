"""Dedup on ingest (an index job option): before a batch of a part is written, each document is checked
against the documents before it in the batch and against the rows the collection already holds.

Within the batch it is exact (``dedup.exact_pairs`` after the text pass): a document duplicates the
earliest kept document it pairs with. Against the collection it is one Milvus search per batch (top 2,
so a document re-indexed under its own id, which is an upsert, is not its own duplicate). Rows that other
parts of the same job write at the same moment are not seen until they are written: duplicates across
parts running in parallel can be missed (a dedup job afterwards finds them).

What was found goes to the dataset store, one Parquet file per part (``doc_id``, ``duplicate_of``,
``similarity``), rewritten whole by a retried part, and its count to the job's metrics under the part's
own key (``ingest_dedup.duplicates.part-NNNNN``), so a retry never counts twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pymilvus import MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet import dedup, milvus
from embedfleet.datastore import open_filesystem, replacing
from embedfleet.domain import Document, IngestDedup, IngestDedupAction
from embedfleet.errors import Retryable


@dataclass(frozen=True)
class Duplicate:
    doc_id: str
    duplicate_of: str
    similarity: float


def screen(
    docs: list[Document], vectors: np.ndarray, options: IngestDedup, client: MilvusClient, collection: str
) -> dict[int, Duplicate]:
    """The positions of ``docs`` that duplicate an earlier document or a stored row, with what they duplicate."""
    found: dict[int, Duplicate] = {}
    keys = np.fromiter((dedup.text_key(d.text) for d in docs), dtype=np.int64, count=len(docs))
    text_pairs, reps = dedup.text_pairs(keys)
    pairs = dedup.Pairs.concat([text_pairs, dedup.exact_pairs(vectors[reps], options.threshold).remap(reps)])
    order = np.lexsort((pairs.left, pairs.right))  # by later document, then earlier
    for a, b, sim in zip(pairs.left[order], pairs.right[order], pairs.similarity[order], strict=True):
        if int(b) not in found and int(a) not in found:
            found[int(b)] = Duplicate(docs[b].id, docs[a].id, round(float(sim), 6))
    rest = [i for i in range(len(docs)) if i not in found]
    if rest and client.has_collection(collection):
        try:
            hits = client.search(
                collection,
                data=vectors[rest].tolist(),
                limit=2,
                anns_field=milvus.VECTOR_FIELD,
                output_fields=[milvus.ID_FIELD],
            )
        except MilvusException as exc:
            raise Retryable(f"dedup on ingest could not search {collection!r}: {exc.message}") from exc
        for i, row in zip(rest, hits, strict=True):
            for hit in row:
                other = hit["entity"][milvus.ID_FIELD]
                if other != docs[i].id and hit["distance"] >= options.threshold:
                    found[i] = Duplicate(docs[i].id, other, round(float(hit["distance"]), 6))
                    break
    return found


def apply(
    docs: list[Document], found: dict[int, Duplicate], action: IngestDedupAction
) -> tuple[list[int], list[Document]]:
    """(positions to write, the documents to write there): duplicates left out, or marked in their metadata."""
    if action == IngestDedupAction.SKIP:
        keep = [i for i in range(len(docs)) if i not in found]
        return keep, [docs[i] for i in keep]
    out: list[Document] = []
    for i, doc in enumerate(docs):
        if i in found:
            meta = {
                **doc.metadata(),
                "duplicate_of": found[i].duplicate_of,
                "duplicate_similarity": found[i].similarity,
            }
            doc = doc.model_copy(update={"metadata_json": json.dumps(meta, ensure_ascii=False)})
        out.append(doc)
    return list(range(len(docs))), out


def record(options: IngestDedup, part: int, duplicates: list[Duplicate]) -> None:
    """Write a part's duplicates (all of them, so a retried part replaces its file)."""
    fs, _ = open_filesystem(options.output.filesystem)
    table = pa.table(
        {
            "doc_id": [d.doc_id for d in duplicates],
            "duplicate_of": [d.duplicate_of for d in duplicates],
            "similarity": pa.array([d.similarity for d in duplicates], pa.float32()),
        }
    )
    with replacing(fs, f"{options.output.directory}/part-{part:05d}.parquet") as out:
        pq.write_table(table, out)


def metric_name(part: int) -> str:
    return f"ingest_dedup.duplicates.part-{part:05d}"
