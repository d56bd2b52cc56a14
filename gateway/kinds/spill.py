"""Streamed documents spilled to the dataset store as they arrive, as Parquet shards of the job.

The gateway holds one part's documents at a time: each validated part becomes one row group, and a
shard file rolls over once it holds ``shard_rows`` documents, so a job of any size is a handful of
files (the spec lists them, sized by shards, not by documents or parts). The shards are then the
job's corpus by reference, read by the workers like any other (``corpus_refs.read_rows``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from embedfleet.datastore import DataStore
from embedfleet.domain import CorpusFile, CorpusFormat, CorpusRef, Document

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string())])


class ShardWriter:
    """Writes one job's streamed corpus into ``<job dir>/input/shard-NNNNN.parquet``."""

    def __init__(self, data: DataStore, job_id: str, shard_rows: int) -> None:
        self.data = data
        self.directory = f"{data.job_dir(job_id)}/input"
        self.shard_rows = shard_rows
        self.files: list[CorpusFile] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0

    def write(self, documents: Sequence[Document]) -> None:
        """Append one part's documents as one row group (a part never straddles two shards)."""
        if self._writer is None:
            path = f"{self.directory}/shard-{len(self.files):05d}.parquet"
            if not self.files:
                self.data.fs.create_dir(self.directory)
            self._writer = pq.ParquetWriter(self.data.fs.open_output_stream(path), SCHEMA)
            self.files.append(CorpusFile(path=path, rows=0))
        columns = {
            "id": [d.id for d in documents],
            "text": [d.text for d in documents],
            "metadata": [d.metadata_json or None for d in documents],
        }
        self._writer.write_table(pa.table(columns, schema=SCHEMA))
        self._rows += len(documents)
        if self._rows >= self.shard_rows:
            self._roll()

    def _roll(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self.files[-1] = self.files[-1].model_copy(update={"rows": self._rows})
            self._rows = 0

    def close(self, max_text_bytes: int, max_metadata_bytes: int) -> CorpusRef:
        """Finish the last shard; the shards as the job's corpus."""
        self._roll()
        return CorpusRef(
            filesystem=self.data.uri,
            format=CorpusFormat.PARQUET,
            files=tuple(self.files),
            max_text_bytes=max_text_bytes,
            max_metadata_bytes=max_metadata_bytes,
        )

    def abandon(self) -> None:
        """Close an unfinished shard so that the job's directory can be removed."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
