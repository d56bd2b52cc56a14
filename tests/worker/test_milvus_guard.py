"""A worker rides out a Milvus outage: bounded calls, and a breaker that holds parts while Milvus is away.

The first tests drive the breaker with a scripted probe and clock; the last ones kill a Milvus Lite server
of their own under a real runner (real Redis, real sink, the real TCP probe) and measure what an outage
costs: a short one no attempts beyond the one that found it, a long one a FAILED job within seconds of
the budget instead of minutes of pymilvus retries.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from fakes import FAKE_SPEC, HashEncoder, fake_context
from pymilvus.exceptions import MilvusException

from embedfleet import milvus
from embedfleet.domain import Document, EmbeddingOptions, EmbedParams, IndexParams, JobSpec, JobState
from embedfleet.errors import Retryable, Unavailable
from embedfleet.jobstore import JobStore
from embedfleet.local import LocalCluster
from embedfleet.worker.milvus_guard import BoundedClient, MilvusBreaker, probe_address, server_probe
from embedfleet.worker.runner import PartRunner, PartStatus, RetryPart
from embedfleet.worker.runtime import milvus_access
from embedfleet.worker.settings import WorkerSettings


class Script:
    """A probe that answers from a list, and a clock that the breaker's sleeps advance."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.probes = 0
        self.now = 0.0

    def probe(self) -> bool:
        self.probes += 1
        return self.answers.pop(0) if self.answers else True

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _breaker(script: Script, budget_s: float = 10.0) -> MilvusBreaker:
    return MilvusBreaker(
        "127.0.0.1:1", script.probe, budget_s, probe_interval_s=1.0, clock=lambda: script.now, sleep=script.sleep
    )


def _failed_attempt(breaker: MilvusBreaker, used_milvus: bool = True) -> None:
    with pytest.raises(Retryable), breaker.guard():
        if used_milvus:
            breaker.hold()
        raise Retryable("Milvus upsert failed")


def test_a_closed_breaker_costs_no_probe() -> None:
    script = Script([])
    breaker = _breaker(script)
    with breaker.guard():
        breaker.hold()
    assert (script.probes, breaker.is_open) == (0, False)


def test_a_failure_opens_the_breaker_only_when_the_probe_finds_milvus_away() -> None:
    script = Script([True])
    breaker = _breaker(script)
    _failed_attempt(breaker)  # Milvus answers: the failure was something else (a busy server)
    assert not breaker.is_open
    _failed_attempt(breaker, used_milvus=False)  # a part that never asked for Milvus: not probed
    assert (script.probes, breaker.is_open) == (1, False)
    script.answers = [False]
    _failed_attempt(breaker)
    assert breaker.is_open


def test_milvus_asked_for_from_another_thread_counts_for_the_attempt() -> None:
    """An index part writes from its pipeline thread: a failure after that still opens the breaker."""
    script = Script([False])
    breaker = _breaker(script)
    with pytest.raises(Retryable), breaker.guard():
        writer = threading.Thread(target=breaker.hold)
        writer.start()
        writer.join()
        raise Retryable("Milvus upsert failed")
    assert breaker.is_open


def test_an_open_breaker_holds_parts_until_milvus_answers() -> None:
    script = Script([False])
    breaker = _breaker(script)
    _failed_attempt(breaker)
    script.answers = [False, False, False, True]
    breaker.hold()  # waits, probing once a second, without raising
    assert (script.now, breaker.is_open) == (3.0, False)


def test_past_the_budget_every_part_fails_at_once_until_milvus_answers() -> None:
    script = Script([False])
    breaker = _breaker(script, budget_s=5.0)
    _failed_attempt(breaker)
    script.answers = [False] * 10
    with pytest.raises(Unavailable, match=r"unreachable for 5 s.*resume the job"):
        breaker.hold()
    assert script.now == 5.0
    with pytest.raises(Unavailable):
        breaker.hold()  # no second wait
    assert script.now == 5.0
    script.answers = [True]
    breaker.hold()
    assert not breaker.is_open


