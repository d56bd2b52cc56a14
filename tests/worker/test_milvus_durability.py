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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fakes import FAKE_SPEC

from embedfleet import milvus
from embedfleet.domain import Document
from embedfleet.errors import Retryable
from embedfleet.ids import primary_key
from embedfleet.local import LocalCluster
from embedfleet.worker.kinds.dedup_merge import delete_rows
from embedfleet.worker.milvus_sink import MilvusSink

COLLECTION = "durability"
PART = 20
BINDING = milvus.CollectionBinding(FAKE_SPEC.name, "sha256:fake", FAKE_SPEC.dimensions)


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[LocalCluster]:
    server = LocalCluster(data_dir=tmp_path, milvus_port=0, log_dir=tmp_path / "logs")
    server.start_milvus()
    try:
        yield server
    finally:
        server.stop()


def _kill_and_restart(lite: LocalCluster) -> None:
    process = lite.processes["milvus"]
    process.kill()
    process.wait()
    lite.start_milvus()  # same port and data directory


def _part(writer: int, index: int) -> list[Document]:
    return [Document(id=f"w{writer}-p{index}-{i}", text=f"text {writer} {index} {i}") for i in range(PART)]


def _stored_ids(uri: str) -> set[str]:
    client = milvus.connect(uri)
    client.load_collection(COLLECTION)
    rows = client.query(COLLECTION, filter=f"{milvus.PK_FIELD} != 0", output_fields=[milvus.ID_FIELD], limit=16384)
    return {row[milvus.ID_FIELD] for row in rows}


def test_parts_the_sink_acknowledged_survive_a_killed_milvus_lite(lite: LocalCluster) -> None:
    acknowledged: list[list[Document]] = []
    lock = threading.Lock()
    stop = threading.Event()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((PART, FAKE_SPEC.dimensions)).astype(np.float32)

    def write(writer: int) -> None:
        sink = MilvusSink(milvus.connect(lite.milvus_uri), max_batch_bytes=1 << 20)
        index = 0
        while not stop.is_set():
            docs = _part(writer, index)
            try:
                sink.write(COLLECTION, BINDING, docs, vectors)
            except Retryable:
                continue  # not acknowledged (the server is gone, or a transient error): not counted
            with lock:
                acknowledged.append(docs)
            index += 1

    MilvusSink(milvus.connect(lite.milvus_uri), max_batch_bytes=1 << 20).write(
        COLLECTION, BINDING, _part(9, 0), vectors
    )  # the collection exists before the writers race
    writers = [threading.Thread(target=write, args=(w,)) for w in range(3)]
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
