"""Corpora by reference and the dataset store, without services: planning counts rows from Parquet
footers and JSONL lines, a part reads exactly its rows across file boundaries, a bad record names its
file and line, and the same code runs on a second filesystem (fsspec's in-memory one, an in-process
stand-in for object storage)."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from embedfleet import corpus_refs
from embedfleet.corpus_refs import expand, plan_reference, read_rows
from embedfleet.datastore import DataStore, relative_path
from embedfleet.domain import CorpusFormat, CorpusRef, Document
from embedfleet.errors import InvalidArgument, NotFound
from embedfleet.gateway.kinds.spill import ShardWriter

COLUMNS = ("id", "text", "metadata")


def _records(start: int, n: int) -> list[dict[str, object]]:
    return [{"id": f"d{i}", "text": f"text number {i}", "metadata": {"n": i}} for i in range(start, start + n)]


def _write_parquet(fs: pafs.FileSystem, path: str, records: list[dict[str, object]], group: int = 7) -> None:
    with fs.open_output_stream(path) as out:
        pq.write_table(pa.Table.from_pylist(records), out, row_group_size=group)


def _plan(
    uri: str, pattern: str, fmt: CorpusFormat | None = None, columns: tuple[str, str, str] = COLUMNS
) -> CorpusRef:
    store = DataStore(uri)
    return plan_reference(store.uri, expand(store.fs, store.path(pattern), pattern), fmt, columns, 1 << 20, 65536)


def test_parquet_parts_read_exactly_their_rows_across_files_and_row_groups(tmp_path: Path) -> None:
    fs = pafs.LocalFileSystem()
    (tmp_path / "corpus").mkdir()
    sizes = [10, 25, 3]
    start = 0
    for i, n in enumerate(sizes):
        _write_parquet(fs, str(tmp_path / "corpus" / f"part-{i}.parquet"), _records(start, n))
        start += n
    (tmp_path / "corpus" / "README.txt").write_text("not a corpus file")
    ref = _plan(str(tmp_path), "corpus")
    assert [f.rows for f in ref.files] == sizes and ref.rows == 38 and ref.format == CorpusFormat.PARQUET
    docs = [d for first in range(0, 38, 8) for d in read_rows(ref, first, min(8, 38 - first))]
    assert [d.id for d in docs] == [f"d{i}" for i in range(38)]
    assert docs[20].text == "text number 20" and docs[20].metadata() == {"n": 20}
    assert [f.rows for f in _plan(str(tmp_path), "corpus/part-[01].parquet").files] == [10, 25]


def test_gzip_jsonl_with_renamed_columns_and_a_bad_line_named(tmp_path: Path) -> None:
    rows = [{"key": f"k{i}", "passage": f"passage {i}"} for i in range(12)]
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "")  # blank lines are not records
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines[:8]) + "\n").encode()))
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines[8:]) + "\n{not json}\n").encode()))
    ref = _plan(str(tmp_path), "*.jsonl.gz", columns=("key", "passage", "meta"))
    assert [f.rows for f in ref.files] == [7, 6] and ref.format == CorpusFormat.JSONL
    assert [d.id for d in read_rows(ref, 5, 6)] == [f"k{i}" for i in range(5, 11)]
    with pytest.raises(InvalidArgument, match=r"b.jsonl.gz:6: not valid JSON"):
        read_rows(ref, 8, 5)


def test_a_part_deep_in_a_plain_jsonl_file_seeks_to_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seek points every SEEK_ROWS rows (blank and CRLF lines between them): each range reads what a read
    from the start would, and a bad line deep in the file is named by its true line number."""
    monkeypatch.setattr(corpus_refs, "SEEK_ROWS", 4)
    lines = [json.dumps(r) for r in _records(0, 23)]
    for blank in (20, 9, 2):
        lines.insert(blank, "  ")
    lines[17] += "\r"
    lines.append("{broken")  # line 27
    (tmp_path / "plain.jsonl").write_text("\n".join(lines) + "\n")
    ref = _plan(str(tmp_path), "plain.jsonl")
    [file] = ref.files
    assert file.rows == 24 and [p.row for p in file.seek_points] == [4, 8, 12, 16, 20]
    assert (file.seek_points[0].line, file.seek_points[0].offset) == (6, sum(len(x) + 1 for x in lines[:5]))
    for first in range(23):
        for count in (1, 3, 9):
            count = min(count, 23 - first)
            assert [d.id for d in read_rows(ref, first, count)] == [f"d{i}" for i in range(first, first + count)]
    with pytest.raises(InvalidArgument, match=r"plain.jsonl:27: not valid JSON"):
        read_rows(ref, 22, 2)
    (tmp_path / "packed.jsonl.gz").write_bytes(gzip.compress("\n".join(lines[:-1]).encode()))
    assert _plan(str(tmp_path), "packed.jsonl.gz").files[0].seek_points == ()  # a gzip stream is read from its start


def _write_compressed(path: Path, lines: list[str]) -> None:
    codec = "gzip" if path.name.endswith(".gz") else "zstd"
    with pa.CompressedOutputStream(str(path), codec) as out:
        out.write(("\n".join(lines) + "\n").encode())


