"""Per-tenant quotas: what one tenant may hold or send at once, so that no tenant starves the others.

Beyond a quota a call is RESOURCE_EXHAUSTED with ``RetryInfo`` (when to try again), and nothing is
buffered on the tenant's behalf. The limits come from settings (``quota``, overridden per tenant by
``tenant_quotas``) and apply to authenticated tenants; with auth off there is one user and nobody to
protect from it, so the gateway-wide limits alone apply.

* concurrent jobs: active (QUEUED or RUNNING) jobs of the tenant, checked at submission;
* queued parts: parts queued or running across the tenant's jobs, enforced by the feeder
  (``gateway/feeding.py``), which also shares the queue between tenants round-robin;
* documents per job: counted while a submission streams (so the stream is refused at the first
  document too many, not after it was staged) and checked on the plan (corpora by reference);
* bytes per message: every request message, streamed ones each;
* ``Embed`` and ``Search`` calls per second (``RATED_CALLS``): a token bucket per tenant and call in
  Redis, shared by every gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from embedfleet import errors

T = TypeVar("T")

# Until a tenant whose job limit is reached may expect a slot: a guess (jobs take seconds to hours).
JOB_SLOT_RETRY_S = 5.0


class TenantQuota(BaseModel):
    """One tenant's limits; 0 means no limit for the counts."""

    model_config = ConfigDict(frozen=True)

    max_concurrent_jobs: int = Field(default=16, ge=0)
    # Parts of the tenant's jobs queued or running at once (a job's own window still applies).
    max_queued_parts: int = Field(default=16, ge=0)
    max_documents_per_job: int = Field(default=1_000_000, ge=0)
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    embed_requests_per_second: float = Field(default=50.0, gt=0)
    # Calls a tenant may make at once after a quiet spell (the bucket's size).
    embed_burst: int = Field(default=100, gt=0)
    # Search embeds the queries and then asks Milvus: dearer per call than Embed.
    search_requests_per_second: float = Field(default=20.0, gt=0)
    search_burst: int = Field(default=40, gt=0)
    # WatchJob and StreamJobResults calls open at once on one gateway (of its EMBEDFLEET_MAX_STREAMS, 16 by
    # default): one tenant's watches never take every slot.
    max_open_streams: int = Field(default=8, ge=0)

    def rate(self, call: RatedCall) -> tuple[float, int]:
        """(calls per second, burst) of one rated call."""
        return getattr(self, f"{call.bucket}_requests_per_second"), getattr(self, f"{call.bucket}_burst")


@dataclass(frozen=True)
class RatedCall:
    """A call the per-second quotas count: its bucket's name and how the refusal names it."""

    bucket: str
    label: str


# The one table of rate-limited methods ("package.Service/Method"); the OpenAI-compatible endpoint
# passes the gate as the Embed RPC, so it shares Embed's bucket.
EMBED = "embedfleet.v1.EmbedService/Embed"
RATED_CALLS = {
    EMBED: RatedCall("embed", "Embed"),
    "embedfleet.v1.SearchService/Search": RatedCall("search", "Search"),
}


UNLIMITED = TenantQuota(
    max_open_streams=0,
    max_concurrent_jobs=0,
    max_queued_parts=0,
    max_documents_per_job=0,
    max_message_bytes=0,
    embed_burst=1 << 30,
    search_burst=1 << 30,
)

# A token bucket per tenant, refilled at ARGV[1] tokens/s up to ARGV[2]; takes one token if there is
# one. Redis's clock, so every gateway agrees. Returns {1, ""} or {0, seconds until a token}.
_TAKE_TOKEN = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then tokens = tokens - 1; allowed = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
if allowed == 1 then return {1, ''} end
return {0, tostring((1 - tokens) / rate)}
"""


class RateLimiter:
    """Rated calls per second per tenant (the bucket key is ``<prefix>quota:<bucket>:<tenant>``)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.prefix = prefix
        self._take = client.register_script(_TAKE_TOKEN)

    def take(self, tenant: str, quota: TenantQuota, call: RatedCall = RATED_CALLS[EMBED]) -> None:
        rate, burst = quota.rate(call)
        allowed, wait = self._take(keys=[f"{self.prefix}quota:{call.bucket}:{tenant}"], args=[rate, burst])
        if int(allowed) != 1:
            raise errors.ResourceExhausted(
                f"tenant {tenant!r} is over its {call.label} quota of {rate:g} calls/s (burst {burst}); slow down "
                "or ask for a larger quota",
                retry_after_s=float(wait),
            )


def check_message(tenant: str, quota: TenantQuota, size: int) -> None:
    if quota.max_message_bytes and size > quota.max_message_bytes:
        raise errors.ResourceExhausted(
            f"a {size}-byte message is over tenant {tenant!r}'s limit of {quota.max_message_bytes} bytes per "
            "message; send smaller batches"
        )


def checked_messages(tenant: str, quota: TenantQuota, messages: Iterable[T]) -> Iterator[T]:
    """A request stream whose every message is checked against the tenant's message size."""
    for message in messages:
        check_message(tenant, quota, message.ByteSize())  # type: ignore[attr-defined]
        yield message


def check_documents(tenant: str, quota: TenantQuota, count: int) -> None:
    if quota.max_documents_per_job and count > quota.max_documents_per_job:
        raise errors.ResourceExhausted(
            f"tenant {tenant!r} may submit at most {quota.max_documents_per_job} documents per job; split the "
            "corpus into several jobs"
        )


def counted_documents(tenant: str, quota: TenantQuota, documents: Iterable[T]) -> Iterator[T]:
    """A submission's documents, refused at the first one past the tenant's limit."""
    for count, document in enumerate(documents, start=1):
        check_documents(tenant, quota, count)
        yield document


def check_concurrent_jobs(tenant: str, quota: TenantQuota, active: int) -> None:
    if quota.max_concurrent_jobs and active >= quota.max_concurrent_jobs:
        raise errors.ResourceExhausted(
            f"tenant {tenant!r} has {active} active jobs, its limit; wait for one to finish (or cancel one)",
            retry_after_s=JOB_SLOT_RETRY_S,
        )
