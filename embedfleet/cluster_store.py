"""A cluster job's results as Parquet tables on the dataset store, beside the collection.

``collections/<collection>/clusters/<job_id>/`` holds

- ``assignments.parquet``: ``id`` (the document id), ``pk`` (the Milvus primary key), ``cluster`` (int32,
  -1 for HDBSCAN noise) and ``similarity`` (float32, cosine to the cluster's centre), in scan order;
- ``clusters.parquet``: one row per cluster: ``cluster``, ``size``, ``terms``/``term_scores`` (c-TF-IDF) and
  ``representative_ids``/``_texts``/``_similarities``, largest cluster first;
- ``map.parquet``: ``id``, ``cluster``, ``x``, ``y``, ``text``: the 2-D map sample.

Why not a scalar field in Milvus: adding a field to every row means rewriting (upserting) every row with
its vector, the cost of indexing the collection again, and a second clustering would rewrite them all
once more; a Parquet table is written once, sequentially, is read by any tool (pandas, DuckDB, Spark) and
joins back to the rows by ``pk``/``id``. Each table is written under a temporary name and moved into
place, so a retried part replaces its files and a reader never sees half of one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embedfleet.cluster_types import Assignment, ClusterSummary, MapPoint, Representative
from embedfleet.datastore import open_filesystem, replacing
from embedfleet.domain import ResultsRef
from embedfleet.errors import NotFound

ASSIGNMENTS = "assignments.parquet"
CLUSTERS = "clusters.parquet"
MAP = "map.parquet"

_ASSIGNMENT_SCHEMA = pa.schema(
    [("id", pa.string()), ("pk", pa.int64()), ("cluster", pa.int32()), ("similarity", pa.float32())]
)


def results_directory(root: str, collection: str, job_id: str) -> str:
    """Where a job's tables go (``collection`` and ``job_id`` are validated names)."""
    return f"{root.rstrip('/')}/collections/{collection}/clusters/{job_id}"


@contextmanager
def _replacing(ref: ResultsRef, name: str) -> Iterator[pa.NativeFile]:
    fs, _ = open_filesystem(ref.filesystem)
    with replacing(fs, f"{ref.directory}/{name}") as out:
        yield out


class AssignmentWriter:
    """Appends batches to the assignments table being written (see ``assignments``)."""

    def __init__(self, writer: pq.ParquetWriter) -> None:
        self._writer = writer

    def write(self, ids: list[str], pks: np.ndarray, clusters: np.ndarray, similarities: np.ndarray) -> None:
        columns = [pa.array(ids, pa.string()), pa.array(pks), pa.array(clusters, pa.int32()), pa.array(similarities)]
        self._writer.write_table(pa.table(columns, schema=_ASSIGNMENT_SCHEMA))


@contextmanager
def assignments(ref: ResultsRef) -> Iterator[AssignmentWriter]:
    """The assignments table, streamed batch by batch (bounded memory) and moved into place at the end."""
    with _replacing(ref, ASSIGNMENTS) as out, pq.ParquetWriter(out, _ASSIGNMENT_SCHEMA) as writer:
        yield AssignmentWriter(writer)


def write_summaries(ref: ResultsRef, summaries: list[ClusterSummary], points: list[MapPoint]) -> None:
    clusters = pa.table(
        {
            "cluster": pa.array([s.cluster for s in summaries], pa.int32()),
            "size": pa.array([s.size for s in summaries], pa.int64()),
            "terms": [[t for t, _ in s.terms] for s in summaries],
            "term_scores": [[w for _, w in s.terms] for s in summaries],
            "representative_ids": [[r.id for r in s.representatives] for s in summaries],
            "representative_texts": [[r.text for r in s.representatives] for s in summaries],
            "representative_similarities": pa.array(
                [[r.similarity for r in s.representatives] for s in summaries], pa.list_(pa.float32())
            ),
        }
    )
    with _replacing(ref, CLUSTERS) as out:
        pq.write_table(clusters, out)
    table = pa.table(
        {
            "id": pa.array([p.id for p in points], pa.string()),
            "cluster": pa.array([p.cluster for p in points], pa.int32()),
            "x": pa.array([p.x for p in points], pa.float32()),
            "y": pa.array([p.y for p in points], pa.float32()),
            "text": pa.array([p.text for p in points], pa.string()),
        }
    )
    with _replacing(ref, MAP) as out:
        pq.write_table(table, out)


def _read(ref: ResultsRef, name: str, filters: pc.Expression | None = None) -> pa.Table:
    fs, _ = open_filesystem(ref.filesystem)
    path = f"{ref.directory}/{name}"
    try:
        return pq.read_table(path, filesystem=fs, filters=filters)
    except FileNotFoundError:
        raise NotFound(f"the cluster results are gone from {path} (removed by someone)") from None


def read_summaries(ref: ResultsRef) -> list[ClusterSummary]:
    rows = _read(ref, CLUSTERS).to_pylist()
    return [
        ClusterSummary(
            cluster=r["cluster"],
            size=r["size"],
            terms=list(zip(r["terms"], r["term_scores"], strict=True)),
            representatives=[
                Representative(i, t, s)
                for i, t, s in zip(
                    r["representative_ids"], r["representative_texts"], r["representative_similarities"], strict=True
                )
            ],
        )
        for r in rows
    ]


def read_assignments(
    ref: ResultsRef, offset: int, limit: int, cluster: int | None = None
) -> tuple[list[Assignment], bool]:
    """The assignments of rows ``offset``..``offset + limit`` (of one cluster's rows if given),
    and whether more follow."""
    filters = pc.field("cluster") == cluster if cluster is not None else None
    table = _read(ref, ASSIGNMENTS, filters).select(["id", "cluster", "similarity"])
    page = table.slice(offset, limit)
    rows = [Assignment(r["id"], r["cluster"], r["similarity"]) for r in page.to_pylist()]
    return rows, offset + limit < table.num_rows


def read_map(ref: ResultsRef) -> list[MapPoint]:
    return [MapPoint(r["id"], r["cluster"], r["x"], r["y"], r["text"]) for r in _read(ref, MAP).to_pylist()]
