"""The SDK's inputs (tables of every kind the ecosystem uses, read lazily) and outputs (complete files
only). Pure: no services."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from embedfleet.client.output import ResultWriter
from embedfleet.client.requests import document_batches, iter_documents

ROWS = [{"id": i, "text": f"text {i}", "metadata": {"n": i}} for i in range(10)]


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: pd.DataFrame(ROWS),
        lambda tmp: pa.Table.from_pylist(ROWS),
        lambda tmp: pa.RecordBatch.from_pylist(ROWS),
        lambda tmp: (pq.write_table(pa.Table.from_pylist(ROWS), tmp / "c.parquet"), ds.dataset(tmp / "c.parquet"))[1],
        lambda tmp: datasets.Dataset.from_list(ROWS),
        # A selection is an index over the Arrow table, in another order: the selection's order wins.
        lambda tmp: datasets.Dataset.from_list([*ROWS[::-1], {"id": 99, "text": "x", "metadata": {"n": 0}}]).select(
            range(9, -1, -1)
        ),
        lambda tmp: iter(ROWS),
    ],
    ids=["pandas", "arrow-table", "arrow-batch", "arrow-dataset", "hf-dataset", "hf-dataset-selected", "generator"],
)
def test_tabular_inputs(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = list(iter_documents(make(tmp_path)))
    assert [d.id for d in docs] == [str(i) for i in range(10)]  # numeric ids become text, in order
    assert docs[3].text == "text 3" and docs[3].metadata() == {"n": 3}


def test_a_large_generator_is_streamed_in_bounded_memory() -> None:
    def corpus() -> Iterator[dict[str, str]]:
        for i in range(60_000):
            yield {"id": f"doc-{i}", "text": f"a generated paragraph number {i} " * 4}

    tracemalloc.start()
    batches = 0
    for _ in document_batches(iter_documents(corpus())):
        batches += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert batches >= 117 and peak < 12 * 1024 * 1024  # ~27 MB of text went through; a few batches held


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_files_appear_only_when_complete(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"vectors{suffix}"
    writer = ResultWriter(target, total=4)
    writer.write(0, ["a", "b"], np.ones((2, 3), np.float32))
    assert not target.exists()  # half-way: nothing under the final name
    writer.abort()
    assert list(tmp_path.iterdir()) == []  # and nothing left behind
    done = ResultWriter(target, total=4)
    done.write(2, ["c", "d"], np.full((2, 3), 2, np.float32))
    done.write(0, ["a", "b"], np.ones((2, 3), np.float32))
    assert done.close() == target and [p.name for p in tmp_path.iterdir()] == [target.name]
    if suffix == ".npy":
        assert np.array_equal(np.load(target)[:, 0], [1, 1, 2, 2])
    else:
        assert pq.read_table(target).column("id").to_pylist() == ["c", "d", "a", "b"]


def test_arrow_output() -> None:
    writer = ResultWriter(None, total=2, as_arrow=True)
    writer.write(0, ["a", "b"], np.eye(2, dtype=np.float32))
    table = writer.close()
    assert isinstance(table, pa.Table) and table.column("id").to_pylist() == ["a", "b"]
    with pytest.raises(ValueError, match="as_arrow"):
        ResultWriter("x.npy", 1, as_arrow=True)
