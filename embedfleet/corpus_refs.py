"""Corpora by reference: find a reference's files, count their rows, and read one part's rows.

The gateway plans with ``plan_reference`` (Parquet: footers only, or the text column when parts
are sized by tokens; JSONL: one pass over the lines, no JSON parsing), so a job's parts are
consecutive row ranges of the corpus like staged parts are, and ``part_range`` keeps naming each
part's documents. A worker reads its range with ``read_rows``, which validates every record by the
rules staged documents meet and names the file and line or row of a bad one.
"""

from __future__ import annotations

import fnmatch
import io
import posixpath
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow.fs as pafs

from embedfleet.corpus import document_from_record, validate_document
from embedfleet.datastore import open_filesystem
from embedfleet.domain import CorpusFile, CorpusFormat, CorpusRef, Document, SeekPoint
from embedfleet.errors import InvalidArgument, NotFound

_JSONL = (".jsonl", ".ndjson")
_COMPRESSION = {".gz": "gzip", ".zst": "zstd"}
_GLOB = set("*?[")
# Rows between the seek points of an uncompressed JSONL file: a part skips at most this many lines.
SEEK_ROWS = 16_384


def file_format(path: str) -> CorpusFormat | None:
    """The format a file name says (``a.parquet``, ``b.jsonl.gz``), None for other files."""
    name = path.lower()
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    if name.endswith(".parquet"):
        return CorpusFormat.PARQUET
    if name.endswith(_JSONL):
        return CorpusFormat.JSONL
    return None


def expand(fs: pafs.FileSystem, path: str, shown: str) -> list[str]:
    """The corpus files a reference names, sorted: the file, the corpus files under a directory, or
    the files a glob matches; ``shown`` is the reference as the user wrote it, for errors."""
    if _GLOB & set(path):
        base = glob_base(path)
        matches = [
            info.path
            for info in _listing(fs, base)
            if info.type == pafs.FileType.File and fnmatch.fnmatchcase(info.path, path)
        ]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [path]
        if info.type != pafs.FileType.Directory:
            raise NotFound(f"corpus {shown!r} does not exist")
        matches = [
            i.path for i in _listing(fs, path) if i.type == pafs.FileType.File and file_format(i.path) is not None
        ]
    if not matches:
        raise NotFound(f"corpus {shown!r} matches no corpus files (.parquet, .jsonl, .ndjson, optionally .gz/.zst)")
    return sorted(matches)


def glob_base(path: str) -> str:
    """The directory a glob is matched under: its segments before the first with a wildcard."""
    parts = path.split("/")
    fixed = next((i for i, p in enumerate(parts) if _GLOB & set(p)), len(parts))
    return "/".join(parts[:fixed]) or "/"


def _listing(fs: pafs.FileSystem, base: str) -> list[pafs.FileInfo]:
    return list(fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)))


def plan_reference(
    filesystem: str,
    paths: list[str],
    requested: CorpusFormat | None,
    columns: tuple[str, str, str],
    max_text_bytes: int,
    max_metadata_bytes: int,
    row_bytes: Callable[[int], None] | None = None,
) -> CorpusRef:
    """Count every file's rows (Parquet footers, JSONL non-blank lines) and check that the id and text
    columns exist; the files must all be of one format.

    ``row_bytes``, when given, is called with every row's size in corpus order, what parts are sized
    by tokens from, in the same pass: Parquet, the text's UTF-8 length (read from the text column alone,
    a row group at a time; a null or non-string text counts 0 here, and ``read_rows`` refuses it when
    the part runs); JSONL, the line's length, which holds the text and a little more (its id, metadata
    and JSON syntax), so parts come out no larger than the token target. A JSONL file is read once
    whether or not its rows are sized."""
    fs, _ = open_filesystem(filesystem)
    formats = {requested or file_format(p) for p in paths}
    if None in formats:
        unknown = next(p for p in paths if file_format(p) is None)
        raise InvalidArgument(
            f"{posixpath.basename(unknown)}: unknown corpus format; set source.format", "source.format"
        )
    if len(formats) > 1:
        raise InvalidArgument("a corpus reference mixes Parquet and JSONL files; name one format", "source.uri")
    fmt = formats.pop()
    assert fmt is not None
    id_column, text_column, _ = columns
    files = []
    for path in paths:
        if fmt == CorpusFormat.PARQUET:
            parquet = _parquet_file(fs, path)
            file = CorpusFile(path=path, rows=_parquet_rows(parquet, path, (id_column, text_column)))
            if row_bytes is not None:
                _parquet_text_bytes(parquet, text_column, row_bytes)
        else:
            file = _jsonl_file(fs, path, row_bytes)
        if file.rows:
            files.append(file)
    return CorpusRef(
        filesystem=filesystem,
        format=fmt,
        files=tuple(files),
        id_column=id_column,
        text_column=text_column,
        metadata_column=columns[2],
        max_text_bytes=max_text_bytes,
        max_metadata_bytes=max_metadata_bytes,
    )


