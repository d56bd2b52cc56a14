"""The job store: every job's record, counters, part states, payloads and progress events, in Redis.

(A job is split into *parts*; the v1 wire calls them chunks.)

Nothing about a job lives in a process's memory, so any gateway can serve any job and a restarted
gateway (or worker) loses nothing. State changes that must be atomic are Lua scripts:

* ``start_part`` refuses a part of a cancelled job and one already finished, so a redelivered
  part (worker crash, visibility timeout) does not run twice after it completed, and hands back
  the job's spec in the same round trip;
* ``finish_part`` counts a part exactly once, and moves the job to SUCCEEDED or FAILED when the
  last part is in;
* ``cancel`` only moves a job that is not finished yet.

Large payloads (part texts, result vectors) are Redis values referenced by key; queue messages
carry only ``(job_id, part)``.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from embedfleet.domain import Document, JobSnapshot, JobSpec, JobState, PartFailure, Precision
from embedfleet.errors import FailedPrecondition, InvalidArgument, NotFound

# Returns {outcome, spec, total, parts_total}: the job's fixed facts ride along with the decision, so a
# worker starting a part needs no second read of the job record.
_START_PART = """
local job = redis.call('HMGET', KEYS[1], 'state', 'spec', 'total', 'parts_total')
local state = job[1]
if not state then return {'missing'} end
if state == 'CANCELLED' then return {'cancelled'} end
local ps = redis.call('HGET', KEYS[2], ARGV[1])
if ps == 'done' or ps == 'failed' then return {'finished'} end
redis.call('HSET', KEYS[2], ARGV[1], 'running')
if state == 'QUEUED' then
  redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'started_at', ARGV[2])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100', '*', 'e', 'running')
end
local outcome = 'first'
if ps == 'running' then outcome = 'retry' end
return {outcome, job[2], job[3], job[4]}
"""

# A part is counted once; the job record is never recreated once it is gone (expired or deleted),
# and every key of a live job gets its TTL refreshed, so a long job's records do not expire under it.
_FINISH_PART = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('DEL', KEYS[6])
local ps = redis.call('HGET', KEYS[2], ARGV[1])
if ps == 'done' or ps == 'failed' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'done', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'truncated', ARGV[5])
local finished = redis.call('HINCRBY', KEYS[1], 'parts_finished', 1)
if ARGV[2] == 'failed' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[6]) end
local state = redis.call('HGET', KEYS[1], 'state')
local total = tonumber(redis.call('HGET', KEYS[1], 'parts_total'))
if finished >= total and (state == 'RUNNING' or state == 'QUEUED') then
  local nfailed = redis.call('HLEN', KEYS[3])
  if nfailed > 0 then
    local units = redis.call('HGET', KEYS[1], 'failed')
    redis.call('HSET', KEYS[1], 'state', 'FAILED', 'finished_at', ARGV[7], 'error',
      nfailed .. ' of ' .. total .. ' chunks failed (' .. units .. ' ' .. ARGV[10] ..
      ' not processed); see failed_chunks')
  else
    redis.call('HSET', KEYS[1], 'state', 'SUCCEEDED', 'finished_at', ARGV[7])
  end
  redis.call('SREM', KEYS[5], ARGV[8])
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '100', '*', 'e', 'part')
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[9]) end
return 1
"""

_MARK_DISPATCHED = """
for i = 1, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == 'pending' then redis.call('HSET', KEYS[1], ARGV[i], 'queued') end
end
return 1
"""

