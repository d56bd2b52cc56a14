"""The job store: every job's record, counters, part states, payloads and progress events, in Redis.

(A job is split into *parts*; the v1 wire calls them chunks.)

Nothing about a job lives in a process's memory, so any gateway can serve any job and a restarted
gateway (or worker) loses nothing. State changes that must be atomic are Lua scripts:

* ``start_part`` refuses a part of a cancelled job and one already finished, so a redelivered
  part (worker crash, visibility timeout) does not run twice after it completed, and hands back
  the job's spec in the same round trip. A part that runs is *leased* to its runner, which refreshes
  the lease while it runs: a second delivery of a part whose runner is alive is refused (``BUSY``),
  so it never runs twice at once; and every start is counted, so a part whose worker dies every time
  can be failed after ``max_chunk_attempts`` even though the queue redelivers it without counting;
* ``reclaim_parts`` hands back, to one gateway, the parts whose runner's lease lapsed (the worker
  was killed): they are queued again within seconds, however long the broker's visibility timeout;
* ``finish_part`` counts a part exactly once, and moves the job to SUCCEEDED or FAILED when the
  last part is in;
* ``cancel`` only moves a job that is not finished yet, and drops its staged inputs.

No script recreates a job whose keys are gone (expired or deleted), and the keys of a live job have
their TTL refreshed (``finish_part``, ``touch``), so a record never expires under a running job.

Large payloads (part texts, result vectors) are Redis values referenced by key; queue messages
carry only ``(job_id, part)``.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypedDict

import redis

from embedfleet.domain import Document, DocumentFailure, JobSnapshot, JobSpec, JobState, PartFailure, Precision
from embedfleet.errors import FailedPrecondition, InvalidArgument, NotFound
from embedfleet.redis_errors import count_errors
from embedfleet.tasks import DEFAULT_PART_LEASE_S

log = logging.getLogger(__name__)


# Sets a TTL on every key of a live job whose name does not depend on a part, and on the staged
# input and output of each of its parts: a long job's records never expire under it.
# KEYS[1] .. KEYS[nkeys] are the job's own keys, KEYS[1] the job record.
_TOUCH_JOB_FUNCTION = """
local function touch_job(nkeys, ttl, job_prefix)
  for i = 1, nkeys do redis.call('EXPIRE', KEYS[i], ttl) end
  local parts = tonumber(redis.call('HGET', KEYS[1], 'parts_total') or '0')
  for p = 0, parts - 1 do
    redis.call('EXPIRE', job_prefix .. 'in:' .. p, ttl)
    redis.call('EXPIRE', job_prefix .. 'out:' .. p, ttl)
  end
end
"""

# A lease held by this value prefix means "no one runs the part: a retry of it is scheduled"; a
# delivery of the part may take it over (it is the retry, or a duplicate that may run in its place).
BACKOFF_PREFIX = "backoff:"

# Returns {outcome, spec, total, parts_total, attempts} ({'busy', pttl} while another runner holds
# the part's lease): the job's fixed facts ride along with the decision, so a worker starting a part
# needs no second read of the job record. Every start that runs takes the part's lease and counts
# an attempt, so deaths of the worker are counted even where the queue redelivers without counting.
# KEYS: job, parts, events, lease, attempts, running. ARGV: part, now, owner, lease_ms, ttl.
_START_PART = f"""
local job = redis.call('HMGET', KEYS[1], 'state', 'spec', 'total', 'parts_total')
local state = job[1]
if not state or redis.call('EXISTS', KEYS[2]) == 0 then return {{'missing'}} end
if state == 'CANCELLED' then return {{'cancelled'}} end
local ps = redis.call('HGET', KEYS[2], ARGV[1])
if ps == 'done' or ps == 'failed' then return {{'finished'}} end
local holder = redis.call('GET', KEYS[4])
if holder and string.sub(holder, 1, {len(BACKOFF_PREFIX)}) ~= '{BACKOFF_PREFIX}' then
  return {{'busy', redis.call('PTTL', KEYS[4])}}