def _parquet_file(fs: pafs.FileSystem, path: str) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(fs.open_input_file(path))
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InvalidArgument(f"{posixpath.basename(path)}: not a readable Parquet file ({exc})") from None


def _parquet_rows(parquet: Any, path: str, required: tuple[str, ...]) -> int:
    missing = [c for c in required if c not in parquet.schema_arrow.names]
    if missing:
        raise InvalidArgument(
            f"{posixpath.basename(path)}: Parquet file lacks column(s) {missing}; name the columns in "
            "source.id_column / source.text_column",
            "source.text_column" if required[1] in missing else "source.id_column",
        )
    return int(parquet.metadata.num_rows)


def _compression(path: str) -> str | None:
    name = path.lower()
    return next((c for s, c in _COMPRESSION.items() if name.endswith(s)), None)


def _lines(fs: pafs.FileSystem, path: str, start: SeekPoint | None = None) -> Iterator[bytes]:
    """The file's lines, from the beginning or from a seek point of an uncompressed file."""
    if start is None:
        with fs.open_input_stream(path, compression=_compression(path)) as stream:
            yield from io.BufferedReader(stream, buffer_size=1 << 20)
        return
    with fs.open_input_file(path) as source:
        source.seek(start.offset)
        yield from io.BufferedReader(source, buffer_size=1 << 20)


