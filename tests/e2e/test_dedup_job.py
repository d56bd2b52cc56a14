"""Dedup jobs end to end on each queue backend: an index job writes a small real slice of the Bible
verse pairs (KJV and WEB translations) with the real model, then dedup jobs through the SDK find the
same pairs in partitioned mode as in exact mode, pair identical texts, delete only when asked, and
export their groups; bad parameters get the right status with a message that says what to change."""

from __future__ import annotations

import csv
import json
import logging
import uuid
from pathlib import Path

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import SHARED_DATA
from fakes import FAKE_SPEC

from embedfleet import milvus
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import Document, JobState
from embedfleet.local import LocalCluster
from embedfleet.v1 import jobs_pb2
from embedfleet.worker.milvus_sink import MilvusSink

VERSES = 150
# Copies of verse texts under other ids, differing only in case, spacing and punctuation.
COPIES = {"copy-1": ("kjv-Gen.1.1", str.upper), "copy-2": ("web-Gen.1.3", lambda t: t.replace(",", " ,  "))}


def _bible_docs() -> list[dict[str, str]]:
    with (SHARED_DATA / "bible-kjv-web-pairs" / "kjv_web_verse_pairs.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))[:VERSES]
    docs = [{"id": f"{t}-{r['ref']}", "text": r[t]} for t in ("kjv", "web") for r in rows]
    by_id = {d["id"]: d["text"] for d in docs}
    docs += [{"id": new, "text": change(by_id[source])} for new, (source, change) in COPIES.items()]
    return docs


def _pairs(groups: list) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    out: set[tuple[str, str]] = set()
    for g in groups:
        ids = sorted([g.kept_id, *g.removed_ids])
        out.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
    return out


def _count(cluster: LocalCluster, collection: str) -> int:
    client = milvus.connect(cluster.milvus_uri)
    return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


@pytest.fixture(scope="module")
def bible_collection(client: EmbedfleetClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    corpus = tmp_path_factory.mktemp("bible") / "bible.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in _bible_docs()))
    collection = f"e2e_dedup_{uuid.uuid4().hex[:8]}"
    job = client.index(corpus, collection, chunk_size=128)
    assert job.state == JobState.SUCCEEDED, job.error
    return collection


def _run(client: EmbedfleetClient, collection: str, **options: object) -> tuple[object, list]:  # type: ignore[type-arg]
    job = client.submit_dedup(collection, **options)  # type: ignore[arg-type]
    final = client.wait(job.id)
    assert final.state == JobState.SUCCEEDED, final.error
    return final, list(client.dedup_groups(final.id, page_size=7))  # several pages


def test_partitioned_dedup_finds_what_exact_finds_and_pairs_identical_texts(
    client: EmbedfleetClient, cluster: LocalCluster, bible_collection: str, tmp_path: Path
) -> None:
    exact_job, exact = _run(client, bible_collection, threshold=0.8, mode="exact")
    part_job, partitioned = _run(client, bible_collection, threshold=0.8, partitions=8, n_probe=3, parts=3)
    assert part_job.chunks_total == 3 and part_job.done == part_job.total == 2 * VERSES + len(COPIES)  # type: ignore[attr-defined]
    reference = _pairs(exact)
    assert len(reference) > 50  # many translations pair at 0.8
    assert len(_pairs(partitioned) & reference) / len(reference) >= 0.99
    assert _pairs(partitioned) <= reference
    # The text pass: each copy is in its source's group at similarity 1.0, the kept row the smallest id.
    for copy_id, (source, _) in COPIES.items():
        group = next(g for g in exact if copy_id in (g.kept_id, *g.removed_ids))
        members = [group.kept_id, *group.removed_ids]
        assert source in members and group.kept_id == min(members)
        sims = dict(zip(group.removed_ids, group.similarity, strict=True))
        assert sims.get(copy_id, sims.get(source)) == pytest.approx(1.0, abs=1e-5)
    assert exact_job.outputs["removed"] == "0"  # type: ignore[attr-defined]  # a dry run by default
    assert int(exact_job.outputs["duplicates"]) == sum(len(g.removed_ids) for g in exact)  # type: ignore[attr-defined]
    assert _count(cluster, bible_collection) == 2 * VERSES + len(COPIES)

    # Export: Parquet and JSONL hold the same groups.
    assert client.export_dedup_groups(exact_job.id, tmp_path / "g.parquet") == len(exact)  # type: ignore[attr-defined]
    client.export_dedup_groups(exact_job.id, tmp_path / "g.jsonl")  # type: ignore[attr-defined]
    table = pq.read_table(tmp_path / "g.parquet").to_pylist()
    lines = [json.loads(line) for line in (tmp_path / "g.jsonl").read_text().splitlines()]
    assert [r["kept_id"] for r in table] == [r["kept_id"] for r in lines] == [g.kept_id for g in exact]


def test_a_delete_run_removes_the_duplicates_and_says_how_many(
    client: EmbedfleetClient, cluster: LocalCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="embedfleet.audit")
    docs = [
        {"id": f"d{i}", "text": t}
        for i, t in enumerate(["A cat sat on the mat.", "a cat sat on the mat", "Dogs bark."])
    ]
    corpus = tmp_path / "small.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    collection = f"e2e_dedup_del_{uuid.uuid4().hex[:8]}"
    assert client.index(corpus, collection).state == JobState.SUCCEEDED
    final, groups = _run(client, collection, threshold=0.95, mode="exact", delete=True, policy="longest")
    assert [(g.kept_id, g.removed_ids) for g in groups] == [("d0", ["d1"])]  # the longer text stays
    assert final.outputs["removed"] == "1"  # type: ignore[attr-defined]
    assert _count(cluster, collection) == 2
    # A run that deletes rows leaves an audit line naming the job and the collection; a dry run does not.
    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "embedfleet.audit"]
    deletes = [line for line in audit if line["audit"] == "dedup.delete"]
    assert [(line["target"], line["collection"]) for line in deletes] == [(final.id, collection)]  # type: ignore[attr-defined]


def _code(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def test_bad_dedup_parameters_say_what_to_change(
    client: EmbedfleetClient, cluster: LocalCluster, bible_collection: str
) -> None:
    def submit(**config: object) -> object:
        request = jobs_pb2.SubmitDedupJobRequest(config=jobs_pb2.DedupJobConfig(**config))  # type: ignore[arg-type]
        return client.jobs.SubmitDedupJob(request)

    cases = [
        (dict(collection=bible_collection, threshold=0.0), grpc.StatusCode.INVALID_ARGUMENT, "in (0, 1]"),
        (dict(collection=bible_collection, threshold=1.5), grpc.StatusCode.INVALID_ARGUMENT, "in (0, 1]"),
        (
            dict(collection=bible_collection, threshold=0.9, policy=9),
            grpc.StatusCode.INVALID_ARGUMENT,
            "config.policy 9",
        ),
        (
            dict(collection=bible_collection, threshold=0.9, filter="doc_id =="),
            grpc.StatusCode.INVALID_ARGUMENT,
            "fix the expression",
        ),
        (dict(collection="e2e_no_such", threshold=0.9), grpc.StatusCode.NOT_FOUND, "run an index job to create it"),
        (dict(collection=bible_collection, threshold=0.9, n_probe=33), grpc.StatusCode.INVALID_ARGUMENT, "n_probe"),
    ]
    for config, code, message in cases:
        got, details = _code(lambda config=config: submit(**config))
        assert got == code and message in details, (config, details)

    # A collection filled by another model (the fake encoder's 16-d vectors).
    other = f"e2e_dedup_fake_{uuid.uuid4().hex[:8]}"
    binding = milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", 16)
    vectors = np.eye(16, dtype=np.float32)[:2]
    MilvusSink(milvus.connect(cluster.milvus_uri), 1 << 20).write(
        other, binding, [Document(id="a", text="a"), Document(id="b", text="b")], vectors
    )
    got, details = _code(lambda: submit(collection=other, threshold=0.9, model="all-MiniLM-L6-v2"))
    assert (
        got == grpc.StatusCode.FAILED_PRECONDITION
        and "Index into a new collection or use the collection's model" in details
    )
    got, details = _code(lambda: submit(collection=other, threshold=0.9))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "registry does not have" in details
    # Groups of a job that is not a dedup job, or not finished, are FAILED_PRECONDITION.
    got, details = _code(lambda: list(client.dedup_groups("0" * 32)))
    assert got == grpc.StatusCode.NOT_FOUND


def test_dedup_on_ingest_skips_or_marks_near_duplicates_of_the_chunk_and_the_collection(
    client: EmbedfleetClient, cluster: LocalCluster, tmp_path: Path
) -> None:
    collection = f"e2e_ingest_{uuid.uuid4().hex[:8]}"
    first = [
        {"id": "a0", "text": "The cat sat on the mat."},
        {"id": "a1", "text": "the cat sat on the mat!"},  # the same text, normalized
        {"id": "a2", "text": "Dogs bark loudly at night."},
        {"id": "a3", "text": "Interest rates rose again this quarter."},
    ]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(d) + "\n" for d in first))
    job = client.index(tmp_path / "a.jsonl", collection, dedup={"threshold": 0.95})
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.metrics["ingest_dedup.duplicates.part-00000"] == 1
    assert _count(cluster, collection) == 3  # a1 skipped
    records = pq.read_table(Path(job.outputs["ingest_dedup_uri"]) / "part-00000.parquet").to_pylist()
    assert [(r["doc_id"], r["duplicate_of"]) for r in records] == [("a1", "a0")]

    # Against the collection: b0 repeats a stored row and is marked; a0 again is its own upsert, not a duplicate.
    second = [{"id": "b0", "text": "Dogs bark loudly at night"}, {"id": "a0", "text": "The cat sat on the mat."}]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(d) + "\n" for d in second))
    job = client.index(tmp_path / "b.jsonl", collection, dedup={"threshold": 0.95, "action": "mark"})
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.metrics["ingest_dedup.duplicates.part-00000"] == 1
    rows = milvus.connect(cluster.milvus_uri).query(
        collection, filter='doc_id in ["b0", "a0"]', output_fields=["doc_id", "metadata"]
    )
    meta = {r["doc_id"]: r["metadata"] for r in rows}
    assert meta["b0"]["duplicate_of"] == "a2" and meta["b0"]["duplicate_similarity"] >= 0.95
    assert "duplicate_of" not in meta["a0"]
