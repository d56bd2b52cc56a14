"""The SDK's tabular input and its outputs against the real system: a pandas DataFrame and a Hugging Face
dataset in, Arrow and Parquet out, a callback per part, all equal to the model's vectors in input order."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.local import LocalCluster


def test_dataframe_in_arrow_and_parquet_out(
    celery_system: LocalCluster, wordnet_docs: list[dict], tmp_path: Path
) -> None:
    frame = pd.DataFrame(wordnet_docs[:40])
    seen: list[tuple[int, int]] = []
    with EmbedfleetClient(celery_system.gateway_address) as client:
        expected = client.embed(list(frame["text"])).vectors
        table = client.embed_corpus(frame, as_arrow=True, chunk_size=16, on_done=lambda p, f, i, v: seen.append((p, f)))
        path = client.embed_corpus(frame, output=tmp_path / "v.parquet", chunk_size=16)
    assert sorted(seen) == [(0, 0), (1, 16), (2, 32)]
    assert table.column("id").to_pylist() == list(frame["id"])
    got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert np.allclose(got, expected, atol=1e-5)
    assert pq.read_table(path).num_rows == 40 and [p.name for p in tmp_path.iterdir()] == ["v.parquet"]


def test_a_hugging_face_dataset_with_its_own_column_names(
    celery_system: LocalCluster, wordnet_docs: list[dict]
) -> None:
    """A dataset as the hub publishes it (``idx``/``sentence`` columns), renamed and shuffled by the user."""
    hub_like = datasets.Dataset.from_list([{"idx": d["id"], "sentence": d["text"]} for d in wordnet_docs[40:70]])
    corpus = hub_like.rename_columns({"idx": "id", "sentence": "text"}).shuffle(seed=0)
    with EmbedfleetClient(celery_system.gateway_address) as client:
        expected = client.embed(corpus["text"]).vectors
        table = client.embed_corpus(corpus, as_arrow=True, chunk_size=8)
    assert table.column("id").to_pylist() == corpus["id"]
    got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert np.allclose(got, expected, atol=1e-5)
