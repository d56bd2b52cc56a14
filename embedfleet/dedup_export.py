"""Writing a dedup job's groups to a local file, as the SDK pages them in: Parquet (``kept_id``,
``removed_ids``, ``similarity``) or JSON Lines (one group per line), chosen by the file's suffix.
Groups are written a batch at a time, so the export's memory does not grow with the result."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

_BATCH = 5000
SCHEMA = pa.schema(
    [("kept_id", pa.string()), ("removed_ids", pa.list_(pa.string())), ("similarity", pa.list_(pa.float32()))]
)
FORMATS = (".parquet", ".jsonl")


class GroupLike(Protocol):
    @property
    def kept_id(self) -> str: ...
    @property
    def removed_ids(self) -> list[str]: ...
    @property
    def similarity(self) -> list[float]: ...


def export_groups(groups: Iterable[GroupLike], output: str | Path) -> int:
    """Write ``groups`` to ``output`` (.parquet or .jsonl); returns how many were written."""
    path = Path(output)
    if path.suffix not in FORMATS:
        raise ValueError(f"{path.name}: export to a .parquet or .jsonl file")
    count = 0
    if path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for g in groups:
                row = {"kept_id": g.kept_id, "removed_ids": g.removed_ids, "similarity": g.similarity}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        return count
    with pq.ParquetWriter(path, SCHEMA) as writer:
        batch: list[dict[str, object]] = []
        for g in groups:
            batch.append({"kept_id": g.kept_id, "removed_ids": g.removed_ids, "similarity": g.similarity})
            if len(batch) == _BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=SCHEMA))
            count += len(batch)
    return count
