"""A write the sink has returned from survives Milvus Lite being killed with SIGKILL.

Milvus Lite acknowledges upserts and deletes from memory: killed a few seconds into a stream of writes,
it came back without most of the parts it had acknowledged. A part counted done is never run again, so
the sink makes its writes durable before it returns. Deletes (dedup's) were found durable without a
flush; the second test keeps that true. Each test kills a Lite server of its own (same data directory,
restarted) and reads back what was acknowledged.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np
from fakes import FAKE_SPEC, fake_context

from embedfleet import milvus
from embedfleet.domain import Document, EmbeddingOptions, IndexParams, JobSpec
from embedfleet.errors import Retryable
from embedfleet.ids import primary_key
from embedfleet.jobstore import JobStore
from embedfleet.local import LocalCluster
from embedfleet.worker.kinds.dedup_merge import delete_rows
from embedfleet.worker.milvus_sink import MilvusSink
from embedfleet.worker.runner import PartRunner, PartStatus

COLLECTION = "durability"
PART = 20
BINDING = milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", FAKE_SPEC.dimensions)


def _kill_and_restart(lite: LocalCluster) -> None:
    process = lite.processes["milvus"]
    process.kill()
    process.wait()
    lite.start_milvus()  # same port and data directory


def _part(writer: int, index: int) -> list[Document]:
    return [Document(id=f"w{writer}-p{index}-{i}", text=f"text {writer} {index} {i}") for i in range(PART)]


def _stored_ids(uri: str, collection: str = COLLECTION) -> set[str]:
    client = milvus.connect(uri)
    client.load_collection(collection)
    rows = client.query(collection, filter=f"{milvus.PK_FIELD} != 0", output_fields=[milvus.ID_FIELD], limit=16384)
    return {row[milvus.ID_FIELD] for row in rows}


_VECTORS = np.random.default_rng(0).standard_normal((PART, FAKE_SPEC.dimensions)).astype(np.float32)


def _stream_parts(uri: str, writer: int, stop: threading.Event, acknowledged: list[list[Document]]) -> None:
    """Write parts through the sink until ``stop``; each acknowledged one is appended."""
    sink = MilvusSink(milvus.connect(uri), max_batch_bytes=1 << 20)
    index = 0
    while not stop.is_set():
        docs = _part(writer, index)
        try:
            sink.write(COLLECTION, BINDING, docs, _VECTORS)
        except Retryable:
            continue  # not acknowledged (the server is gone, or a transient error): not counted
        acknowledged.append(docs)  # list.append is atomic
        index += 1


def test_parts_the_sink_acknowledged_survive_a_killed_milvus_lite(lite: LocalCluster) -> None:
    acknowledged: list[list[Document]] = []
    stop = threading.Event()
    MilvusSink(milvus.connect(lite.milvus_uri), max_batch_bytes=1 << 20).write(
        COLLECTION, BINDING, _part(9, 0), _VECTORS
    )  # the collection exists before the writers race
    writers = [threading.Thread(target=_stream_parts, args=(lite.milvus_uri, w, stop, acknowledged)) for w in range(3)]
    for thread in writers:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    _kill_and_restart(lite)
    for thread in writers:
        thread.join(30)
    assert len(acknowledged) >= 40

    stored = _stored_ids(lite.milvus_uri)
    lost = [docs[0].id for docs in acknowledged if not {d.id for d in docs} <= stored]
    assert not lost, f"{len(lost)} of {len(acknowledged)} acknowledged parts were lost, e.g. {lost[:3]}"


def test_a_dedup_delete_survives_a_killed_milvus_lite(lite: LocalCluster) -> None:
    client = milvus.connect(lite.milvus_uri)
    docs = [d for index in range(5) for d in _part(0, index)]
    vectors = np.random.default_rng(1).standard_normal((len(docs), FAKE_SPEC.dimensions)).astype(np.float32)
    MilvusSink(client, max_batch_bytes=1 << 20).write(COLLECTION, BINDING, docs, vectors)
    removed = docs[::2]
    assert delete_rows(client, COLLECTION, [primary_key(COLLECTION, d.id) for d in removed]) == len(removed)
    _kill_and_restart(lite)

    assert _stored_ids(lite.milvus_uri) == {d.id for d in docs[1::2]}


class RecordingSink(MilvusSink):
    """The real sink, noting its writes (with their ``persist``) and its flushes in order."""

    def __init__(self, uri: str) -> None:
        super().__init__(milvus.connect(uri), max_batch_bytes=1 << 20)
        self.calls: list[str] = []

    def write(self, *args: Any, persist: bool = True, **kwargs: Any) -> int:
        self.calls.append(f"write persist={persist}")
        return super().write(*args, persist=persist, **kwargs)

    def persist(self, collection: str) -> None:
        self.calls.append("persist")
        super().persist(collection)


def test_an_index_part_is_made_durable_once_after_its_last_write(lite: LocalCluster, store: JobStore) -> None:
    """Its writes of ``write_rows`` rows are not flushed one by one (24 ms each on Lite); the part
    flushes once, after the last, before it counts as done."""
    docs = [d for index in range(30) for d in _part(1, index)]  # 600 rows, written 50 at a time
    job_id = uuid.uuid4().hex
    store.put_part_input(job_id, 0, docs)
    spec = JobSpec(
        params=IndexParams(collection="part_durability"),
        embedding=EmbeddingOptions(model=FAKE_SPEC.name),
        output_dimensions=FAKE_SPEC.dimensions,
        part_size=len(docs),
    )
    store.create_job(job_id, spec, total=len(docs), parts=1)
    sink = RecordingSink(lite.milvus_uri)
    ctx = fake_context(store, lambda: sink, write_rows=50)
    assert PartRunner(ctx, max_attempts=1, owner="t", lease_s=30).run_part(job_id, 0).status == PartStatus.DONE
    *writes, last = sink.calls
    assert len(writes) >= 6 and set(writes) == {"write persist=False"} and last == "persist"
    _kill_and_restart(lite)
    assert _stored_ids(lite.milvus_uri, "part_durability") == {d.id for d in docs}


def test_flushes_that_race_on_one_collection_are_tried_again(lite: LocalCluster) -> None:
    """Lite fails a flush that overlaps another one on the same collection ("current_seq is monotonic");
    four writers flushing after each small write hit that a few times in a hundred. None may fail."""
    MilvusSink(milvus.connect(lite.milvus_uri), max_batch_bytes=1 << 20).write(
        COLLECTION, BINDING, _part(9, 0), _VECTORS
    )
    failures: list[str] = []

    def write(writer: int) -> None:
        sink = MilvusSink(milvus.connect(lite.milvus_uri), max_batch_bytes=1 << 20)
        for index in range(30):
            try:
                sink.write(COLLECTION, BINDING, _part(writer, index)[:1], _VECTORS[:1])
            except Retryable as exc:
                failures.append(str(exc))

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(120)
    assert not failures, failures[:3]
