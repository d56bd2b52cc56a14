"""A dedup job's data in the dataset store (``DedupParams.output``); Redis keeps only its control state.

- ``centroids.npy``: the partitions the job's first part trained on a sample (float32, (k, d)).
- ``pairs/part-NNNNN.parquet``: one per part, the pairs it found (``left``/``right`` primary keys,
  ``similarity``) and, in ``rows-NNNNN.parquet``, the rows those pairs touch (``pk``, ``id``,
  ``text_bytes``, ``vector``) so the merge needs no further read of Milvus.
- ``groups.parquet``: the result (``kept_id``, ``kept_pk``, ``removed_ids``, ``removed_pks``,
  ``similarity``: each removed row's cosine to the kept one), sorted by ``kept_id``, for paging and export.

Every file is written to a temporary name and moved into place: a reader never sees half a file,
and a retried part replaces its own files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import FileType

from embedfleet.datastore import count_parts, open_filesystem, replacing
from embedfleet.domain import ResultsRef
from embedfleet.errors import FailedPrecondition

GROUPS_FILE = "groups.parquet"
_GROUP_SCHEMA = pa.schema(
    [
        ("kept_id", pa.string()),
        ("kept_pk", pa.int64()),
        ("removed_ids", pa.list_(pa.string())),
        ("removed_pks", pa.list_(pa.int64())),
        ("similarity", pa.list_(pa.float32())),
    ]
)


@dataclass(frozen=True)
class PartFindings:
    """What one part found: pairs of primary keys and the rows they touch."""

    left: np.ndarray
    right: np.ndarray
    similarity: np.ndarray
    pks: np.ndarray
    ids: list[str]
    text_bytes: np.ndarray
    vectors: np.ndarray


@dataclass(frozen=True)
class StoredGroup:
    kept_id: str
    kept_pk: int
    removed_ids: list[str]
    removed_pks: list[int]
    similarity: list[float]


class DedupStore:
    def __init__(self, ref: ResultsRef) -> None:
        self.fs, _ = open_filesystem(ref.filesystem)
        self.dir = ref.directory

    def _write(self, path: str, data: bytes) -> None:
        with replacing(self.fs, path) as out:
            out.write(data)

    def _read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as src:
            return bytes(src.read())

    def _table_bytes(self, table: pa.Table) -> bytes:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    # -- centroids ---------------------------------------------------------------------------------
    def write_centroids(self, centroids: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, centroids.astype(np.float32), allow_pickle=False)
        self._write(f"{self.dir}/centroids.npy", buf.getvalue())

    def read_centroids(self) -> np.ndarray | None:
        """The job's centroids; None until a part has trained them."""
        path = f"{self.dir}/centroids.npy"
        if self.fs.get_file_info(path).type == FileType.NotFound:
            return None
        return np.load(io.BytesIO(self._read(path)), allow_pickle=False)

    # -- part findings -----------------------------------------------------------------------------
    def write_part(self, part: int, found: PartFindings) -> None:
        pairs = pa.table({"left": found.left, "right": found.right, "similarity": found.similarity})
        width = found.vectors.shape[1]
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(found.vectors.reshape(-1), pa.float32()), width)
        rows = pa.table({"pk": found.pks, "id": found.ids, "text_bytes": found.text_bytes, "vector": vectors})
        # Rows first: a part's pairs file is the mark that the part is complete.
        self._write(f"{self.dir}/pairs/rows-{part:05d}.parquet", self._table_bytes(rows))
        self._write(f"{self.dir}/pairs/part-{part:05d}.parquet", self._table_bytes(pairs))

    def parts_written(self) -> int:
        return count_parts(self.fs, f"{self.dir}/pairs")

    def read_parts(self, parts: int) -> PartFindings:
        """Every part's findings together (rows touched by several parts appear once)."""
        pairs = pa.concat_tables(
            [pq.read_table(io.BytesIO(self._read(f"{self.dir}/pairs/part-{p:05d}.parquet"))) for p in range(parts)]
        )
        rows = pa.concat_tables(
            [pq.read_table(io.BytesIO(self._read(f"{self.dir}/pairs/rows-{p:05d}.parquet"))) for p in range(parts)]
        )
        pks = rows.column("pk").to_numpy()
        _, first = np.unique(pks, return_index=True)
        rows = rows.take(pa.array(first))
        width = rows.schema.field("vector").type.list_size
        vectors = rows.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return PartFindings(
            left=pairs.column("left").to_numpy(),
            right=pairs.column("right").to_numpy(),
            similarity=pairs.column("similarity").to_numpy(),
            pks=rows.column("pk").to_numpy(),
            ids=rows.column("id").to_pylist(),
            text_bytes=rows.column("text_bytes").to_numpy(),
            vectors=vectors.reshape(-1, width).astype(np.float32),
        )

    # -- groups ------------------------------------------------------------------------------------
    def write_groups(self, groups: Sequence[StoredGroup]) -> None:
        table = pa.Table.from_pylist([g.__dict__ for g in groups], schema=_GROUP_SCHEMA)
        self._write(f"{self.dir}/{GROUPS_FILE}", self._table_bytes(table))

    def groups_table(self) -> pa.Table:
        try:
            return pq.read_table(io.BytesIO(self._read(f"{self.dir}/{GROUPS_FILE}")))
        except FileNotFoundError:
            raise FailedPrecondition(
                "the job's groups are not written yet (or were removed with the job's data); wait for the job "
                "to succeed"
            ) from None

    def read_groups(self, offset: int, limit: int) -> tuple[list[StoredGroup], int]:
        """Groups ``offset`` .. ``offset + limit`` and the total number of groups."""
        table = self.groups_table()
        page = table.slice(offset, limit).to_pylist()
        return [StoredGroup(**row) for row in page], table.num_rows