def test_a_retry_is_leased_for_what_is_left_of_the_outage_budget_while_the_breaker_holds_parts(
    store: JobStore,
) -> None:
    """A Celery process runs one part at a time: a part scheduled for retry while the breaker is open may
    wait behind a part held for the rest of the budget, and its backoff lease must outlast that wait, or the
    recovery loop queues it a second time ("lost its worker")."""
    script = Script([False])
    breaker = _breaker(script, budget_s=60.0)
    _failed_attempt(breaker)
    script.now = 15.0
    assert breaker.is_open and breaker.hold_left_s == 45.0
    job_id = uuid.uuid4().hex
    store.put_part_input(job_id, 0, [Document(id="d", text="text")])
    spec = JobSpec(
        params=EmbedParams(),
        embedding=EmbeddingOptions(model=FAKE_SPEC.name),
        output_dimensions=FAKE_SPEC.dimensions,
        part_size=1,
    )
    store.create_job(job_id, spec, total=1, parts=1)
    encoder = HashEncoder(fail_times=1, error=Retryable("a transient failure"))
    runner = PartRunner(fake_context(store, lambda: None, encoder, breaker=breaker), max_attempts=3, lease_s=6.0)  # type: ignore[arg-type, return-value]
    with pytest.raises(RetryPart) as retry:
        runner.run_part(job_id, 0)
    held_ms = store.r.pttl(store._lease_key(job_id, 0))
    assert (retry.value.delay_s + 6.0 + 45.0 - 1.0) * 1000 < held_ms <= (retry.value.delay_s + 6.0 + 45.0) * 1000
    script.now = 100.0  # past the budget parts fail at once: no wait left to cover
    assert breaker.hold_left_s == 0.0


def test_a_part_that_succeeds_closes_the_breaker() -> None:
    """Milvus answered the part itself (another thread opened the breaker meanwhile)."""
    script = Script([False])
    breaker = _breaker(script)
    with breaker.guard():
        breaker.hold()
        _failed_attempt(breaker)  # the other thread's attempt
    assert not breaker.is_open


@pytest.mark.parametrize(
    ("uri", "address"),
    [
        ("http://127.0.0.1:19530", ("127.0.0.1", 19530)),
        ("https://milvus.example:8443", ("milvus.example", 8443)),
        ("https://milvus.example", ("milvus.example", 443)),
        ("tcp://10.0.0.5", ("10.0.0.5", 19530)),
        ("./milvus.db", None),
        ("/data/milvus.db", None),
    ],
)
def test_the_probe_address_of_a_uri(uri: str, address: tuple[str, int] | None) -> None:
    assert probe_address(uri) == address


def test_the_probe_asks_the_server_not_only_its_port(lite: LocalCluster) -> None:
    address = probe_address(lite.milvus_uri)
    client = milvus.connect(lite.milvus_uri)
    assert server_probe(address, lambda: None)()  # before the first connect: the port
    assert server_probe(address, lambda: client)()
    assert server_probe(None, lambda: None)()  # an embedded Lite file: nothing that could be away
    _kill(lite)
    assert not server_probe(address, lambda: None)()
    lite.start_milvus()
    # The port is open again at once; the client that saw the outage answers a moment later, and the
    # probe says so only then.
    deadline = time.monotonic() + 30
    while not server_probe(address, lambda: client)():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert client.has_collection("nothing_here") is False


# --- against a Milvus Lite server of the test's own ---------------------------------------------


def _kill(lite: LocalCluster) -> None:
    process = lite.processes["milvus"]
    process.kill()
    process.wait()


def test_a_bounded_call_ends_within_its_timeout_when_milvus_is_gone(lite: LocalCluster) -> None:
    client = BoundedClient(milvus.connect(lite.milvus_uri), timeout_s=2.0).as_client()
    assert client.has_collection("nothing_here") is False  # the bound does not change an answer
    _kill(lite)
    started = time.monotonic()
    with pytest.raises(MilvusException):
        client.has_collection("nothing_here")
    assert time.monotonic() - started < 15  # unbounded, pymilvus retries for about 200 s


