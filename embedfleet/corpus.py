"""Reading and validating corpora: JSONL or Parquet files of ``{id, text, metadata?}`` records.

Shared by the client (which streams a local file to the gateway) and the gateway (which reads
server-side files and validates every streamed document). Errors name the file and line, or the
document's position, so a person can fix the input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from embedfleet.domain import Document
from embedfleet.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, echo
from embedfleet.storable import check_metadata, utf8_size

MAX_ID_BYTES = 512
SUFFIXES = (".jsonl", ".ndjson", ".parquet")


def document_from_record(record: Any, where: str) -> Document:
    """Build a Document from a decoded record; ``where`` ("corpus.jsonl:12") prefixes errors."""
    if not isinstance(record, dict):
        raise InvalidArgument(f"{where}: expected a JSON object with 'id' and 'text', got {type(record).__name__}")
    if "id" not in record or record["id"] is None:
        raise InvalidArgument(f"{where}: missing 'id'")
    if "text" not in record or record["text"] is None:
        raise InvalidArgument(f"{where}: missing 'text'")
    doc_id, text, metadata = record["id"], record["text"], record.get("metadata")
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)  # numeric ids are common in exported corpora; they are kept as text
    if not isinstance(doc_id, str):
        raise InvalidArgument(f"{where}: 'id' must be a string, got {type(doc_id).__name__}")
    if not isinstance(text, str):
        raise InvalidArgument(f"{where}: 'text' must be a string, got {type(text).__name__}")
    if isinstance(metadata, str) and metadata:
        metadata_json = metadata
    elif metadata is None or metadata == {}:
        metadata_json = ""
    elif isinstance(metadata, dict):
        try:
            metadata_json = json.dumps(metadata, ensure_ascii=False, allow_nan=False, default=str)
        except (ValueError, TypeError, RecursionError) as exc:  # NaN, a non-string key, a cycle, deep nesting
            raise InvalidArgument(f"{where}: 'metadata' cannot be encoded as JSON: {exc}") from None
    else:
        raise InvalidArgument(f"{where}: 'metadata' must be an object, got {type(metadata).__name__}")
    return Document(id=doc_id, text=text, metadata_json=metadata_json)


def check_text(text: str, what: str, max_text_bytes: int, field: str = "") -> None:
    """A text to embed: valid UTF-8, not blank, within the limit. ``what`` names it as the client sent
    it ("query", "text 3", "document 7 'a' text")."""
    size = utf8_size(text, what)
    if not text.strip():
        raise InvalidArgument(f"{what} is empty", field)
    if size > max_text_bytes:
        raise ResourceExhausted(
            f"{what} is {size} bytes; the limit is {max_text_bytes} "
            "(texts beyond the model's window are truncated anyway: split long texts)"
        )


def validate_document(doc: Document, where: str, max_text_bytes: int, max_metadata_bytes: int) -> None:
    """The rules every document must meet before a job is accepted: whatever passes is stored by the
    workers as it is, so a job is never accepted and then failed by one of its documents' fields."""
    id_bytes = utf8_size(doc.id, f"{where}: document id")
    if id_bytes == 0:
        raise InvalidArgument(f"{where}: document id is empty")
    if id_bytes > MAX_ID_BYTES:
        raise InvalidArgument(f"{where}: document id is {id_bytes} bytes; the limit is {MAX_ID_BYTES}")
    check_text(doc.text, f"{where}: document {doc.id!r} text", max_text_bytes)
    if doc.metadata_json:
        check_metadata(doc.metadata_json, f"{where}: document {doc.id!r} metadata", max_metadata_bytes)


def read_corpus(path: str | Path) -> Iterator[Document]:
    """Documents of a JSONL or Parquet file, lazily, in file order."""
    path = Path(path)
    try:
        exists = path.is_file()
    except OSError:  # a name too long for the filesystem, say
        exists = False
    if not exists:
        raise NotFound(f"corpus file {echo(str(path))} does not exist")
    if not os.access(path, os.R_OK):
        raise FailedPrecondition(f"corpus file {echo(str(path))} exists but is not readable (permission denied)")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise InvalidArgument(
        f"corpus file {echo(str(path))}: unsupported format {echo(suffix)}; use one of {', '.join(SUFFIXES)}"
    )


def _read_jsonl(path: Path) -> Iterator[Document]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path.name}:{lineno}"
            try:
                line = raw.decode()
            except UnicodeDecodeError as exc:
                raise InvalidArgument(f"{where}: not valid UTF-8 (byte {exc.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            except RecursionError:
                raise InvalidArgument(f"{where}: not valid JSON (nested too deeply)") from None
            except ValueError as exc:  # an integer literal past Python's parsing limit
                raise InvalidArgument(f"{where}: not valid JSON ({exc})") from None
            yield document_from_record(record, where)


def _read_parquet(path: Path) -> Iterator[Document]:
    import pyarrow.parquet as pq  # only corpus files need pyarrow's Parquet reader

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InvalidArgument(f"{path.name}: not a readable Parquet file ({exc})") from None
    missing = {"id", "text"} - set(parquet.schema_arrow.names)
    if missing:
        raise InvalidArgument(f"{path.name}: Parquet file lacks column(s) {sorted(missing)}")
    row = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for record in batch.to_pylist():
            row += 1
            yield document_from_record(record, f"{path.name}: row {row}")