# Parts not done go back to "pending" (failed ones, and parts a cancel stopped or left running: a part
# still running finishes and is counted once, by finish_part's rule); done parts and counts stay.
_RESUME = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state ~= 'FAILED' and state ~= 'CANCELLED' then return {state} end
local again = {'resumed'}
local done = 0
local states = redis.call('HGETALL', KEYS[2])
for i = 1, #states, 2 do
  if states[i + 1] == 'done' then done = done + 1 else
    redis.call('HSET', KEYS[2], states[i], 'pending')
    again[#again + 1] = states[i]
  end
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'failed', 0, 'parts_finished', done)
redis.call('HDEL', KEYS[1], 'finished_at', 'error')
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '100', '*', 'e', 'resumed')
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return again
"""

_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
if state == 'QUEUED' or state == 'RUNNING' then
  redis.call('HSET', KEYS[1], 'state', 'CANCELLED', 'finished_at', ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100', '*', 'e', 'cancelled')
  redis.call('SREM', KEYS[3], ARGV[2])
  return 'CANCELLED'
end
return state
"""


class StartOutcome(StrEnum):
    """What a worker should do with a part it received."""

    FIRST = "first"  # run it
    RETRY = "retry"  # run it: a previous attempt started but never finished (crash, redelivery)
    FINISHED = "finished"  # skip: already counted (a duplicate delivery)
    CANCELLED = "cancelled"  # skip: the job was cancelled
    MISSING = "missing"  # skip: the job expired or never existed

    @property
    def runs(self) -> bool:
        return self in (StartOutcome.FIRST, StartOutcome.RETRY)


@dataclass(frozen=True)
class PartStart:
    """The answer to ``start_part``: the decision and, when the part is to run, the job's fixed facts."""

    outcome: StartOutcome
    spec: JobSpec | None = None
    total: int = 0
    parts_total: int = 0


@dataclass(frozen=True)
class PartVectors:
    """An embed job part's output as stored: ids in corpus order and a packed vector block."""

    ids: list[str]
    dimensions: int
    precision: Precision
    data: bytes


