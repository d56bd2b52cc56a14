"""Assembling an embed job's parts, in corpus order, into memory (NumPy or an Arrow table), a ``.npy``
or a Parquet file.

Parts are written as they arrive, so a corpus larger than memory can still be embedded to disk. Files
are written under a temporary name beside the target and renamed into place only when every part is
in: a failed or interrupted job never leaves a half-written file under the name the user asked for.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SUFFIXES = (".npy", ".parquet")
# Called with (part index, first document, ids, vectors) as each part's results arrive.
PartCallback = Callable[[int, int, list[str], np.ndarray], None]


def _arrow(ids: list[str], vectors: np.ndarray) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1))
    return pa.table({"id": ids, "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})


class ResultWriter:
    """``output`` None: vectors in memory (``as_arrow``: an Arrow table of id, embedding)."""

    def __init__(self, output: str | Path | None, total: int, as_arrow: bool = False) -> None:
        self.path = Path(output) if output is not None else None
        if self.path is not None and self.path.suffix not in SUFFIXES:
            raise ValueError(f"output {self.path} must end in {' or '.join(SUFFIXES)}")
        if self.path is not None and as_arrow:
            raise ValueError("as_arrow returns a table in memory; give no output path with it")
        self.total = total
        self.as_arrow = as_arrow
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial") if self.path else None
        self._array: np.ndarray | None = None
        self._parquet: Any = None  # pyarrow.parquet.ParquetWriter, opened with the first part
        self._tables: list[pa.Table] = []

    def write(self, first: int, ids: list[str], vectors: np.ndarray) -> None:
        if self.as_arrow:
            self._tables.append(_arrow(ids, vectors))
        elif self.path is not None and self.path.suffix == ".parquet":
            table = _arrow(ids, vectors)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table)
        else:
            if self._array is None:
                shape = (self.total, vectors.shape[1])
                if self._tmp is None:
                    self._array = np.empty(shape, dtype=vectors.dtype)
                else:
                    self._array = np.lib.format.open_memmap(self._tmp, mode="w+", dtype=vectors.dtype, shape=shape)
            self._array[first : first + len(ids)] = vectors

    def close(self) -> np.ndarray | pa.Table | Path:
        """Finish: the in-memory result, or the path of the complete file (renamed into place)."""
        if self.as_arrow:
            return pa.concat_tables(self._tables) if self._tables else _arrow([], np.empty((0, 0), np.float32))
        if self._tmp is None or self.path is None:
            return self._array if self._array is not None else np.empty((0, 0), dtype=np.float32)
        self._release()
        if not self._tmp.exists():
            raise RuntimeError(f"no results arrived for {self.path}")
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """The job failed or the caller gave up: drop the partial file, leave the target untouched."""
        self._release()
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)

    def _release(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
        if isinstance(self._array, np.memmap):
            self._array.flush()
            self._array = None