@pytest.mark.parametrize("name", ["big.jsonl.gz", "big.jsonl.zst"])
def test_a_process_goes_on_through_a_compressed_file_where_its_last_part_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Parts of a compressed file read in order open it once (not once per part, each decompressing
    every line before it); every other part (the rest went to another process) too; a part behind the
    cursor, a replaced file and a bad line are read afresh, exactly, and named by their true line."""
    monkeypatch.setattr(corpus_refs, "_CURSORS", corpus_refs._Cursors(size=2))
    opened: list[str] = []
    lines_of = corpus_refs._lines
    monkeypatch.setattr(
        corpus_refs, "_lines", lambda fs, path, start=None: opened.append(path) or lines_of(fs, path, start)
    )
    lines = [json.dumps(r) for r in _records(0, 40)]
    for blank in (33, 12, 0):
        lines.insert(blank, "")
    path = tmp_path / name
    _write_compressed(path, lines)
    ref = _plan(str(tmp_path), name)
    opened.clear()

    def ids(first: int, count: int) -> list[str]:
        return [d.id for d in read_rows(ref, first, count)]

    assert [i for first in range(0, 40, 7) for i in ids(first, min(7, 40 - first))] == [f"d{i}" for i in range(40)]
    assert len(opened) == 1
    assert [i for first in range(0, 40, 14) for i in ids(first, min(7, 40 - first))] == [
        f"d{i}" for first in range(0, 40, 14) for i in range(first, min(first + 7, 40))
    ]
    assert len(opened) == 2
    assert ids(10, 3) == ["d10", "d11", "d12"] and ids(5, 2) == ["d5", "d6"] and len(opened) == 4  # behind: afresh

    lines[38] = "{broken"  # row 35 (three blank lines before it), line 39
    _write_compressed(path, lines)
    with pytest.raises(InvalidArgument, match=rf"{name}:39: not valid JSON"):
        read_rows(ref, 7, 30)  # the cursor at row 7 is of the old file: this one is read from its start
    assert ids(7, 3) == ["d7", "d8", "d9"] and len(opened) == 6  # the failed read left no cursor behind


def test_open_compressed_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process keeps at most ``size`` compressed files open, the most recently read ones."""
    cursors = corpus_refs._Cursors(size=2)
    monkeypatch.setattr(corpus_refs, "_CURSORS", cursors)
    for i in range(3):
        _write_compressed(tmp_path / f"f{i}.jsonl.gz", [json.dumps(r) for r in _records(10 * i, 10)])
    ref = _plan(str(tmp_path), "*.jsonl.gz")
    for first in (0, 10, 20):
        assert [d.id for d in read_rows(ref, first, 5)] == [f"d{i}" for i in range(first, first + 5)]
    assert sorted(key[1].rsplit("/", 1)[-1] for key in cursors._open) == ["f1.jsonl.gz", "f2.jsonl.gz"]


def test_a_record_that_breaks_the_rules_fails_with_its_row(tmp_path: Path) -> None:
    records = _records(0, 6)
    records[4] = {"id": "d4", "text": "   ", "metadata": None}
    _write_parquet(pafs.LocalFileSystem(), str(tmp_path / "c.parquet"), records)
    ref = _plan(str(tmp_path), "c.parquet")
    with pytest.raises(InvalidArgument, match=r"c.parquet: row 5: document 'd4' text is empty"):
        read_rows(ref, 0, 6)
    with pytest.raises(InvalidArgument, match=r"lacks column\(s\) \['body'\]"):
        _plan(str(tmp_path), "c.parquet", columns=("id", "body", "metadata"))


def test_references_that_name_nothing_or_leave_the_store_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        _plan(str(tmp_path), "missing.parquet")
    with pytest.raises(NotFound, match="matches no corpus files"):
        _plan(str(tmp_path), "*.parquet")
    for escape in ("../etc/passwd", "/etc/passwd", "a/../../b"):
        with pytest.raises(InvalidArgument, match="inside the dataset store"):
            relative_path(escape, "f")
    with pytest.raises(InvalidArgument, match="not a job id"):
        DataStore(str(tmp_path)).job_dir("../x")


def test_the_same_paths_on_an_fsspec_filesystem() -> None:
    """fsspec's memory filesystem through pyarrow's bridge: what an s3/gcs store goes through."""
    uri = f"memory://store-{uuid.uuid4().hex[:8]}"
    store = DataStore(uri)
    assert isinstance(store.fs, pafs.PyFileSystem)
    store.fs.create_dir(store.path("corpus"))
    _write_parquet(store.fs, store.path("corpus/one.parquet"), _records(0, 9))
    _write_parquet(store.fs, store.path("corpus/two.parquet"), _records(9, 4))
    ref = _plan(uri, "corpus")
    assert ref.filesystem == uri and ref.rows == 13
    assert [d.id for d in read_rows(ref, 7, 4)] == ["d7", "d8", "d9", "d10"]


def test_spilled_shards_roll_at_part_boundaries_and_read_back(tmp_path: Path) -> None:
    store = DataStore(str(tmp_path))
    job_id = uuid.uuid4().hex
    writer = ShardWriter(store, job_id, shard_rows=25)
    docs = [
        Document(id=f"s{i}", text=f"streamed {i}", metadata_json=json.dumps({"i": i}) if i % 2 else "")
        for i in range(50)
    ]
    for start in range(0, 50, 10):
        writer.write(docs[start : start + 10])
    ref = writer.close(max_text_bytes=1 << 20, max_metadata_bytes=65536)
    assert [f.rows for f in ref.files] == [30, 20]
    assert read_rows(ref, 0, 50) == docs
    store.remove_job(job_id)
    assert not (tmp_path / "jobs" / job_id).exists()
