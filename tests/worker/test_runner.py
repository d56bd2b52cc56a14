"""The chunk logic with a deterministic fake encoder, the real Redis and a real Milvus Lite server."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import pytest
import redis
from fakes import FAKE_SPEC, HashEncoder, fake_context

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
from embedfleet.jobstore import JobStore, PartStart
from embedfleet.local import free_port
from embedfleet.logs import make_handler
from embedfleet.vectors import bit_rotation
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.models.base import Encoded
from embedfleet.worker.runner import PartRunner, PartStatus, RetryPart


@pytest.fixture
def milvus_client(milvus_uri: str):  # type: ignore[no-untyped-def]
    return milvus.connect(milvus_uri)


def _runner(  # type: ignore[no-untyped-def]
    store: JobStore,
    encoder: HashEncoder,
    milvus_client,
    max_attempts: int = 3,
    lease_s: float = 6.0,
    sink: Callable[[], MilvusSink] | None = None,
) -> PartRunner:
    shared = MilvusSink(milvus_client, max_batch_bytes=4096)
    ctx = fake_context(store, sink or (lambda: shared), encoder)
    return PartRunner(ctx, max_attempts=max_attempts, owner="test-worker", lease_s=lease_s)


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


def test_an_index_part_of_a_job_cancelled_while_it_embeds_writes_nothing_more(  # type: ignore[no-untyped-def]
    store: JobStore, milvus_client
) -> None:
    """So that a collection deleted right after the cancel is not created again by the part's writes."""
    collection = f"t_{uuid.uuid4().hex[:10]}"
    job_id = _submit(store, _index(collection), _docs(300), chunk_size=300)

    class CancelledOnFirstBatch(HashEncoder):
        def encode(self, texts: list[str], input_type: InputType) -> Encoded:
            if self.calls == 0:
                store.cancel(job_id)
            return super().encode(texts, input_type)

    outcome = _runner(store, CancelledOnFirstBatch(), milvus_client).run_part(job_id, 0)
    assert (outcome.status, outcome.reason) == (PartStatus.SKIPPED, "cancelled")
    assert not milvus_client.has_collection(collection)


