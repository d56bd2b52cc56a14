"""Faults against the real system (Celery worker processes, Redis, Milvus Lite, the real model): what
is lost (nothing), what is written twice (nothing) and how long recovery takes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from embedfleet import milvus
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import Document, EmbeddingOptions, EmbedParams, JobSpec, JobState
from embedfleet.gateway.kinds.embed import EmbedJobRequest
from embedfleet.jobstore import JobStore
from embedfleet.local import LocalCluster


def _docs(n: int, tag: str) -> list[dict[str, str]]:
    return [{"id": f"{tag}-{i}", "text": f"{tag} sentence number {i} about leases and workers"} for i in range(n)]


def _running_part(store: JobStore, job_id: str, timeout_s: float) -> tuple[int, bytes]:
    """A part of the job that a worker runs now, and the owner named in its lease."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for raw, state in store.r.hgetall(store._parts_key(job_id)).items():
            owner = store.r.get(store._lease_key(job_id, int(raw)))
            if state == b"running" and owner is not None:
                return int(raw), owner
        time.sleep(0.02)
    raise AssertionError(f"no part of job {job_id} started within {timeout_s:.0f} s")


def _signal_worker(system: LocalCluster, signum: signal.Signals) -> None:
    """Send ``signum`` to the one Celery worker's main process and its pool children."""
    main = system.processes["worker-0"]
    children = Path(f"/proc/{main.pid}/task/{main.pid}/children").read_text().split()
    for pid in (main.pid, *map(int, children)):
        os.kill(pid, signum)


def _kill_worker(system: LocalCluster) -> subprocess.Popen[bytes]:
    """SIGKILL the one Celery worker's main process and its pool children; returns the killed main."""
    main = system.processes["worker-0"]
    _signal_worker(system, signal.SIGKILL)
    return main


def test_a_killed_worker_process_is_recovered_in_seconds(celery_system: LocalCluster) -> None:
    """SIGKILL of the Celery main process and its pool child (a container's OOM kill): the broker would
    redeliver the part only after its visibility timeout (60 s here, an hour by default); the part's
    lease lapses instead, a gateway queues it again within seconds, and the worker, started again by
    the local supervisor, runs it. The lease and the recovery tick are the defaults."""
    store = celery_system.gateway.ctx.store
    collection = f"e2e_{uuid.uuid4().hex[:8]}"
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as client:
        job = client.submit_index(_docs(300, "lease"), collection, chunk_size=300)  # one long part
        part, owner = _running_part(store, job.id, 60)
        main = _kill_worker(celery_system)
        killed_at = time.monotonic()
        requeued_s = None
        while True:  # until the interrupted part runs again under another owner (or is done)
            holder = store.r.get(store._lease_key(job.id, part))
            state = store.part_state(job.id, part)
            if requeued_s is None and state != "running":
                requeued_s = time.monotonic() - killed_at
            if state == "done" or (state == "running" and holder not in (None, owner)):
                break
            assert time.monotonic() - killed_at < 90, "the killed worker's part never ran again"
            time.sleep(0.05)
        running_s = time.monotonic() - killed_at
        # A restarted worker already waiting on the queue may take the part within one poll of its
        # being queued again: then the time it ran again bounds the time it was queued again.
        requeued_s = running_s if requeued_s is None else requeued_s
        print(f"\nkilled worker's part queued again after {requeued_s} s, running again after {running_s:.1f} s")
        final = client.wait(job.id)
    assert requeued_s is not None and requeued_s < 15, f"queueing the part again took {requeued_s} s"
    assert celery_system.restarts >= 1 and celery_system.processes["worker-0"].pid != main.pid
    assert final.state == JobState.SUCCEEDED, final.error
    assert (final.done, final.failed) == (300, 0)
    rows = milvus.connect(celery_system.milvus_uri).query(collection, filter="", output_fields=["count(*)"])
    assert rows[0]["count(*)"] == 300  # the interrupted part's rows written once


def test_a_distill_job_killed_mid_training_resumes_from_its_checkpoint(
    celery_system: LocalCluster, wordnet_docs: list[dict]
) -> None:
    """The worker is killed while it trains (checkpoints every 5 steps in the test cluster); the part runs
    again on the restarted worker, which continues from the checkpoint instead of step 0."""
    store = celery_system.gateway.ctx.store
    texts = [str(d["text"]) for d in wordnet_docs[1400:1800]]
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as client:
        job = client.submit_distill(
            "resumed-student",
            texts,
            keep_layers=1,
            max_steps=60,
            batch_size=8,
            eval_limit=40,
            min_quality_fraction=0.1,
        )
        deadline = time.monotonic() + 120
        while client.get_job(job.id).done < 20:  # past a few checkpoints
            assert time.monotonic() < deadline, "training never reached step 20"
            time.sleep(0.05)
        main = _kill_worker(celery_system)
        killed_at_step = store.get(job.id).done
        final = client.wait(job.id)
    assert celery_system.processes["worker-0"].pid != main.pid
    assert final.state == JobState.SUCCEEDED, final.error
    assert final.done == final.total == 60
    resumed_from = final.metrics["resumed_from_step"]
    assert 15 <= resumed_from <= killed_at_step and resumed_from % 5 == 0, (resumed_from, killed_at_step)
    assert final.outputs["model"] == "resumed-student"


