"""Assembling an embed job's chunks, in corpus order, into memory, a ``.npy`` or a Parquet file.

Chunks are written as they arrive, so a corpus larger than memory can still be embedded to disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


class ResultWriter:
    def __init__(self, output: str | Path | None, total: int) -> None:
        self.path = Path(output) if output is not None else None
        if self.path is not None and self.path.suffix not in (".npy", ".parquet"):
            raise ValueError(f"output {self.path} must end in .npy or .parquet")
        self.total = total
        self._array: np.ndarray | None = None
        self._parquet: Any = None  # pyarrow.parquet.ParquetWriter, opened with the first part

    def write(self, first: int, ids: list[str], vectors: np.ndarray) -> None:
        if self.path is not None and self.path.suffix == ".parquet":
            self._write_parquet(ids, vectors)
            return
        if self._array is None:
            shape = (self.total, vectors.shape[1])
            if self.path is None:
                self._array = np.empty(shape, dtype=vectors.dtype)
            else:
                self._array = np.lib.format.open_memmap(self.path, mode="w+", dtype=vectors.dtype, shape=shape)
        self._array[first : first + len(ids)] = vectors

    def _write_parquet(self, ids: list[str], vectors: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(vectors.reshape(-1))
        table = pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.path, table.schema)
        self._parquet.write_table(table)

    def close(self) -> np.ndarray | Path:
        if self._parquet is not None:
            self._parquet.close()
        if self.path is None:
            return self._array if self._array is not None else np.empty((0, 0), dtype=np.float32)
        if isinstance(self._array, np.memmap):
            self._array.flush()
        return self.path
