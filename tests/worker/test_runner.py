"""The chunk logic with a deterministic fake encoder, the real Redis and a real Milvus Lite server."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from fakes import FAKE_SPEC, HashEncoder

from embedfleet import milvus
from embedfleet.domain import Document, EmbeddingOptions, JobKind, JobSpec, JobState, Precision, VectorField
from embedfleet.errors import FailedPrecondition, InvalidArgument, Retryable
from embedfleet.jobstore import JobStore
from embedfleet.registry import ModelRegistry
from embedfleet.worker.encoders import ModelHost
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.runner import ChunkRunner, ChunkStatus, RetryChunk


@pytest.fixture
def milvus_client(milvus_uri: str):  # type: ignore[no-untyped-def]
    return milvus.connect(milvus_uri)


def _runner(store: JobStore, encoder: HashEncoder, milvus_client, max_attempts: int = 3) -> ChunkRunner:  # type: ignore[no-untyped-def]
    host = ModelHost()
    host.add(encoder)
    return ChunkRunner(
        store=store,
        registry=lambda: ModelRegistry([FAKE_SPEC]),
        host=host,
        milvus_factory=lambda: MilvusSink(milvus_client, max_batch_bytes=4096),
        max_attempts=max_attempts,
    )


def _submit(store: JobStore, kind: JobKind, docs: list[Document], chunk_size: int, **spec: object) -> str:
    job_id = uuid.uuid4().hex
    chunks = [docs[i : i + chunk_size] for i in range(0, len(docs), chunk_size)]
    for c, chunk in enumerate(chunks):
        store.put_chunk_input(job_id, c, chunk)
    options = spec.pop("embedding", EmbeddingOptions(model=FAKE_SPEC.name))
    store.create_job(
        job_id,
        JobSpec(kind=kind, embedding=options, chunk_size=chunk_size, **spec),
        total=len(docs),
        chunks=len(chunks),
    )
    return job_id


def _docs(n: int) -> list[Document]:
    return [Document(id=f"d{i}", text=f"document number {i}", metadata_json=f'{{"i": {i}}}') for i in range(n)]


def _count(client, collection: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def test_index_chunks_twice_writes_rows_once(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    job_id = _submit(store, JobKind.INDEX, _docs(50), chunk_size=20, collection=collection)
    runner = _runner(store, HashEncoder(), milvus_client)
    # Attempt 1 of chunk 0 starts and "dies" before finishing (as a killed worker would) ...
    store.start_chunk(job_id, 0)
    for c in range(3):
        assert runner.run_chunk(job_id, c).status == ChunkStatus.DONE
    # ... and a duplicate delivery of a finished chunk is skipped.
    assert runner.run_chunk(job_id, 1).status == ChunkStatus.SKIPPED
    snap = store.get(job_id)
    assert (snap.state, snap.done) == (JobState.SUCCEEDED, 50)
    assert _count(milvus_client, collection) == 50
    binding = milvus.read_binding(milvus_client, collection)
    assert binding == milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", FAKE_SPEC.dimensions)
    # Run the whole job again (a re-index): upserts, still 50 rows.
    again = _submit(store, JobKind.INDEX, _docs(50), chunk_size=50, collection=collection)
    runner.run_chunk(again, 0)
    assert _count(milvus_client, collection) == 50
    milvus_client.drop_collection(collection)


def test_collection_of_another_model_fails_the_chunk(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    milvus.ensure_collection(milvus_client, collection, milvus.CollectionBinding("other-model", "v1", 16))
    job_id = _submit(store, JobKind.INDEX, _docs(5), chunk_size=5, collection=collection)
    outcome = _runner(store, HashEncoder(), milvus_client).run_chunk(job_id, 0)
    assert outcome.status == ChunkStatus.FAILED
    snap = store.get(job_id)
    assert snap.state == JobState.FAILED and snap.failed == 5
    assert "holds 16-d vectors of model 'other-model'" in snap.failed_chunks[0].message
    milvus_client.drop_collection(collection)


def test_transient_errors_are_retried_then_reported(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, JobKind.EMBED, _docs(4), chunk_size=4)
    flaky = HashEncoder(fail_times=1, error=Retryable("Milvus busy"))
    runner = _runner(store, flaky, milvus_client, max_attempts=2)
    with pytest.raises(RetryChunk):
        runner.run_chunk(job_id, 0, attempt=1)
    assert store.get(job_id).chunks_finished == 0  # nothing counted for the failed attempt
    assert runner.run_chunk(job_id, 0, attempt=2).status == ChunkStatus.DONE

    broken_job = _submit(store, JobKind.EMBED, _docs(4), chunk_size=4)
    broken = _runner(store, HashEncoder(fail_times=9, error=RuntimeError("CUDA OOM")), milvus_client, max_attempts=2)
    with pytest.raises(RetryChunk):
        broken.run_chunk(broken_job, 0, attempt=1)
    outcome = broken.run_chunk(broken_job, 0, attempt=2)
    assert outcome.status == ChunkStatus.FAILED and "CUDA OOM" in outcome.reason


def test_permanent_errors_are_not_retried(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, JobKind.EMBED, _docs(3), chunk_size=3)
    runner = _runner(store, HashEncoder(fail_times=1, error=FailedPrecondition("bad weights")), milvus_client)
    assert runner.run_chunk(job_id, 0, attempt=1).status == ChunkStatus.FAILED


def test_embed_chunk_output_with_options(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    docs = [*_docs(6), Document(id="long", text="word " * 20)]
    options = EmbeddingOptions(model="mrl", dimensions=8, precision=Precision.FLOAT16)
    job_id = _submit(store, JobKind.EMBED, docs, chunk_size=7, embedding=options)
    runner = _runner(store, HashEncoder(), milvus_client)
    runner.run_chunk(job_id, 0)
    snap = store.get(job_id)
    assert snap.truncated == 1
    out = store.get_chunk_output(job_id, 0)
    assert out.ids == [d.id for d in docs] and out.dimensions == 8 and out.precision == "float16"
    vectors = np.frombuffer(out.data, "<f2").reshape(7, 8).astype(np.float32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)


def test_cancelled_job_skips_chunks(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, JobKind.EMBED, _docs(4), chunk_size=2)
    store.cancel(job_id)
    encoder = HashEncoder()
    assert _runner(store, encoder, milvus_client).run_chunk(job_id, 0).status == ChunkStatus.SKIPPED
    assert encoder.calls == 0


def test_embed_request_replies_with_errors(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    runner = _runner(store, HashEncoder(), milvus_client)
    store.put_request("ok", {"texts": ["a", "b"], "options": {"model": FAKE_SPEC.name, "precision": "binary"}}, 10)
    runner.embed_request("ok")
    header, data = store.wait_reply("ok", 1)  # type: ignore[misc]
    assert header["dimensions"] == 16 and header["precision"] == "binary" and len(data) == 4
    store.put_request("bad", {"texts": ["a"], "options": {"model": "nope"}}, 10)
    runner.embed_request("bad")
    header, _ = store.wait_reply("bad", 1)  # type: ignore[misc]
    assert header["error"] == "NotFound" and "unknown model 'nope'" in header["message"]
    runner.embed_request("expired")  # a request the caller withdrew is ignored


def test_index_writes_extra_representations_of_one_pass(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    fields = (
        VectorField(name="v8", dimensions=8),
        VectorField(name="bits", precision=Precision.BINARY),
        VectorField(name="codes", dimensions=4, precision=Precision.INT8),
    )
    docs = _docs(6)
    job_id = _submit(store, JobKind.INDEX, docs, chunk_size=6, collection=collection, extra_fields=fields)
    encoder = HashEncoder()
    assert _runner(store, encoder, milvus_client).run_chunk(job_id, 0).status == ChunkStatus.DONE
    row = milvus_client.query(collection, filter='doc_id == "d3"', output_fields=["vector", "v8", "bits", "codes"])[0]
    raw = encoder.encode([docs[3].text], EmbeddingOptions().input_type).vectors[0]
    full = raw / np.linalg.norm(raw)
    assert np.allclose(row["vector"], full, atol=1e-5)
    assert np.allclose(row["v8"], full[:8] / np.linalg.norm(full[:8]), atol=1e-5)
    bits = np.frombuffer(np.asarray(row["bits"], dtype="<i8").tobytes(), dtype=np.uint8)[:2]
    assert np.array_equal(np.unpackbits(bits), (full > 0).astype(np.uint8))
    assert len(row["codes"]) == 4
    ranges = milvus.int8_ranges(milvus_client, collection, "codes")
    assert ranges.shape == (2, 4) and np.all(ranges[0] < ranges[1])
    binding = milvus.read_binding(milvus_client, collection)
    assert binding is not None and {f.name for f in binding.fields} == {"v8", "bits", "codes"}
    # A job that writes other fields into this collection is refused before it writes anything.
    other = _submit(store, JobKind.INDEX, docs, chunk_size=6, collection=collection)
    outcome = _runner(store, HashEncoder(), milvus_client).run_chunk(other, 0)
    assert outcome.status == ChunkStatus.FAILED and "must write exactly those" in outcome.reason
    milvus_client.drop_collection(collection)


def test_extra_field_validation() -> None:
    with pytest.raises(InvalidArgument, match="invalid"):
        milvus.stored_fields(FAKE_SPEC, [VectorField(name="vector")])
    with pytest.raises(InvalidArgument, match="float16 fields are not supported"):
        milvus.stored_fields(FAKE_SPEC, [VectorField(name="h", precision=Precision.FLOAT16)])
    with pytest.raises(InvalidArgument, match="named twice"):
        milvus.stored_fields(FAKE_SPEC, [VectorField(name="a"), VectorField(name="a", dimensions=4)])
    with pytest.raises(InvalidArgument, match="cannot output 5 dimensions"):
        milvus.stored_fields(FAKE_SPEC, [VectorField(name="a", dimensions=5)])