def test_index_chunks_twice_writes_rows_once(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    job_id = _submit(store, _index(collection), _docs(50), chunk_size=20)
    runner = _runner(store, HashEncoder(), milvus_client)
    # Attempt 1 of chunk 0 starts and "dies" before finishing (as a killed worker would) ...
    store.start_part(job_id, 0, lease_s=0.05)
    time.sleep(0.1)  # its lease lapses: nothing refreshes it
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
        runner.run_part(job_id, 0)
    assert store.get(job_id).parts_finished == 0  # nothing counted for the failed attempt
    assert runner.run_part(job_id, 0).status == PartStatus.DONE  # the retry takes over its backoff lease

    broken_job = _submit(store, EmbedParams(), _docs(4), chunk_size=4)
    broken = _runner(store, HashEncoder(fail_times=9, error=RuntimeError("CUDA OOM")), milvus_client, max_attempts=2)
    with pytest.raises(RetryPart):
        broken.run_part(broken_job, 0)
    outcome = broken.run_part(broken_job, 0)
    assert outcome.status == PartStatus.FAILED and "CUDA OOM" in outcome.reason


def test_permanent_errors_are_not_retried(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, EmbedParams(), _docs(3), chunk_size=3)
    runner = _runner(store, HashEncoder(fail_times=1, error=FailedPrecondition("bad weights")), milvus_client)
    assert runner.run_part(job_id, 0).status == PartStatus.FAILED


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
    # FAKE_SPEC is a Matryoshka model: its bits are rotated by default (BitBasis)
    assert np.array_equal(np.unpackbits(bits), (full @ bit_rotation(16) > 0).astype(np.uint8))
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


def test_every_log_line_of_a_part_names_its_job_and_part(store: JobStore) -> None:
    """A part that fails once (logged with its traceback) and then runs again: each of its lines, in
    JSON, carries job_id and part; a line logged outside the part carries neither."""
    job_id = _submit(store, EmbedParams(), _docs(3), chunk_size=3)
    runner = _runner(store, HashEncoder(fail_times=1, error=RuntimeError("CUDA OOM")), None, max_attempts=2)
    stream = io.StringIO()
    handler = make_handler("json")
    handler.setStream(stream)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with pytest.raises(RetryPart):
            runner.run_part(job_id, 0)
        assert runner.run_part(job_id, 0).status == PartStatus.DONE
        logging.getLogger("embedfleet.test").warning("not part of any part")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    part_lines = [line for line in lines if line["logger"] == "embedfleet.worker.runner"]
    messages = " | ".join(line["message"] for line in part_lines)
    assert "attempt 1 failed" in messages and "attempt 2 after an unfinished one" in messages
    assert "part done: 3 documents" in messages
    assert all(line["job_id"] == job_id and line["part"] == 0 for line in part_lines)
    assert "CUDA OOM" in part_lines[0]["exception"]
    assert "job_id" not in lines[-1] and lines[-1]["message"] == "not part of any part"


class _BlockingEncoder(HashEncoder):
    """Encodes once ``release`` is set: a part that runs longer than its lease would last unrefreshed."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def encode(self, texts, input_type):  # type: ignore[no-untyped-def]
        self.started.set()
        self.release.wait(10)
        return super().encode(texts, input_type)


def test_a_second_delivery_never_runs_while_the_first_is_alive(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, EmbedParams(), _docs(4), chunk_size=4)
    slow = _BlockingEncoder()
    first = _runner(store, slow, milvus_client, lease_s=0.3)
    outcomes: list[PartStatus] = []
    thread = threading.Thread(target=lambda: outcomes.append(first.run_part(job_id, 0).status))
    thread.start()
    assert slow.started.wait(5)
    time.sleep(1.0)  # three lease lengths: only the refreshing keeps it
    second = HashEncoder()
    with pytest.raises(RetryPart, match="another worker holds") as busy:
        _runner(store, second, milvus_client, lease_s=0.3).run_part(job_id, 0)
    assert 0 < busy.value.delay_s <= 1.0  # tried again once the holder's lease would have lapsed
    slow.release.set()
    thread.join(10)
    assert outcomes == [PartStatus.DONE] and second.calls == 0
    assert _runner(store, second, milvus_client).run_part(job_id, 0).status == PartStatus.SKIPPED  # then dropped
    assert store.get(job_id).done == 4


def test_a_part_whose_worker_dies_every_time_is_failed(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, EmbedParams(), _docs(4), chunk_size=4)
    for _ in range(3):  # three deliveries whose worker was killed mid-part (nothing refreshes the lease)
        store.start_part(job_id, 0, lease_s=0.05)
        time.sleep(0.1)
    encoder = HashEncoder()
    outcome = _runner(store, encoder, milvus_client, max_attempts=3).run_part(job_id, 0)
    assert outcome.status == PartStatus.FAILED and encoder.calls == 0
    assert "gave up after 3 attempts: each time its worker died" in outcome.reason
    snap = store.get(job_id)
    assert snap.state == JobState.FAILED and snap.failed == 4


class _FlakyStore(JobStore):
    """The real store, whose named steps raise a Redis error once each (Redis at maxmemory)."""

    def __init__(self, store: JobStore, failing: set[str]) -> None:
        super().__init__(store.r, store.prefix, store.ttl)
        self.failing = failing

    def _maybe_fail(self, step: str) -> None:
        if step in self.failing:
            self.failing.discard(step)
            raise redis.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'")

    def start_part(self, job_id: str, part: int, owner: str = "", lease_s: float = 6.0) -> PartStart:
        self._maybe_fail("start")
        return super().start_part(job_id, part, owner, lease_s)

    def get_part_input(self, job_id: str, part: int) -> list[Document]:
        self._maybe_fail("input")
        return super().get_part_input(job_id, part)

    def finish_part(self, job_id: str, part: int, **counts) -> bool:  # type: ignore[no-untyped-def]
        self._maybe_fail("finish")
        return super().finish_part(job_id, part, **counts)


def test_job_store_errors_become_retries(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    flaky = _FlakyStore(store, {"start", "input", "finish"})
    job_id = _submit(store, EmbedParams(), _docs(4), chunk_size=4)
    runner = _runner(flaky, HashEncoder(), milvus_client, max_attempts=5)
    for step in ("start", "input", "finish"):
        with pytest.raises(RetryPart):
            runner.run_part(job_id, 0)
        assert step not in flaky.failing and store.get(job_id).parts_finished == 0
    assert runner.run_part(job_id, 0).status == PartStatus.DONE
    assert store.get(job_id).done == 4  # counted once


def test_milvus_down_at_first_connect_is_retried(store: JobStore, milvus_client) -> None:  # type: ignore[no-untyped-def]
    job_id = _submit(store, _index(f"t_{uuid.uuid4().hex[:10]}"), _docs(3), chunk_size=3)
    dead_uri = f"http://127.0.0.1:{free_port()}"
    runner = _runner(store, HashEncoder(), milvus_client, sink=lambda: MilvusSink(milvus.connect(dead_uri), 4096))
    with pytest.raises(RetryPart, match="cannot reach Milvus"):
        runner.run_part(job_id, 0)
    assert store.get(job_id).parts_finished == 0


def test_a_dropped_collection_is_checked_again(milvus_client) -> None:  # type: ignore[no-untyped-def]
    collection = f"t_{uuid.uuid4().hex[:10]}"
    binding = milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", FAKE_SPEC.dimensions)
    docs = _docs(3)
    vectors = np.random.default_rng(0).standard_normal((3, FAKE_SPEC.dimensions)).astype(np.float32)
    sink = MilvusSink(milvus_client, max_batch_bytes=4096, binding_ttl_s=0.5)
    assert sink.write(collection, binding, docs, vectors) == 3
    milvus_client.drop_collection(collection)  # dropped under a worker that checked it
    assert sink.write(collection, binding, docs, vectors) == 3  # "not found": created again, not a failure
    assert _count(milvus_client, collection) == 3
    milvus_client.drop_collection(collection)
    milvus.ensure_collection(milvus_client, collection, milvus.CollectionBinding("other-model", "v1", 16))
    time.sleep(0.6)  # past the binding's check TTL
    with pytest.raises(FailedPrecondition, match="other-model"):
        sink.write(collection, binding, docs, vectors)  # another model's collection now: refused
    milvus_client.drop_collection(collection)


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
        runner.run_part(job_id, 0)
    assert runner.run_part(job_id, 0).status == PartStatus.DONE
    snap = store.get(job_id)
    assert (snap.done, snap.failed) == (8, 1)
    assert snap.failed_documents[0].id == "d4" and "RuntimeError" in snap.failed_documents[0].message
    out = store.get_part_output(job_id, 0)
    assert out.ids == [d.id for i, d in enumerate(docs) if i != 4]
    assert len(out.data) == 8 * FAKE_SPEC.dimensions * 4


def test_an_index_part_written_as_it_embeds_stores_each_document_its_own_vector(  # type: ignore[no-untyped-def]
    store: JobStore, milvus_client
) -> None:
    """Mixed lengths, several token-budget batches (longest first) and several upserts per part: every row
    still holds its own document's vector, text and metadata."""
    collection = f"t_{uuid.uuid4().hex[:10]}"
    docs = [
        Document(id=f"d{i}", text=" ".join(["w"] * (i % 11)) + f" doc {i}", metadata_json=f'{{"i": {i}}}')
        for i in range(45)
    ]
    job_id = _submit(store, _index(collection), docs, chunk_size=45)
    encoder = HashEncoder()
    runner = _runner(store, encoder, milvus_client)
    runner.ctx.write_rows = 7
    assert runner.run_part(job_id, 0).status == PartStatus.DONE
    assert encoder.calls > 3  # the part ran as several forward passes
    rows = milvus_client.query(collection, filter="", output_fields=["doc_id", "text", "metadata", "vector"], limit=100)
    assert len(rows) == 45
    for row in rows:
        i = int(row["doc_id"][1:])
        raw = HashEncoder().encode([docs[i].text], EmbeddingOptions().input_type).vectors[0]
        assert row["text"] == docs[i].text and row["metadata"] == {"i": i}
        assert np.allclose(row["vector"], raw / np.linalg.norm(raw), atol=1e-5)
    milvus_client.drop_collection(collection)