def _index_job(store: JobStore, docs: int, parts: int) -> tuple[str, str]:
    job_id, collection = uuid.uuid4().hex, f"guard_{uuid.uuid4().hex[:8]}"
    size = docs // parts
    for p in range(parts):
        store.put_part_input(job_id, p, [Document(id=f"d{p}-{i}", text=f"text {p} {i}") for i in range(size)])
    spec = JobSpec(
        params=IndexParams(collection=collection),
        embedding=EmbeddingOptions(model=FAKE_SPEC.name),
        output_dimensions=FAKE_SPEC.dimensions,
        part_size=size,
    )
    store.create_job(job_id, spec, total=docs, parts=parts)
    return job_id, collection


def _runner(store: JobStore, lite: LocalCluster, budget_s: float) -> PartRunner:
    settings = WorkerSettings(
        milvus_uri=lite.milvus_uri, milvus_call_timeout_seconds=2.0, milvus_outage_budget_seconds=budget_s
    )
    sink, breaker = milvus_access(settings)
    # Rows written 8 at a time: the part's writes come from its pipeline thread, as a real part's do.
    ctx = fake_context(store, sink, HashEncoder(), write_rows=8, breaker=breaker)
    return PartRunner(ctx, max_attempts=5, lease_s=6.0)


def _run_until_settled(runner: PartRunner, job_id: str, part: int) -> tuple[PartStatus, int]:
    """Run a part as a queue would, again after each RetryPart (without its backoff); (outcome, attempts)."""
    attempts = 0
    while True:
        attempts += 1
        try:
            return runner.run_part(job_id, part).status, attempts
        except RetryPart:
            continue


def test_a_short_outage_costs_a_part_one_attempt_however_long_it_lasts(store: JobStore, lite: LocalCluster) -> None:
    job_id, collection = _index_job(store, docs=40, parts=2)
    runner = _runner(store, lite, budget_s=60.0)
    assert runner.run_part(job_id, 0).status == PartStatus.DONE
    _kill(lite)
    # The part runs in a thread; Lite restarts from this one (a child dies with the thread that spawned it).
    settled: list[tuple[PartStatus, int]] = []
    part = threading.Thread(target=lambda: settled.append(_run_until_settled(runner, job_id, 1)))
    part.start()
    time.sleep(6.0)  # longer than three 2 s bounded calls
    lite.start_milvus()
    part.join(60)
    status, attempts = settled[0]
    assert (status, attempts) == (PartStatus.DONE, 2)  # the attempt that found the outage, then the held one
    assert store.get(job_id).state == JobState.SUCCEEDED
    assert not runner.ctx.breaker.is_open
    client = milvus.connect(lite.milvus_uri)
    rows = client.query(collection, filter="", output_fields=["count(*)"])
    assert rows[0]["count(*)"] == 40


def test_a_long_outage_fails_the_job_soon_after_the_budget(store: JobStore, lite: LocalCluster) -> None:
    job_id, _ = _index_job(store, docs=40, parts=2)
    runner = _runner(store, lite, budget_s=3.0)
    runner.ctx.sink()  # connected before the outage, as a worker that has run parts is
    _kill(lite)
    started = time.monotonic()
    outcomes = [_run_until_settled(runner, job_id, p) for p in (0, 1)]
    took = time.monotonic() - started
    assert outcomes == [(PartStatus.FAILED, 5), (PartStatus.FAILED, 5)]
    # One bounded call finds the outage, one part waits out the budget, every later attempt fails at once.
    assert took < 2.0 * 3 + 3.0 + 10, took
    job = store.get(job_id)
    assert job.state == JobState.FAILED
    assert all("unreachable for 3 s" in failure.message for failure in job.failed_parts), job.failed_parts