end
redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
redis.call('SADD', KEYS[6], ARGV[1])
local attempts = redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
for i = 5, 6 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
redis.call('HSET', KEYS[2], ARGV[1], 'running')
if state == 'QUEUED' then
  redis.call('HSET', KEYS[1], 'state', 'RUNNING', 'started_at', ARGV[2])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', '100', '*', 'e', 'running')
end
local outcome = 'first'
if ps == 'running' then outcome = 'retry' end
return {{outcome, job[2], job[3], job[4], attempts}}
"""

# Extends the lease while its owner runs the part (0 once it lost it), or ends it: ARGV[2] = 0
# releases it, ARGV[2] > 0 turns it into a backoff lease for that many milliseconds.
# KEYS: lease, running. ARGV: owner, mode ('refresh' | 'end'), ms, part.
_LEASE = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'refresh' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], '{BACKOFF_PREFIX}' .. ARGV[1], 'PX', ARGV[3])
else
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[4])
end
return 1
"""

# A task one of a job's parts does for all of them: renew (ARGV[2] > 0 ms) or release (0) the claim, only
# for the token that holds it. KEYS: the task's key. ARGV: token, milliseconds.
_TASK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[2]) > 0 then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('DEL', KEYS[1])
"""

# The parts of an active job that are "running" although nobody holds their lease (its worker died,
# or a scheduled retry never came) go back to "pending", to be queued again. Atomic: of two gateways
# reclaiming at once, one gets each part. KEYS: job, parts, running. ARGV: the lease key prefix.
_RECLAIM_PARTS = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'QUEUED' and state ~= 'RUNNING' then return {} end
local reclaimed = {}
for _, p in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('EXISTS', ARGV[1] .. p) == 0 then
    redis.call('SREM', KEYS[3], p)
    if redis.call('HGET', KEYS[2], p) == 'running' then
      redis.call('HSET', KEYS[2], p, 'pending')
      table.insert(reclaimed, p)
    end
  end
end
return reclaimed
"""

# A part is counted once; the job record is never recreated once it is gone (expired or deleted),
# and every key of a live job gets its TTL refreshed, so a long job's records do not expire under it.
# KEYS: job, parts, failures, events, metrics, outputs, attempts, running, document failures, lease, active,
# input. ARGV[13..] are (id, reason) pairs of documents that failed on their own; at most ARGV[12] are kept.
_FINISH_PART = (
    _TOUCH_JOB_FUNCTION
    + """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
redis.call('DEL', KEYS[12], KEYS[10])
redis.call('SREM', KEYS[8], ARGV[1])
local ps = redis.call('HGET', KEYS[2], ARGV[1])
if ps == 'done' or ps == 'failed' then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'done', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'truncated', ARGV[5])
local finished = redis.call('HINCRBY', KEYS[1], 'parts_finished', 1)
if ARGV[2] == 'failed' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[6]) end
if #ARGV > 12 then
  redis.call('HINCRBY', KEYS[1], 'documents_failed', (#ARGV - 12) / 2)
  for i = 13, #ARGV, 2 do
    if redis.call('HLEN', KEYS[9]) < tonumber(ARGV[12]) then redis.call('HSET', KEYS[9], ARGV[i], ARGV[i + 1]) end
  end
end
local state = redis.call('HGET', KEYS[1], 'state')
local total = tonumber(redis.call('HGET', KEYS[1], 'parts_total'))
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '100', '*', 'e', 'part')
if finished >= total and (state == 'RUNNING' or state == 'QUEUED') then
  local nfailed = redis.call('HLEN', KEYS[3])
  local ndocs = tonumber(redis.call('HGET', KEYS[1], 'documents_failed') or '0')
  if nfailed > 0 or ndocs > 0 then
    local parts = {}
    if nfailed > 0 then
      local units = redis.call('HGET', KEYS[1], 'failed') - ndocs
      table.insert(parts, nfailed .. ' of ' .. total .. ' chunks failed (' .. units .. ' ' .. ARGV[10] ..
        ' not processed); see failed_chunks')
    end
    if ndocs > 0 then
      table.insert(parts, ndocs .. ' documents failed on their own; see failed_documents')
    end
    redis.call('HSET', KEYS[1], 'state', 'FAILED', 'finished_at', ARGV[7], 'error', table.concat(parts, '; '))
  else
    redis.call('HSET', KEYS[1], 'state', 'SUCCEEDED', 'finished_at', ARGV[7])
  end
  redis.call('SREM', KEYS[11], ARGV[8])
  touch_job(9, ARGV[9], ARGV[11])  -- the results are kept one TTL from the job's end
else
  for i = 1, 9 do redis.call('EXPIRE', KEYS[i], ARGV[9]) end
end
return 1
"""
)

