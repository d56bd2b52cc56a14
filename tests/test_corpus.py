import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedfleet.corpus import read_corpus, validate_document
from embedfleet.domain import Document
from embedfleet.errors import InvalidArgument, NotFound, ResourceExhausted


def test_jsonl_with_metadata_and_numeric_ids(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "x", "metadata": {"n": 12345678901234567}}\n\n{"id": 7, "text": "y"}\n')
    docs = list(read_corpus(path))
    assert [d.id for d in docs] == ["a", "7"]
    assert docs[0].metadata() == {"n": 12345678901234567}  # big ints survive as JSON text
    assert docs[1].metadata_json == ""


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n')
    with pytest.raises(InvalidArgument, match=r"bad\.jsonl:2: not valid JSON"):
        list(read_corpus(path))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "x"}', "missing 'id'"),
        ('{"id": "a"}', "missing 'text'"),
        ('{"id": "a", "text": 3}', "'text' must be a string"),
        ('{"id": "a", "text": "x", "metadata": [1]}', "'metadata' must be an object"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_record_errors(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(InvalidArgument, match=message):
        list(read_corpus(path))


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        read_corpus(tmp_path / "nope.jsonl")
    other = tmp_path / "c.csv"
    other.write_text("id,text\n")
    with pytest.raises(InvalidArgument, match="unsupported format"):
        read_corpus(other)


def test_parquet_roundtrip_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", "y"], "metadata": [json.dumps({"k": 1}), None]}), path)
    docs = list(read_corpus(path))
    assert [(d.id, d.text) for d in docs] == [("a", "x"), ("b", "y")]
    assert docs[0].metadata() == {"k": 1}
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["a"]}), bad)
    with pytest.raises(InvalidArgument, match="lacks column"):
        list(read_corpus(bad))


def test_validate_document_rules() -> None:
    validate_document(Document(id="a", text="fine"), "document 0", 100, 1000)
    with pytest.raises(InvalidArgument, match="text is empty"):
        validate_document(Document(id="a", text="  \n"), "document 0", 100, 1000)
    with pytest.raises(InvalidArgument, match="id is empty"):
        validate_document(Document(id="", text="x"), "document 0", 100, 1000)
    with pytest.raises(InvalidArgument, match="limit is 512"):
        validate_document(Document(id="x" * 513, text="x"), "document 0", 100, 1000)
    with pytest.raises(ResourceExhausted, match="limit is 100"):
        validate_document(Document(id="a", text="x" * 101), "document 0", 100, 1000)
    with pytest.raises(InvalidArgument, match="metadata is not valid JSON"):
        validate_document(Document(id="a", text="x", metadata_json="{"), "document 0", 100, 1000)