def test_recovery_passes_over_a_job_it_cannot_read(celery_system: LocalCluster) -> None:
    gateway = celery_system.gateway
    store = gateway.ctx.store
    broken = uuid.uuid4().hex
    store.r.hset(store.job_key(broken), mapping={"state": "RUNNING", "parts_total": 1})  # a partial record
    store.r.sadd(store._active_key, broken)
    job_id = uuid.uuid4().hex  # accepted by a gateway that died before queueing any of it
    store.put_part_input(job_id, 0, [Document(id="r", text="recovered text")])
    model = gateway.ctx.resolve(EmbeddingOptions(model="all-MiniLM-L6-v2"))
    spec = JobSpec(params=EmbedParams(), embedding=model.options, output_dimensions=model.output_dimensions)
    store.create_job(job_id, spec, total=1, parts=1)
    store.r.hset(store.job_key(job_id), "created_at", repr(time.time() - 60))
    try:
        # Both passes log the broken job and pass over it (a raise here would stop the whole pass); the
        # good job is fed (here, or by the gateway's own loop, whichever comes first) and runs.
        gateway.jobs.feeder.recover_pending()
        gateway.jobs.feeder.feed_all()
        with EmbedfleetClient(celery_system.gateway_address, timeout=120) as client:
            assert client.wait(job_id).state == JobState.SUCCEEDED
            assert broken not in [j.id for j in client.list_jobs(page_size=1000)]
    finally:
        store.r.delete(store.job_key(broken))
        store.r.srem(store._active_key, broken)


def test_a_streaming_submission_keeps_its_staging_marker(celery_system: LocalCluster) -> None:
    """While documents stream in, the gateway keeps a staging marker alive: had it died mid-stream, the
    marker would lapse and the recovery loop would delete what it staged (``reap_abandoned_staging``)."""
    jobs = celery_system.gateway.jobs
    store = jobs.store
    seen: list[float | None] = []

    def documents() -> Iterator[Document]:
        for i in range(40):
            if i == 20:
                [(_, deadline)] = store.r.zrange(store._staging_key, 0, -1, withscores=True)
                seen.append(deadline)
            yield Document(id=f"s{i}", text=f"streamed sentence {i}")

    request = EmbedJobRequest(embedding=EmbeddingOptions(model="all-MiniLM-L6-v2"), chunk_size=8)
    snap = jobs.submit(request, documents())
    assert seen and seen[0] is not None and seen[0] > time.time()  # marked while streaming
    assert store.r.zscore(store._staging_key, snap.id) is None  # and unmarked once the job exists


def test_a_dedup_partition_whose_worker_is_killed_is_redone(
    celery_system: LocalCluster, wordnet_docs: list[dict]
) -> None:
    """A dedup job's partitions are its parts: the worker is frozen while it runs one (SIGSTOP, so the
    part is certainly mid-run), then killed; the part runs again on the restarted worker and the job
    finds exactly the pairs of an exact-mode run (every row probes every partition here, so the two
    modes must agree pair for pair)."""
    store = celery_system.gateway.ctx.store
    collection = f"e2e_dedup_kill_{uuid.uuid4().hex[:8]}"
    docs: list[dict[str, object]] = [dict(d) for d in wordnet_docs[:400]]
    docs += [{"id": f"copy-{d['id']}", "text": str(d["text"]).upper()} for d in wordnet_docs[:40]]  # text pass
    docs += [{"id": f"near-{d['id']}", "text": f"{d['text']}, as it is said"} for d in wordnet_docs[40:80]]

    def pairs(job_id: str) -> set[tuple[str, ...]]:
        found = set()
        for group in client.dedup_groups(job_id):
            ids = sorted([group.kept_id, *group.removed_ids])
            found.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
        return found

    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as client:
        indexed = client.index(docs, collection)
        assert indexed.state == JobState.SUCCEEDED, indexed.error
        exact = client.wait(client.submit_dedup(collection, 0.85, mode="exact").id)
        assert exact.state == JobState.SUCCEEDED, exact.error
        job = client.submit_dedup(collection, 0.85, partitions=6, n_probe=6, parts=3)
        deadline = time.monotonic() + 120
        while True:  # freeze the worker the moment one of the job's parts runs, and check that it still does
            part, _ = _running_part(store, job.id, 120)
            _signal_worker(celery_system, signal.SIGSTOP)
            if store.part_state(job.id, part) == "running":
                break
            _signal_worker(celery_system, signal.SIGCONT)  # it had just finished: catch the next one
            assert time.monotonic() < deadline, "no dedup part was caught running"
        killed = _kill_worker(celery_system)
        final = client.wait(job.id)  # the frozen part cannot have finished: it ran again to get here
        assert final.state == JobState.SUCCEEDED, final.error
        assert celery_system.processes["worker-0"].pid != killed.pid
        reference = pairs(exact.id)
        assert len(reference) >= 40  # the upper-cased copies at least (the near copies where they reach 0.85)
        assert pairs(final.id) == reference