# Progress of a part that runs long; never recreates a gone job. ARGV: done ('' = unchanged),
# metrics and outputs as JSON objects of strings, the TTL. KEYS: job, metrics, outputs, events.
_REPORT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'done', ARGV[1]) end
for i = 2, 3 do
  local mapping = cjson.decode(ARGV[i])
  for k, v in pairs(mapping) do redis.call('HSET', KEYS[i], k, v) end
  if next(mapping) ~= nil then redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '100', '*', 'e', 'progress')
return 1
"""

_TOUCH_JOB = (
    _TOUCH_JOB_FUNCTION
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
touch_job(#KEYS, ARGV[1], ARGV[2])
return 1
"""
)

# Claim a job's next parts for dispatch, at most ARGV[1] of them queued or running at once (0: all):
# returns {first, end}, empty when end == first. Parts are claimed in order, so the job's
# ``dispatch_cursor`` is the next part to claim; a job without one (older) was dispatched whole.
_CLAIM_PARTS = """
local job = redis.call('HMGET', KEYS[1], 'state', 'parts_total', 'parts_finished', 'dispatch_cursor')
if job[1] ~= 'QUEUED' and job[1] ~= 'RUNNING' then return {0, 0} end
local cursor = tonumber(job[4] or job[2])
local n = tonumber(job[2]) - cursor
local window = tonumber(ARGV[1])
if window > 0 then n = math.min(n, window - (cursor - tonumber(job[3]))) end
if n <= 0 then return {cursor, cursor} end
redis.call('HSET', KEYS[1], 'dispatch_cursor', cursor + n)
return {cursor, cursor + n}
"""

# A job lists at most this many documents that failed on their own (``Job.failed_documents``); the
# job's ``failed`` counter counts them all.
MAX_DOCUMENT_FAILURES_KEPT = 1000

_MARK_DISPATCHED = """
for i = 1, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == 'pending' then redis.call('HSET', KEYS[1], ARGV[i], 'queued') end
end
return 1
"""