def _parquet_text_bytes(parquet: Any, text_column: str, row_bytes: Callable[[int], None]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    for group in range(parquet.num_row_groups):
        column = parquet.read_row_group(group, columns=[text_column]).column(0)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            sizes = pc.fill_null(pc.binary_length(column), 0).to_pylist()
        else:
            sizes = [0] * len(column)
        for size in sizes:
            row_bytes(size)


def _jsonl_file(fs: pafs.FileSystem, path: str, row_bytes: Callable[[int], None] | None) -> CorpusFile:
    """A JSONL file's non-blank lines counted (each one's length to ``row_bytes``), with a seek point
    every ``SEEK_ROWS`` rows unless it is compressed (a compressed stream cannot be entered in the
    middle: a process reading its parts goes on from where its last part of the file ended, see
    ``_Cursors``; a part it reads out of order decompresses from the start)."""
    rows = offset = 0
    points: list[SeekPoint] = []
    seekable = _compression(path) is None
    for lineno, line in enumerate(_lines(fs, path), start=1):
        if line.strip():
            if seekable and rows and rows % SEEK_ROWS == 0:
                points.append(SeekPoint(row=rows, offset=offset, line=lineno))
            rows += 1
            if row_bytes is not None:
                row_bytes(len(line))
        offset += len(line)
    return CorpusFile(path=path, rows=rows, seek_points=tuple(points))


def read_rows(ref: CorpusRef, first: int, count: int) -> list[Document]:
    """Documents ``first .. first+count`` of the corpus, validated; the first bad record raises
    ``InvalidArgument`` naming its file and line (JSONL) or row (Parquet), both counted from 1. Ids
    are not checked for repeats here: that is the job's, across its parts (``repeated_ids``)."""
    fs, _ = open_filesystem(ref.filesystem)
    docs: list[Document] = []
    start = 0
    for file in ref.files:
        end = start + file.rows
        if end > first and start < first + count:
            skip = max(first - start, 0)
            take = min(end, first + count) - start - skip
            reader = _parquet_records if ref.format == CorpusFormat.PARQUET else _jsonl_records
            for where, record in reader(fs, ref, file, skip, take):
                docs.append(_document(ref, record, where))
        start = end
    return docs


def _document(ref: CorpusRef, record: Any, where: str) -> Document:
    if not isinstance(record, dict):
        return document_from_record(record, where)  # refused there with the type named
    renamed = {
        "id": record.get(ref.id_column),
        "text": record.get(ref.text_column),
        "metadata": record.get(ref.metadata_column),
    }
    doc = document_from_record(renamed, where)
    validate_document(doc, where, ref.max_text_bytes, ref.max_metadata_bytes)
    return doc


def _parquet_records(
    fs: pafs.FileSystem, ref: CorpusRef, file: CorpusFile, skip: int, take: int
) -> Iterator[tuple[str, Any]]:
    """Rows ``skip .. skip+take`` of one file, reading only the row groups that hold them."""
    path = file.path
    parquet = _parquet_file(fs, path)
    names = set(parquet.schema_arrow.names)
    columns = [c for c in (ref.id_column, ref.text_column, ref.metadata_column) if c in names]
    name = posixpath.basename(path)
    group_start = 0
    for group in range(parquet.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        lo, hi = max(skip, group_start), min(skip + take, group_start + group_rows)
        if lo < hi:
            table = parquet.read_row_group(group, columns=columns).slice(lo - group_start, hi - lo)
            for offset, record in enumerate(table.to_pylist()):
                yield f"{name}: row {lo + offset + 1}", record
        group_start += group_rows


@dataclass
class _Cursor:
    """A JSONL file's lines, read up to a point: ``row`` is the next non-blank line's row, ``line``
    the next line's number (from 1)."""

    lines: Iterator[bytes]
    row: int
    line: int

    def close(self) -> None:
        close = getattr(self.lines, "close", None)
        if close is not None:
            close()  # a generator's close runs its ``with``, closing the stream


class _Cursors:
    """Compressed JSONL files left open where this process's last read of each ended, the most
    recently used ``size`` of them.

    A compressed stream cannot be entered in the middle, so without this a part deep in a large
    ``.jsonl.gz`` decompresses every line before it, and reading a file's N parts costs O(N^2) lines.
    Parts are queued in corpus order, so a process (a Celery pool child, a Ray actor) usually gets a
    later part of the same file next: it goes on from its cursor, skipping only the parts other
    processes took, and each file is read about once per process. A cursor is keyed by the file's
    size and modification time too, so a file replaced since is read afresh; one is taken out while
    in use (threads never share a stream) and dropped on any error.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._open: OrderedDict[tuple[object, ...], _Cursor] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: tuple[object, ...], row: int) -> _Cursor | None:
        """The cursor of ``key`` if it has not passed ``row`` (then it is this caller's until ``give``)."""
        with self._lock:
            cursor = self._open.get(key)
            if cursor is None or cursor.row > row:
                return None
            return self._open.pop(key)

    def give(self, key: tuple[object, ...], cursor: _Cursor) -> None:
        """Keep ``cursor`` for the next read of ``key``, closing what it replaces or pushes out."""
        with self._lock:
            replaced = self._open.pop(key, None)
            closing = [replaced] if replaced is not None else []
            self._open[key] = cursor
            while len(self._open) > self.size:
                closing.append(self._open.popitem(last=False)[1])
        for stale in closing:
            stale.close()


# Open compressed files per process: one stream and a 1 MB buffer each.
_CURSORS = _Cursors(size=4)


def _jsonl_records(
    fs: pafs.FileSystem, ref: CorpusRef, file: CorpusFile, skip: int, take: int
) -> Iterator[tuple[str, Any]]:
    """Non-blank lines ``skip .. skip+take`` of one file, each parsed, with its line number; read from
    the last seek point at or before ``skip``, or, compressed, from this process's open cursor."""
    import json

    name = posixpath.basename(file.path)
    key: tuple[object, ...] | None = None
    cursor = None
    if _compression(file.path) is not None:
        info = fs.get_file_info(file.path)
        key = (ref.filesystem, file.path, info.size, info.mtime_ns)
        cursor = _CURSORS.take(key, skip)
    if cursor is None:
        start = next((p for p in reversed(file.seek_points) if p.row <= skip), None)
        cursor = _Cursor(_lines(fs, file.path, start), start.row if start else 0, start.line if start else 1)
    try:
        while cursor.row < skip + take:
            line = next(cursor.lines, None)
            if line is None:
                break
            lineno = cursor.line
            cursor.line += 1
            if not line.strip():
                continue
            cursor.row += 1
            if cursor.row > skip:
                where = f"{name}:{lineno}"
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    reason = (
                        f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                    )
                    raise InvalidArgument(f"{where}: not valid JSON ({reason})") from None
                yield where, record
    except BaseException:
        cursor.close()
        raise
    if key is not None and cursor.row < file.rows:
        _CURSORS.give(key, cursor)
    else:
        cursor.close()
