"""An embed job's vectors as Parquet files in the dataset store (or the job's ``output_uri``).

One file per part, ``part-NNNNN.parquet`` with columns ``id`` (string) and ``vector`` (a fixed-size
list in the job's precision: float32, float16, int8, or the packed bytes of binary vectors), so any
Parquet reader can use them, and ``StreamJobResults`` reads them back without a repack. A part is
written to a temporary name and moved into place, so a reader never sees half a file and a retried
part replaces its own file.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from embedfleet.datastore import open_filesystem, replacing
from embedfleet.domain import EmbedParams, JobSpec, Precision, ResultsRef
from embedfleet.errors import NotFound
from embedfleet.jobstore import JobStore, PartVectors
from embedfleet.wire import DTYPES, packed_width


def part_path(ref: ResultsRef, part: int) -> str:
    return f"{ref.directory}/part-{part:05d}.parquet"


def write_part(ref: ResultsRef, part: int, vectors: PartVectors) -> None:
    fs, _ = open_filesystem(ref.filesystem)
    width = packed_width(vectors.dimensions, vectors.precision)
    dtype = pa.from_numpy_dtype(DTYPES[vectors.precision])
    flat = pa.Array.from_buffers(dtype, len(vectors.ids) * width, [None, pa.py_buffer(vectors.data)])
    column = pa.FixedSizeListArray.from_arrays(flat, width)
    table = pa.table({"id": pa.array(vectors.ids, pa.string()), "vector": column}).replace_schema_metadata(
        {"dimensions": str(vectors.dimensions), "precision": vectors.precision.value}
    )
    with replacing(fs, part_path(ref, part)) as out:
        pq.write_table(table, out)


def read_part(ref: ResultsRef, part: int) -> PartVectors:
    fs, _ = open_filesystem(ref.filesystem)
    path = part_path(ref, part)
    try:
        with fs.open_input_file(path) as source:
            table = pq.read_table(source)
    except FileNotFoundError:
        raise NotFound(f"the results of part {part} are gone from {path} (removed, or past their retention)") from None
    meta = table.schema.metadata or {}
    flat = table.column("vector").combine_chunks().flatten()
    return PartVectors(
        ids=table.column("id").to_pylist(),
        dimensions=int(meta[b"dimensions"]),
        precision=Precision(meta[b"precision"].decode()),
        data=flat.to_numpy(zero_copy_only=False).tobytes(),
    )


def _results(spec: JobSpec) -> ResultsRef | None:
    return spec.params.results if isinstance(spec.params, EmbedParams) else None


def write_job_part(store: JobStore, spec: JobSpec, job_id: str, part: int, vectors: PartVectors) -> None:
    """Keep a finished part's vectors where the job says (Redis only for jobs accepted before results
    moved to the dataset store)."""
    ref = _results(spec)
    if ref is None:
        store.put_part_output(job_id, part, vectors)
    else:
        write_part(ref, part, vectors)


def read_job_part(store: JobStore, spec: JobSpec, job_id: str, part: int) -> PartVectors:
    ref = _results(spec)
    return store.get_part_output(job_id, part) if ref is None else read_part(ref, part)
