"""The chunk logic with a deterministic fake encoder, the real Redis and a real Milvus Lite server."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import redis
from fakes import FAKE_SPEC, HashEncoder

from embedfleet import milvus
from embedfleet.domain import (
    Document,
    EmbeddingOptions,
    EmbedParams,
    IndexParams,
    InputType,
    JobParams,
    JobSpec,
    JobState,
    Precision,
    VectorField,
)
from embedfleet.errors import FailedPrecondition, InvalidArgument, Retryable
from embedfleet.jobstore import JobStore
from embedfleet.model_store import ModelStore
from embedfleet.registry import ModelRegistry
from embedfleet.worker.kinds.base import WorkerContext
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.models.base import Encoded
from embedfleet.worker.models.host import ModelHost
from embedfleet.worker.runner import PartRunner, PartStatus, RetryPart


@pytest.fixture
def milvus_client(milvus_uri: str):  # type: ignore[no-untyped-def]
    return milvus.connect(milvus_uri)


def _runner(store: JobStore, encoder: HashEncoder, milvus_client, max_attempts: int = 3) -> PartRunner:  # type: ignore[no-untyped-def]
    host = ModelHost()
    host.add(encoder)
    sink = MilvusSink(milvus_client, max_batch_bytes=4096)
    ctx = WorkerContext(
        store=store,
        registry=lambda: ModelRegistry([FAKE_SPEC]),
        host=host,
        sink=lambda: sink,
        model_store=ModelStore("/nonexistent/model-store"),
        device="cpu",
    )
    return PartRunner(ctx, max_attempts=max_attempts)


def _submit(
    store: JobStore,
    params: JobParams,
    docs: list[Document],
    chunk_size: int,
    embedding: EmbeddingOptions | None = None,
) -> str:
    """Stage and create a job as the gateway would, resolving the output width against FAKE_SPEC."""
    job_id = uuid.uuid4().hex
    chunks = [docs[i : i + chunk_size] for i in range(0, len(docs), chunk_size)]
    for c, chunk in enumerate(chunks):
        store.put_part_input(job_id, c, chunk)
    options = embedding or EmbeddingOptions(model=FAKE_SPEC.name)
    spec = JobSpec(
        params=params,
        embedding=options,
        output_dimensions=FAKE_SPEC.output_dimensions(options.dimensions),
        part_size=chunk_size,
    )
    store.create_job(job_id, spec, total=len(docs), parts=len(chunks))
    return job_id


def _index(collection: str, fields: tuple[VectorField, ...] = ()) -> IndexParams:
    return IndexParams(collection=collection, stored_fields=milvus.stored_fields(FAKE_SPEC, fields))


def _docs(n: int) -> list[Document]:
    return [Document(id=f"d{i}", text=f"document number {i}", metadata_json=f'{{"i": {i}}}') for i in range(n)]


def _count(client, collection: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def test_index_chunks_twice_writes_rows_once(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    job_id = _submit(store, _index(collection), _docs(50), chunk_size=20)
    runner = _runner(store, HashEncoder(), milvus_client)
    # Attempt 1 of chunk 0 starts and "dies" before finishing (as a killed worker would) ...
    store.start_part(job_id, 0)
    for c in range(3):
        assert runner.run_part(job_id, c).status == PartStatus.DONE
    # ... and a duplicate delivery of a finished chunk is skipped.
    assert runner.run_part(job_id, 1).status == PartStatus.SKIPPED
    snap = store.get(job_id)
    assert (snap.state, snap.done) == (JobState.SUCCEEDED, 50)
    assert _count(milvus_client, collection) == 50
    binding = milvus.read_binding(milvus_client, collection)
    assert binding == milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", FAKE_SPEC.dimensions)
    # Run the whole job again (a re-index): upserts, still 50 rows.
    again = _submit(store, _index(collection), _docs(50), chunk_size=50)
    runner.run_part(again, 0)
    assert _count(milvus_client, collection) == 50
    milvus_client.drop_collection(collection)


def test_collection_of_another_model_fails_the_chunk(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    milvus.ensure_collection(milvus_client, collection, milvus.CollectionBinding("other-model", "v1", 16))
    job_id = _submit(store, _index(collection), _docs(5), chunk_size=5)
    outcome = _runner(store, HashEncoder(), milvus_client).run_part(job_id, 0)
    assert outcome.status == PartStatus.FAILED
    snap = store.get(job_id)
    assert snap.state == JobState.FAILED and snap.failed == 5
    assert "holds 16-d vectors of model 'other-model'" in snap.failed_parts[0].message
    milvus_client.drop_collection(collection)


def test_transient_errors_are_retried_then_reported(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, EmbedParams(), _docs(4), chunk_size=4)
    flaky = HashEncoder(fail_times=1, error=Retryable("Milvus busy"))
    runner = _runner(store, flaky, milvus_client, max_attempts=2)
    with pytest.raises(RetryPart):
        runner.run_part(job_id, 0, attempt=1)
    assert store.get(job_id).parts_finished == 0  # nothing counted for the failed attempt
    assert runner.run_part(job_id, 0, attempt=2).status == PartStatus.DONE

    broken_job = _submit(store, EmbedParams(), _docs(4), chunk_size=4)
    broken = _runner(store, HashEncoder(fail_times=9, error=RuntimeError("CUDA OOM")), milvus_client, max_attempts=2)
    with pytest.raises(RetryPart):
        broken.run_part(broken_job, 0, attempt=1)
    outcome = broken.run_part(broken_job, 0, attempt=2)
    assert outcome.status == PartStatus.FAILED and "CUDA OOM" in outcome.reason


def test_permanent_errors_are_not_retried(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, EmbedParams(), _docs(3), chunk_size=3)
    runner = _runner(store, HashEncoder(fail_times=1, error=FailedPrecondition("bad weights")), milvus_client)
    assert runner.run_part(job_id, 0, attempt=1).status == PartStatus.FAILED


def test_embed_chunk_output_with_options(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    docs = [*_docs(6), Document(id="long", text="word " * 20)]
    options = EmbeddingOptions(model="mrl", dimensions=8, precision=Precision.FLOAT16)
    job_id = _submit(store, EmbedParams(), docs, chunk_size=7, embedding=options)
    runner = _runner(store, HashEncoder(), milvus_client)
    runner.run_part(job_id, 0)
    snap = store.get(job_id)
    assert snap.truncated == 1
    out = store.get_part_output(job_id, 0)
    assert out.ids == [d.id for d in docs] and out.dimensions == 8 and out.precision == Precision.FLOAT16
    vectors = np.frombuffer(out.data, "<f2").reshape(7, 8).astype(np.float32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-2)


def test_cancelled_job_skips_chunks(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, EmbedParams(), _docs(4), chunk_size=2)
    store.cancel(job_id)
    encoder = HashEncoder()
    assert _runner(store, encoder, milvus_client).run_part(job_id, 0).status == PartStatus.SKIPPED
    assert encoder.calls == 0


def test_embed_request_replies_with_errors(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    runner = _runner(store, HashEncoder(), milvus_client)
    ok = {"texts": ["a", "b"], "options": {"model": FAKE_SPEC.name, "precision": "binary"}, "dimensions": 16}
    store.put_request("ok", ok, 10)
    runner.embed_request("ok")
    header, data = store.wait_reply("ok", 1)  # type: ignore[misc]
    assert header["dimensions"] == 16 and header["precision"] == "binary" and len(data) == 4
    store.put_request("bad", {"texts": ["a"], "options": {"model": "nope"}, "dimensions": 16}, 10)
    runner.embed_request("bad")
    header, _ = store.wait_reply("bad", 1)  # type: ignore[misc]
    assert header["error"] == "not_found" and "unknown model 'nope'" in header["message"]
    runner.embed_request("expired")  # a request the caller withdrew is ignored


def test_index_writes_extra_representations_of_one_pass(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    fields = (
        VectorField(name="v8", dimensions=8),
        VectorField(name="bits", precision=Precision.BINARY),
        VectorField(name="codes", dimensions=4, precision=Precision.INT8),
    )
    docs = _docs(6)
    job_id = _submit(store, _index(collection, fields), docs, chunk_size=6)
    encoder = HashEncoder()
    assert _runner(store, encoder, milvus_client).run_part(job_id, 0).status == PartStatus.DONE
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
    other = _submit(store, _index(collection), docs, chunk_size=6)
    outcome = _runner(store, HashEncoder(), milvus_client).run_part(other, 0)
    assert outcome.status == PartStatus.FAILED and "must write exactly those" in outcome.reason
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


class _CountingRedis(redis.Redis):
    """The real Redis client, counting round trips (commands, and pipelines as one)."""

    round_trips = 0

    def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        type(self).round_trips += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint=None):  # type: ignore[no-untyped-def]
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def counted(raise_on_error: bool = True):  # type: ignore[no-untyped-def]
            type(self).round_trips += 1
            return execute(raise_on_error)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe


class _RecordingEncoder(HashEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.round_trips_at_encode: list[int] = []

    def encode(self, texts, input_type):  # type: ignore[no-untyped-def]
        self.round_trips_at_encode.append(_CountingRedis.round_trips)
        return super().encode(texts, input_type)


def test_starting_a_part_costs_two_round_trips(redis_client: redis.Redis, key_prefix: str, milvus_client) -> None:  # type: ignore[no-untyped-def]
    counting = _CountingRedis(connection_pool=redis_client.connection_pool)
    store = JobStore(counting, key_prefix, ttl_seconds=600)
    job_id = _submit(store, EmbedParams(), _docs(4), chunk_size=4)
    encoder = _RecordingEncoder()
    runner = _runner(store, encoder, milvus_client)
    store.start_part("warm-up-no-such-job", 0)  # loads the Lua script once, as any long-lived worker has
    _CountingRedis.round_trips = 0
    assert runner.run_part(job_id, 0).status == PartStatus.DONE
    assert encoder.round_trips_at_encode == [2]  # start_part (spec included) + the part's input


def test_a_gone_job_is_never_recreated(store: JobStore) -> None:
    job_id = _submit(store, EmbedParams(), _docs(2), chunk_size=2)
    assert store.start_part(job_id, 0).spec is not None
    store.r.delete(store.job_key(job_id))  # expired under a running part
    assert not store.finish_part(job_id, 0, done=2, failed=0, truncated=0)
    assert not store.r.exists(store.job_key(job_id))
    assert store.start_part(job_id, 0).outcome.value == "missing"


def test_finishing_a_part_refreshes_the_job_ttl(store: JobStore) -> None:
    job_id = _submit(store, EmbedParams(), _docs(4), chunk_size=2)
    store.r.expire(store.job_key(job_id), 5)
    store.start_part(job_id, 0)
    store.finish_part(job_id, 0, done=2, failed=0, truncated=0)
    assert store.r.ttl(store.job_key(job_id)) > 500


class PoisonEncoder(HashEncoder):
    """Refuses any batch holding a text with "poison" in it, as a model or tokenizer would a bad input."""

    def __init__(self, error: type[Exception]) -> None:
        super().__init__()
        self.poison_error = error

    def encode(self, texts: list[str], input_type: InputType) -> Encoded:
        if any("poison" in t for t in texts):
            raise self.poison_error("cannot encode a poisoned text")
        return super().encode(texts, input_type)


def _poisoned(n: int, bad: int) -> list[Document]:
    docs = _docs(n)
    docs[bad] = Document(id=docs[bad].id, text="a poison pill")
    return docs


def test_a_poison_document_fails_alone(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    """A refused input is isolated at once: the other 31 documents of its part are written."""
    collection = f"t_{uuid.uuid4().hex[:10]}"
    job_id = _submit(store, _index(collection), _poisoned(40, 7), chunk_size=32)
    runner = _runner(store, PoisonEncoder(InvalidArgument), milvus_client)
    assert [runner.run_part(job_id, c).status for c in range(2)] == [PartStatus.DONE, PartStatus.DONE]
    snap = store.get(job_id)
    assert (snap.state, snap.done, snap.failed, snap.failed_parts) == (JobState.FAILED, 39, 1, [])
    assert [(f.id, f.message) for f in snap.failed_documents] == [("d7", "cannot encode a poisoned text")]
    assert "1 documents failed on their own" in snap.error
    assert _count(milvus_client, collection) == 39
    milvus_client.drop_collection(collection)


def test_an_unexpected_error_isolates_once_retries_are_spent(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    docs = _poisoned(9, 4)
    job_id = _submit(store, EmbedParams(), docs, chunk_size=9)
    runner = _runner(store, PoisonEncoder(RuntimeError), milvus_client, max_attempts=2)
    with pytest.raises(RetryPart):  # the whole part is retried first: the error may be transient
        runner.run_part(job_id, 0, attempt=1)
    assert runner.run_part(job_id, 0, attempt=2).status == PartStatus.DONE
    snap = store.get(job_id)
    assert (snap.done, snap.failed) == (8, 1)
    assert snap.failed_documents[0].id == "d4" and "RuntimeError" in snap.failed_documents[0].message
    out = store.get_part_output(job_id, 0)
    assert out.ids == [d.id for i, d in enumerate(docs) if i != 4]
    assert len(out.data) == 8 * FAKE_SPEC.dimensions * 4