# KEYS: job, parts, failures, events, active, attempts. Parts not done go back to "pending" (failed ones,
# and parts a cancel stopped or left running: a part
# still running finishes and is counted once, by finish_part's rule); done parts and counts stay.
_RESUME = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing'} end
if state ~= 'FAILED' and state ~= 'CANCELLED' then return {state} end
local again = {'resumed'}
local done = 0
local states = redis.call('HGETALL', KEYS[2])
-- Every part done (it finished after the cancel, or only documents of done parts failed): there is nothing
-- to run, and a QUEUED job without a pending part would never finish.
local open = false
for i = 2, #states, 2 do if states[i] ~= 'done' then open = true end end
if not open then return {'complete'} end
for i = 1, #states, 2 do
  if states[i + 1] == 'done' then done = done + 1 else
    redis.call('HSET', KEYS[2], states[i], 'pending')
    redis.call('HDEL', KEYS[6], states[i])  -- its attempts start again
    again[#again + 1] = states[i]
  end
end
redis.call('DEL', KEYS[3])
-- Documents that failed on their own in done parts stay failed (and listed); the rest is undone.
local kept = redis.call('HGET', KEYS[1], 'documents_failed') or 0
redis.call('HSET', KEYS[1], 'state', 'QUEUED', 'failed', kept, 'parts_finished', done)
redis.call('HDEL', KEYS[1], 'finished_at', 'error')
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', '100', '*', 'e', 'resumed')
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return again
"""

# A cancelled job's staged inputs are deleted at once: no part will read them (a running part has).
_CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return nil end
if state == 'QUEUED' or state == 'RUNNING' then
  redis.call('HSET', KEYS[1], 'state', 'CANCELLED', 'finished_at', ARGV[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '100', '*', 'e', 'cancelled')
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('SREM', KEYS[3], ARGV[2])
  local parts = tonumber(redis.call('HGET', KEYS[1], 'parts_total') or '0')
  for p = 0, parts - 1 do redis.call('DEL', ARGV[3] .. 'in:' .. p) end
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
    BUSY = "busy"  # not now: another runner holds the part's lease (a second delivery while it runs)

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
    # Starts of this part so far, this one included (counted in the store, whatever the queue did).
    attempts: int = 0
    # BUSY: milliseconds the holder's lease has left (when to try again at the earliest).
    busy_for_ms: int = 0


class WorkerBeat(TypedDict, total=False):
    """A worker's last heartbeat (older workers sent only ``models``)."""

    worker_id: str
    models: dict[str, str]
    device: str
    metrics: str


@dataclass(frozen=True)
class Activity:
    """What the active jobs hold now: jobs by state, and their parts by state (pending: not yet
    handed to the queue; queued; running; done; failed). The states that mean work waits or runs
    are always present, so a gauge reads 0 rather than vanishing."""

    jobs: dict[str, int]
    parts: dict[str, int]

    @property
    def parts_waiting(self) -> int:
        """Parts no worker has started: the queue depth."""
        return self.parts["pending"] + self.parts["queued"]


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
        self._lease = client.register_script(_LEASE)
        self._reclaim_parts = client.register_script(_RECLAIM_PARTS)
        self._report = client.register_script(_REPORT)
        self._touch = client.register_script(_TOUCH_JOB)
        self._claim = client.register_script(_CLAIM_PARTS)
        self._task = client.register_script(_TASK)

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_seconds: int) -> JobStore:
        return cls(count_errors(redis.Redis.from_url(url, health_check_interval=30)), prefix, ttl_seconds)

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

    def _attempts_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:attempts"

    def _running_key(self, job_id: str) -> str:
        """The parts of a job that took a lease (the recovery loop checks only these)."""
        return f"{self.prefix}job:{job_id}:running"

    def _lease_key(self, job_id: str, part: int | str) -> str:
        return f"{self.prefix}job:{job_id}:lease:{part}"

    def _task_key(self, job_id: str, task: str) -> str:
        return f"{self.prefix}job:{job_id}:task:{task}"

    def _own_keys(self, job_id: str) -> list[str]:
        """Every key of a job whose name does not depend on a part, the job record first."""
        return [
            self.job_key(job_id),
            self._parts_key(job_id),
            self._failures_key(job_id),
            self.events_key(job_id),
            self._metrics_key(job_id),
            self._outputs_key(job_id),
            self._attempts_key(job_id),
            self._running_key(job_id),
            self._document_failures_key(job_id),
        ]

    def _document_failures_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}:docfailures"

    def _input_key(self, job_id: str, part: int) -> str:
        return f"{self.prefix}job:{job_id}:in:{part}"

    def _output_key(self, job_id: str, part: int) -> str:
        return f"{self.prefix}job:{job_id}:out:{part}"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}jobs"

    def _tenant_index_key(self, tenant: str) -> str:
        """One tenant's jobs by creation time (what ``list(tenant=...)`` pages through)."""
        return f"{self.prefix}jobs:tenant:{tenant}"

    @property
    def _active_key(self) -> str:
        return f"{self.prefix}jobs:active"

    @property
    def _staging_key(self) -> str:
        """Submissions being streamed in: job id -> when its gateway must have refreshed it by."""
        return f"{self.prefix}jobs:staging"

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
        self.r.zrem(self._staging_key, job_id)

    def mark_staging(self, job_id: str, lease_s: float) -> None:
        """The submission of ``job_id`` is still streaming; unless this is called again within
        ``lease_s`` its staged inputs count as abandoned (its gateway died mid-stream)."""
        self.r.zadd(self._staging_key, {job_id: time.time() + lease_s})

    def reap_abandoned_staging(self) -> int:
        """Delete the staged inputs of submissions whose gateway stopped refreshing them and that never
        became a job; returns the submissions reaped."""
        reaped = 0
        for raw_id in self.r.zrangebyscore(self._staging_key, "-inf", time.time()):
            job_id = raw_id.decode()
            if not self.r.exists(self.job_key(job_id)):
                keys = list(self.r.scan_iter(match=f"{self.prefix}job:{job_id}:in:*", count=1000))
                for start in range(0, len(keys), 1000):
                    self.r.delete(*keys[start : start + 1000])
                log.warning("submission %s was abandoned mid-stream: %d staged inputs deleted", job_id, len(keys))
                reaped += 1
            self.r.zrem(self._staging_key, job_id)
        return reaped

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
                "dispatch_cursor": 0,
                "created_at": repr(now),
                "tenant": spec.tenant,
            },
        )
        # Part states start "pending" (not yet handed to the queue); ``claim_parts`` hands them out.
        for start in range(0, parts, 5000):
            pipe.hset(
                self._parts_key(job_id),
                mapping={str(c): "pending" for c in range(start, min(parts, start + 5000))},
            )
        pipe.xadd(self.events_key(job_id), {"e": "created"}, maxlen=100, approximate=True)
        pipe.zadd(self._index_key, {job_id: now})
        pipe.zadd(self._tenant_index_key(spec.tenant), {job_id: now})
        pipe.sadd(self._active_key, job_id)
        pipe.zrem(self._staging_key, job_id)
        for key in (self.job_key(job_id), self._parts_key(job_id), self.events_key(job_id)):
            pipe.expire(key, self.ttl)
        pipe.execute()
        return self.get(job_id)

    def mark_dispatched(self, job_id: str, parts: Sequence[int]) -> None:
        """Record that parts are in the queue; a part a worker already started keeps its state."""
        for start in range(0, len(parts), 5000):
            self._mark_dispatched(keys=[self._parts_key(job_id)], args=[str(c) for c in parts[start : start + 5000]])

    def claim_parts(self, job_id: str, window: int) -> range:
        """The job's next parts to dispatch, so that at most ``window`` are queued or running at once
        (0: every part left); empty for a finished, cancelled or gone job. Atomic, so gateways feeding
        the same job never claim a part twice."""
        first, end = self._claim(keys=[self.job_key(job_id)], args=[window])
        return range(int(first), int(end))

    def pending_parts(self, job_id: str) -> list[int]:
        """Parts claimed for dispatch but never handed to the queue (the gateway died between the two,
        or the queue refused them); parts not yet claimed wait their turn and are not listed."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hmget(self.job_key(job_id), "dispatch_cursor", "parts_total")
        pipe.hgetall(self._parts_key(job_id))
        (cursor, parts_total), states = pipe.execute()
        claimed = int(cursor if cursor is not None else parts_total or 0)
        return sorted(int(k) for k, v in states.items() if v == b"pending" and int(k) < claimed)

    def active_jobs(self) -> list[str]:
        return sorted(m.decode() for m in self.r.smembers(self._active_key))

    def reclaim_parts(self, job_id: str) -> list[int]:
        """Parts "running" with no live lease (their worker died) put back to "pending": the caller
        queues them. Each such part is handed to exactly one caller, however many gateways ask."""
        parts = self._reclaim_parts(
            keys=[self.job_key(job_id), self._parts_key(job_id), self._running_key(job_id)],
            args=[self._lease_key(job_id, "")],
        )
        return sorted(int(p) for p in parts)

    def touch(self, job_id: str) -> bool:
        """Refresh the TTL of every key of a live job (staged inputs and outputs included)."""
        return int(self._touch(keys=self._own_keys(job_id), args=[self.ttl, f"{self.prefix}job:{job_id}:"])) == 1

    # -- reading ------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobSnapshot:
        if not job_id or len(job_id) > 64:
            raise InvalidArgument("job_id must be 1 to 64 characters")
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.job_key(job_id))
        pipe.hgetall(self._failures_key(job_id))
        pipe.hgetall(self._metrics_key(job_id))
        pipe.hgetall(self._outputs_key(job_id))
        pipe.hgetall(self._document_failures_key(job_id))
        raw, failures, metrics, outputs, document_failures = pipe.execute()
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
            failed_documents=[
                DocumentFailure(id=k.decode(), message=v.decode()) for k, v in sorted(document_failures.items())
            ],
        )
        for idx_raw, message in sorted(failures.items(), key=lambda kv: int(kv[0])):
            idx = int(idx_raw)
            first, count = snap.part_range(idx)
            snap.failed_parts.append(PartFailure(part=idx, first_unit=first, units=count, message=message.decode()))
        return snap

    def list(
        self, limit: int, before: float | None, state: JobState | None, tenant: str | None = None
    ) -> tuple[list[JobSnapshot], float | None]:
        """Newest first (only ``tenant``'s jobs when given). Returns the page and the created_at to
        continue from (None at the end)."""
        max_score = f"({before!r}" if before is not None else "+inf"
        # Tenant "" (auth off) reads the whole index: its jobs were listed there before tenants existed.
        index = self._tenant_index_key(tenant) if tenant else self._index_key
        jobs: list[JobSnapshot] = []
        cursor = max_score
        while len(jobs) < limit:
            ids = self.r.zrevrangebyscore(index, cursor, "-inf", start=0, num=limit * 2, withscores=True)
            if not ids:
                return jobs, None
            for raw_id, score in ids:
                cursor = f"({score!r}"
                try:
                    snap = self.get(raw_id.decode())
                except NotFound:
                    self.r.zrem(index, raw_id)  # expired record: tidy the index
                    continue
                except (KeyError, ValueError):  # a partial or unreadable record: one job, not the page
                    log.warning("job %s: record unreadable; left out of the list", raw_id.decode(), exc_info=True)
                    continue
                if (state is None or snap.state == state) and (tenant is None or snap.spec.tenant == tenant):
                    jobs.append(snap)
                    if len(jobs) == limit:
                        return jobs, score
        return jobs, None

    def tenants_of(self, job_ids: Sequence[str]) -> dict[str, str]:
        """Each job's tenant ("" for jobs of an auth-off deployment, or accepted before tenants); gone
        jobs are left out. One round trip, for the feeder and the quota checks."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.job_key(job_id), "tenant", "state")
        return {
            job_id: (tenant or b"").decode()
            for job_id, (tenant, state) in zip(job_ids, pipe.execute(), strict=True)
            if state is not None
        }

    def specs(self, job_ids: Sequence[str]) -> dict[str, JobSpec]:
        """Each job's spec, gone jobs left out: one round trip for any number of jobs, where ``get``
        reads five hashes of each (for the listings that only need what the jobs work on)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.job_key(job_id), "spec")
        return {
            job_id: JobSpec.model_validate_json(raw)
            for job_id, raw in zip(job_ids, pipe.execute(), strict=True)
            if raw is not None
        }

    def dispatch_counts(self, job_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Per job: (parts claimed for dispatch and not finished, i.e. queued or running; parts not
        claimed yet). Gone jobs are left out."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.job_key(job_id), "dispatch_cursor", "parts_total", "parts_finished")
        counts = {}
        for job_id, (cursor, total, finished) in zip(job_ids, pipe.execute(), strict=True):
            if total is not None:
                claimed = int(cursor if cursor is not None else total)
                counts[job_id] = (claimed - int(finished or 0), int(total) - claimed)
        return counts

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

    def watch(
        self, job_id: str, poll_s: float = 1.0, keep_going: Callable[[], bool] = lambda: True
    ) -> Iterator[JobSnapshot]:
        """Yield the job now and after every change, until it is finished or ``keep_going()`` is
        false (asked after every wait of at most ``poll_s``, so a watcher that went away is noticed
        within a poll even while the job does not change)."""
        last_event = "0-0"
        last_seen: tuple[object, ...] | None = None
        while True:
            snap = self.get(job_id)
            key = (snap.state, snap.done, snap.failed, snap.parts_finished)
            if key != last_seen:
                last_seen = key
                yield snap
            if snap.state.terminal or not keep_going():
                return
            last_event = self.wait_for_event(job_id, last_event, poll_s)

    # -- worker side --------------------------------------------------------------------------
    def start_part(self, job_id: str, part: int, owner: str = "", lease_s: float = DEFAULT_PART_LEASE_S) -> PartStart:
        """One round trip: whether to run the part, and the job's spec and sizes if so. A part that
        runs is leased to ``owner`` for ``lease_s`` (``refresh_lease`` extends it while it runs)."""
        result = self._start(
            keys=[
                self.job_key(job_id),
                self._parts_key(job_id),
                self.events_key(job_id),
                self._lease_key(job_id, part),
                self._attempts_key(job_id),
                self._running_key(job_id),
            ],
            args=[str(part), repr(time.time()), owner or uuid.uuid4().hex, int(lease_s * 1000), self.ttl],
        )
        outcome = StartOutcome(result[0].decode())
        if outcome == StartOutcome.BUSY:
            return PartStart(outcome, busy_for_ms=max(int(result[1]), 0))
        if not outcome.runs:
            return PartStart(outcome)
        return PartStart(
            outcome,
            spec=JobSpec.model_validate_json(result[1]),
            total=int(result[2]),
            parts_total=int(result[3]),
            attempts=int(result[4]),
        )

    def refresh_part_lease(self, job_id: str, part: int, owner: str, lease_s: float) -> bool:
        """Extend ``owner``'s lease on a part it runs; False if it no longer holds it."""
        return self._lease_call(job_id, part, owner, "refresh", lease_s) == 1

    def end_part_lease(self, job_id: str, part: int, owner: str, backoff_s: float = 0.0) -> None:
        """``owner`` stops running the part without finishing it: release the lease, or, with
        ``backoff_s``, keep it as a backoff lease until the scheduled retry comes (or it lapses and
        the recovery loop queues the part again)."""
        self._lease_call(job_id, part, owner, "end", backoff_s)

    # -- a task one part does for all of a job's parts ------------------------------------------
    def claim_task(self, job_id: str, task: str, token: str, lease_s: float) -> bool:
        """Take the job's one-off ``task`` (e.g. ``centroids``: a dedup job's training) for ``lease_s``;
        True for the one caller that gets it. The claim lapses with its lease should its holder die, so
        another part takes the task over; the key expires by itself."""
        return bool(self.r.set(self._task_key(job_id, task), token, nx=True, px=int(lease_s * 1000)))

    def renew_task(self, job_id: str, task: str, token: str, lease_s: float) -> bool:
        """Extend a claim this ``token`` holds; False if it lapsed (another part may hold the task now)."""
        return bool(self._task(keys=[self._task_key(job_id, task)], args=[token, int(lease_s * 1000)]))

    def release_task(self, job_id: str, task: str, token: str) -> None:
        """Give a claim back (only the holder's token can)."""
        self._task(keys=[self._task_key(job_id, task)], args=[token, 0])

    def _lease_call(self, job_id: str, part: int, owner: str, mode: str, seconds: float) -> int:
        keys = [self._lease_key(job_id, part), self._running_key(job_id)]
        return int(self._lease(keys=keys, args=[owner, mode, int(seconds * 1000), str(part)]))

    def finish_part(
        self,
        job_id: str,
        part: int,
        *,
        done: int,
        failed: int,
        truncated: int,
        error: str = "",
        unit: str = "",
        document_failures: Sequence[DocumentFailure] = (),
    ) -> bool:
        """Count a part's outcome once and drop its staged input; False if it had already been counted
        or the job no longer exists. ``unit`` names what ``failed`` counts, for the job's error text;
        ``document_failures`` are documents of a done part that failed on their own (also in ``failed``),
        listed on the job (the first ``MAX_DOCUMENT_FAILURES_KEPT``) and making it end FAILED."""
        counted = self._finish(
            keys=[
                *self._own_keys(job_id),
                self._lease_key(job_id, part),
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
                f"{self.prefix}job:{job_id}:",
                MAX_DOCUMENT_FAILURES_KEPT,
                *(value for f in document_failures for value in (f.id, f.message)),
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
        figures such as the loss, and what it produced. Watchers are woken; a gone job stays gone."""
        self._report(
            keys=[self.job_key(job_id), self._metrics_key(job_id), self._outputs_key(job_id), self.events_key(job_id)],
            args=[
                "" if done is None else str(done),
                json.dumps({k: repr(float(v)) for k, v in (metrics or {}).items()}),
                json.dumps(outputs or {}, ensure_ascii=False),
                self.ttl,
            ],
        )

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
            args=[repr(time.time()), job_id, f"{self.prefix}job:{job_id}:", self.ttl],
        )
        return self.get(job_id)

    def resume(self, job_id: str) -> builtins.list[int]:
        """Put a FAILED or CANCELLED job's parts that are not done back to pending; returns them."""
        keys = [self.job_key(job_id), self._parts_key(job_id), self._failures_key(job_id), self.events_key(job_id)]
        reply = self._resume(keys=[*keys, self._active_key, self._attempts_key(job_id)], args=[job_id, self.ttl])
        outcome = reply[0].decode()
        if outcome == "missing":
            raise NotFound(f"job {job_id} does not exist (or has expired)")
        if outcome == "complete":
            raise FailedPrecondition(
                f"job {job_id} has no part left to run: every part finished (documents that failed on their own "
                "are listed on the job; submit those again)"
            )
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

    def activity(self) -> Activity:
        """Counts over the active jobs (one pipelined read of each job's state and part states)."""
        ids = self.active_jobs()
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(self.job_key(job_id), "state")
            pipe.hvals(self._parts_key(job_id))
        replies = pipe.execute()
        jobs = {JobState.QUEUED.value: 0, JobState.RUNNING.value: 0}
        parts = {"pending": 0, "queued": 0, "running": 0}
        for raw_state, part_states in zip(replies[::2], replies[1::2], strict=True):
            state = raw_state.decode() if raw_state is not None else ""
            if state not in jobs:
                continue  # expired, or finished since the active set was read
            jobs[state] += 1
            for name in (p.decode() for p in part_states):
                parts[name] = parts.get(name, 0) + 1
        return Activity(jobs=jobs, parts=parts)

    # -- workers ------------------------------------------------------------------------------
    def publish_worker(
        self, worker_id: str, models: dict[str, str], ttl_s: float, *, device: str = "", metrics: str = ""
    ) -> None:
        """A worker's heartbeat, gone when it stops beating: the models it hosts (name -> version), the
        device they run on and where its Prometheus metrics are served ("" when off)."""
        beat: WorkerBeat = {"worker_id": worker_id, "models": models, "device": device, "metrics": metrics}
        self.r.set(f"{self.prefix}workers:{worker_id}", json.dumps(beat), px=int(ttl_s * 1000))

    def live_workers(self) -> builtins.list[WorkerBeat]:
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

    def job_state(self, job_id: str) -> JobState | None:
        """The job's state alone (one field, not the snapshot ``get`` builds); None once it expired."""
        state = self.r.hget(self.job_key(job_id), "state")
        return JobState(state.decode()) if state is not None else None

    def job_is_active(self, job_id: str) -> bool:
        """The job is QUEUED or RUNNING (not cancelled, finished or expired): its parts should run."""
        return self.job_state(job_id) in (JobState.QUEUED, JobState.RUNNING)