class JobStore:
    """Typed access to the job keys; one instance per process, safe to share across threads."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        # redis-py annotates replies for both decode modes and the asyncio client (bytes | str | Awaitable);
        # this store always runs with decode_responses=False, so replies are bytes.
        self.r: Any = client
        self.prefix = prefix
        self.ttl = ttl_seconds
        self._start = client.register_script(_START_PART)
        self._finish = client.register_script(_FINISH_PART)
        self._cancel = client.register_script(_CANCEL)
        self._resume = client.register_script(_RESUME)
        self._mark_dispatched = client.register_script(_MARK_DISPATCHED)

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_seconds: int) -> JobStore:
        return cls(redis.Redis.from_url(url, health_check_interval=30), prefix, ttl_seconds)

    # -- keys ---------------------------------------------------------------------------------
    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _parts_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:parts"

    def _failures_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:failures"

    def _metrics_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:metrics"

    def _outputs_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:outputs"

    def events_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:events"

    def _input_key(self, job_id: str, part: int) -> str:
        return f"{self.prefix}job:{job_id}:in:{part}"

    def _output_key(self, job_id: str, part: int) -> str:
        return f"{self.prefix}job:{job_id}:out:{part}"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}jobs"

    @property
    def _active_key(self) -> str:
        return f"{self.prefix}jobs:active"

    # -- submission ---------------------------------------------------------------------------
    def put_part_input(self, job_id: str, part: int, documents: Sequence[Document]) -> None:
        """Store a part's documents before the job exists, so a job is only created complete."""
        payload = json.dumps([[d.id, d.text, d.metadata_json] for d in documents], ensure_ascii=False)
        self.r.set(self._input_key(job_id, part), payload.encode(), ex=self.ttl)

    def get_part_input(self, job_id: str, part: int) -> list[Document]:
        raw = self.r.get(self._input_key(job_id, part))
        if raw is None:
            raise NotFound(f"job {job_id} part {part}: input expired or was never stored")
        return [Document(id=i, text=t, metadata_json=m) for i, t, m in json.loads(raw)]

    def discard_inputs(self, job_id: str, parts: int) -> None:
        """Drop the staged inputs of a submission that was rejected part-way."""
        keys = [self._input_key(job_id, c) for c in range(parts)]
        for start in range(0, len(keys), 1000):
            self.r.delete(*keys[start : start + 1000])

    def create_job(self, job_id: str, spec: JobSpec, total: int, parts: int) -> JobSnapshot:
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.job_key(job_id),
            mapping={
                "spec": spec.model_dump_json(),
                "state": JobState.QUEUED.value,
                "total": total,
                "done": 0,
                "failed": 0,
                "truncated": 0,
                "parts_total": parts,
                "parts_finished": 0,
                "created_at": repr(now),
            },
        )
        # Part states start "pending" (not yet handed to the queue); see pending_parts().
        for start in range(0, parts, 5000):
            pipe.hset(
                self._parts_key(job_id),
                mapping={str(c): "pending" for c in range(start, min(parts, start + 5000))},
            )
        pipe.xadd(self.events_key(job_id), {"e": "created"}, maxlen=100, approximate=True)
        pipe.zadd(self._index_key, {job_id: now})
        pipe.sadd(self._active_key, job_id)
        for key in (self.job_key(job_id), self._parts_key(job_id), self.events_key(job_id)):
            pipe.expire(key, self.ttl)
        pipe.execute()
        return self.get(job_id)

    def mark_dispatched(self, job_id: str, parts: Sequence[int]) -> None:
        """Record that parts are in the queue; a part a worker already started keeps its state."""
        for start in range(0, len(parts), 5000):
            self._mark_dispatched(keys=[self._parts_key(job_id)], args=[str(c) for c in parts[start : start + 5000]])

    def pending_parts(self, job_id: str) -> list[int]:
        """Parts of an active job never handed to the queue (the gateway died mid-dispatch)."""
        states = self.r.hgetall(self._parts_key(job_id))
        return sorted(int(k) for k, v in states.items() if v == b"pending")

    def active_jobs(self) -> list[str]:
        return sorted(m.decode() for m in self.r.smembers(self._active_key))

    # -- reading ------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobSnapshot:
        if not job_id or len(job_id) > 64:
            raise InvalidArgument("job_id must be 1 to 64 characters")
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.job_key(job_id))
        pipe.hgetall(self._failures_key(job_id))
        pipe.hgetall(self._metrics_key(job_id))
        pipe.hgetall(self._outputs_key(job_id))
        raw, failures, metrics, outputs = pipe.execute()
        if not raw:
            raise NotFound(f"job {job_id!r} does not exist (or expired)")
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        snap = JobSnapshot(
            id=job_id,
            spec=JobSpec.model_validate_json(fields["spec"]),
            state=JobState(fields["state"]),
            total=int(fields["total"]),
            done=int(fields["done"]),
            failed=int(fields["failed"]),
            truncated=int(fields["truncated"]),
            parts_total=int(fields["parts_total"]),
            parts_finished=int(fields["parts_finished"]),
            created_at=float(fields["created_at"]),
            started_at=float(fields["started_at"]) if "started_at" in fields else None,
            finished_at=float(fields["finished_at"]) if "finished_at" in fields else None,
            error=fields.get("error", ""),
            metrics={k.decode(): float(v) for k, v in metrics.items()},
            outputs={k.decode(): v.decode() for k, v in outputs.items()},
        )
        for idx_raw, message in sorted(failures.items(), key=lambda kv: int(kv[0])):
            idx = int(idx_raw)
            first, count = snap.part_range(idx)
            snap.failed_parts.append(PartFailure(part=idx, first_unit=first, units=count, message=message.decode()))
        return snap

    def list(self, limit: int, before: float | None, state: JobState | None) -> tuple[list[JobSnapshot], float | None]:
        """Newest first. Returns the page and the created_at to continue from (None at the end)."""
        max_score = f"({before!r}" if before is not None else "+inf"
        jobs: list[JobSnapshot] = []
        cursor = max_score
        while len(jobs) < limit:
            ids = self.r.zrevrangebyscore(self._index_key, cursor, "-inf", start=0, num=limit * 2, withscores=True)
            if not ids:
                return jobs, None
            for raw_id, score in ids:
                cursor = f"({score!r}"
                try:
                    snap = self.get(raw_id.decode())
                except NotFound:
                    self.r.zrem(self._index_key, raw_id)  # expired record: tidy the index
                    continue
                if state is None or snap.state == state:
                    jobs.append(snap)
                    if len(jobs) == limit:
                        return jobs, score
        return jobs, None

    def part_state(self, job_id: str, part: int) -> str | None:
        raw = self.r.hget(self._parts_key(job_id), str(part))
        return raw.decode() if raw is not None else None

    def wait_for_event(self, job_id: str, last_id: str, timeout_s: float) -> str:
        """Block until the job's event stream moves past ``last_id`` (or the timeout); return the new id."""
        resp = self.r.xread({self.events_key(job_id): last_id}, count=100, block=int(timeout_s * 1000))
        if not resp:
            return last_id
        return resp[0][1][-1][0].decode()

    def latest_event_id(self, job_id: str) -> str:
        entries = self.r.xrevrange(self.events_key(job_id), count=1)
        return entries[0][0].decode() if entries else "0-0"

    def watch(self, job_id: str, poll_s: float = 1.0) -> Iterator[JobSnapshot]:
        """Yield the job now and after every change, until it is finished."""
        last_event = "0-0"
        last_seen: tuple[object, ...] | None = None
        while True:
            snap = self.get(job_id)
            key = (snap.state, snap.done, snap.failed, snap.parts_finished)
            if key != last_seen:
                last_seen = key
                yield snap
            if snap.state.terminal:
                return
            last_event = self.wait_for_event(job_id, last_event, poll_s)

    # -- worker side --------------------------------------------------------------------------
    def start_part(self, job_id: str, part: int) -> PartStart:
        """One round trip: whether to run the part, and the job's spec and sizes if so."""
        result = self._start(
            keys=[self.job_key(job_id), self._parts_key(job_id), self.events_key(job_id)],
            args=[str(part), repr(time.time())],
        )
        outcome = StartOutcome(result[0].decode())
        if not outcome.runs:
            return PartStart(outcome)
        return PartStart(
            outcome,
            spec=JobSpec.model_validate_json(result[1]),
            total=int(result[2]),
            parts_total=int(result[3]),
        )

    def finish_part(
        self, job_id: str, part: int, *, done: int, failed: int, truncated: int, error: str = "", unit: str = ""
    ) -> bool:
        """Count a part's outcome once and drop its staged input; False if it had already been counted
        or the job no longer exists. ``unit`` names what ``failed`` counts, for the job's error text."""
        counted = self._finish(
            keys=[
                self.job_key(job_id),
                self._parts_key(job_id),
                self._failures_key(job_id),
                self.events_key(job_id),
                self._active_key,
                self._input_key(job_id, part),
            ],
            args=[
                str(part),
                "failed" if error else "done",
                done,
                failed,
                truncated,
                error,
                repr(time.time()),
                job_id,
                self.ttl,
                unit or "documents",
            ],
        )
        return int(counted) == 1

    def fail_part(self, job_id: str, part: int, message: str) -> bool:
        """Record a part as failed from outside its run (its workers kept dying, or none could start):
        the units it covered count as failed, in the job's own unit."""
        snap = self.get(job_id)
        units = snap.part_range(part)[1]
        return self.finish_part(
            job_id, part, done=0, failed=units, truncated=0, error=message, unit=snap.spec.unit.value
        )

    def report(
        self,
        job_id: str,
        *,
        done: int | None = None,
        metrics: dict[str, float] | None = None,
        outputs: dict[str, str] | None = None,
    ) -> None:
        """Progress of a job whose one task runs long (distillation, evaluation): steps done so far,
        figures such as the loss, and what it produced. Watchers are woken."""
        pipe = self.r.pipeline(transaction=True)
        if done is not None:
            pipe.hset(self.job_key(job_id), "done", done)
        for key, mapping in ((self._metrics_key(job_id), metrics), (self._outputs_key(job_id), outputs)):
            if mapping:
                pipe.hset(key, mapping=mapping)
                pipe.expire(key, self.ttl)
        pipe.xadd(self.events_key(job_id), {"e": "progress"}, maxlen=100, approximate=True)
        pipe.execute()

    def put_part_output(self, job_id: str, part: int, result: PartVectors) -> None:
        key = self._output_key(job_id, part)
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "ids": json.dumps(result.ids, ensure_ascii=False),
                "dimensions": result.dimensions,
                "precision": result.precision.value,
                "data": result.data,
            },
        )
        pipe.expire(key, self.ttl)
        pipe.execute()

    def get_part_output(self, job_id: str, part: int) -> PartVectors:
        raw = self.r.hgetall(self._output_key(job_id, part))
        if not raw:
            raise NotFound(f"job {job_id} part {part}: results expired")
        return PartVectors(
            ids=json.loads(raw[b"ids"]),
            dimensions=int(raw[b"dimensions"]),
            precision=Precision(raw[b"precision"].decode()),
            data=raw[b"data"],
        )

    # -- control ------------------------------------------------------------------------------
    def cancel(self, job_id: str) -> JobSnapshot:
        self.get(job_id)  # NotFound with a clear message before touching anything
        self._cancel(
            keys=[self.job_key(job_id), self.events_key(job_id), self._active_key],
            args=[repr(time.time()), job_id],
        )
        return self.get(job_id)

    def resume(self, job_id: str) -> builtins.list[int]:
        """Put a FAILED or CANCELLED job's parts that are not done back to pending; returns them."""
        keys = [self.job_key(job_id), self._parts_key(job_id), self._failures_key(job_id), self.events_key(job_id)]
        reply = self._resume(keys=[*keys, self._active_key], args=[job_id, self.ttl])
        outcome = reply[0].decode()
        if outcome == "missing":
            raise NotFound(f"job {job_id} does not exist (or has expired)")
        if outcome != "resumed":
            raise FailedPrecondition(f"job {job_id} is {outcome}; only FAILED or CANCELLED jobs can be resumed")
        return sorted(int(p) for p in reply[1:])

    # -- interactive requests -----------------------------------------------------------------
    def _request_in(self, request_id: str) -> str:
        return f"{self.prefix}req:{request_id}:in"

    def _request_out(self, request_id: str) -> str:
        return f"{self.prefix}req:{request_id}:out"

    def put_request(self, request_id: str, payload: dict[str, object], ttl_s: int) -> None:
        self.r.set(self._request_in(request_id), json.dumps(payload, ensure_ascii=False).encode(), ex=ttl_s)

    def take_request(self, request_id: str) -> dict[str, object] | None:
        """The request's input, or None if the caller already gave up and it expired."""
        raw = self.r.getdel(self._request_in(request_id))
        return json.loads(raw) if raw is not None else None

    def reply(self, request_id: str, header: dict[str, object], data: bytes, ttl_s: int) -> None:
        key = self._request_out(request_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(key, json.dumps(header).encode() + b"\n" + data)
        pipe.expire(key, ttl_s)
        pipe.execute()

    def wait_reply(self, request_id: str, timeout_s: float) -> tuple[dict[str, object], bytes] | None:
        """Wait for a worker's answer. Blocks in short slices: the Redis client's socket timeout
        (5 s by default) must stay longer than any single blocking command."""
        deadline = time.monotonic() + timeout_s
        popped = None
        while popped is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.r.delete(self._request_in(request_id))
                return None
            popped = self.r.blpop([self._request_out(request_id)], timeout=max(0.01, min(2.0, remaining)))
        header, _, data = popped[1].partition(b"\n")
        return json.loads(header), data

    # -- workers ------------------------------------------------------------------------------
    def publish_worker(self, worker_id: str, models: dict[str, str], ttl_s: float) -> None:
        """A worker's heartbeat: the models it hosts (name -> version), gone when it stops beating."""
        self.r.set(f"{self.prefix}workers:{worker_id}", json.dumps({"models": models}), px=int(ttl_s * 1000))

    def live_workers(self) -> builtins.list[dict[str, dict[str, str]]]:
        keys = list(self.r.scan_iter(match=f"{self.prefix}workers:*", count=500))
        values = self.r.mget(keys) if keys else []
        return [json.loads(v) for v in values if v is not None]

    # -- the Ray backend's durable queue -------------------------------------------------------
    # Ray has no broker, so the Ray dispatchers keep their queue here, under this store's prefix:
    # ``ray:pending`` (items no dispatcher holds), ``ray:inflight:<owner>`` (items one dispatcher
    # took and has not finished) and ``ray:lease:<owner>`` (that dispatcher is alive while it exists).
    # Items are opaque bytes to the store; ``embedfleet.gateway.queue.ray.queue`` gives them meaning.

    # Move every item of an in-flight list to the head of the pending list, unless its owner's lease
    # is alive. Atomic, so two dispatchers reclaiming at once cannot both take an item.
    _QUEUE_RECLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local n = 0
while redis.call('LMOVE', KEYS[2], KEYS[3], 'RIGHT', 'LEFT') do n = n + 1 end
return n
"""

    @property
    def _queue_pending_key(self) -> str:
        return f"{self.prefix}ray:pending"

    def _queue_inflight_key(self, owner: str) -> str:
        return f"{self.prefix}ray:inflight:{owner}"

    def _queue_lease_key(self, owner: str) -> str:
        return f"{self.prefix}ray:lease:{owner}"

    def queue_push(self, items: Sequence[bytes]) -> None:
        """Append items to the pending list; durable once this returns."""
        pipe = self.r.pipeline(transaction=False)
        for start in range(0, len(items), 1000):
            pipe.rpush(self._queue_pending_key, *items[start : start + 1000])
        pipe.execute()

    def queue_take(self, owner: str) -> bytes | None:
        """Move the oldest pending item to ``owner``'s in-flight list (None when nothing is pending)."""
        return self.r.lmove(self._queue_pending_key, self._queue_inflight_key(owner), "LEFT", "RIGHT")

    def queue_done(self, owner: str, item: bytes) -> None:
        """The item is over (its outcome is recorded, or it was dropped): forget it."""
        self.r.lrem(self._queue_inflight_key(owner), 1, item)

    def refresh_lease(self, owner: str, ttl_s: float) -> None:
        """``owner`` is alive for ``ttl_s`` more seconds; until then nobody reclaims its items."""
        self.r.set(self._queue_lease_key(owner), b"1", px=int(ttl_s * 1000))

    def reclaim_orphans(self, self_owner: str) -> int:
        """Put back on the pending list the items of every other owner whose lease has expired."""
        prefix = self._queue_inflight_key("")
        moved = 0
        for raw_key in self.r.scan_iter(match=f"{prefix}*", count=500):
            owner = raw_key.decode().removeprefix(prefix)
            if owner != self_owner:
                moved += max(self._reclaim(owner), 0)
        return moved

    def queue_return_all(self, owner: str) -> int:
        """``owner`` stops: end its lease and put its unfinished items back on the pending list."""
        self.r.delete(self._queue_lease_key(owner))
        return max(self._reclaim(owner), 0)

    def _reclaim(self, owner: str) -> int:
        """Items moved, or -1 when ``owner``'s lease is alive (the script refuses to touch its list)."""
        keys = [self._queue_lease_key(owner), self._queue_inflight_key(owner), self._queue_pending_key]
        return int(self.r.register_script(self._QUEUE_RECLAIM)(keys=keys))

    def queue_length(self) -> int:
        """Items waiting in the pending list."""
        return int(self.r.llen(self._queue_pending_key))

    def job_is_active(self, job_id: str) -> bool:
        """The job is QUEUED or RUNNING (not cancelled, finished or expired): its parts should run."""
        state = self.r.hget(self.job_key(job_id), "state")
        return state in (JobState.QUEUED.value.encode(), JobState.RUNNING.value.encode())
