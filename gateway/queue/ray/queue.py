"""The Ray backend's durable queue: parts wait in Redis, not in the gateway's memory.

A thin typed layer over the job store's queue section: it encodes a ``PartTask`` as the item the
store keeps (``[job_id, part]`` as JSON), and binds one dispatcher's identity (its in-flight list
and lease) so the dispatcher cannot touch another one's items by mistake.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from embedfleet.jobstore import JobStore
from embedfleet.tasks import PartTask

log = logging.getLogger(__name__)

LEASE_TTL_S = 15.0  # a dispatcher silent for this long is presumed dead; its parts are reclaimed
LEASE_REFRESH_S = 3.0
RECLAIM_INTERVAL_S = 5.0


@dataclass(frozen=True)
class TakenPart:
    """A part this dispatcher took; ``raw`` is the item as stored, to remove it once the part is over."""

    task: PartTask
    raw: bytes


def encode(task: PartTask) -> bytes:
    return json.dumps(task.to_args()).encode()


def decode(raw: bytes) -> PartTask:
    """The part an item names; ValueError for an item no dispatcher wrote."""
    try:
        job_id, part = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"malformed queue item {raw!r}") from exc
    return PartTask.from_args(job_id, part)


class PartQueue:
    """One dispatcher's view of the shared queue: pending (everyone's) and in flight (its own)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.owner = uuid.uuid4().hex[:12]

    def push(self, job_id: str, parts: Sequence[int]) -> None:
        """Durable once this returns: the parts are in Redis, whatever happens to this process."""
        self.store.queue_push([encode(PartTask(job_id, part)) for part in parts])

    def take(self) -> TakenPart | None:
        """The oldest pending part, now in this dispatcher's in-flight list; None if none is pending.

        A malformed item is removed and skipped: it can never run, and left in the list it would be
        handed back to the queue on every close."""
        while (raw := self.store.queue_take(self.owner)) is not None:
            try:
                return TakenPart(decode(raw), raw)
            except ValueError:
                log.error("Ray queue %s: dropping malformed item %r", self.owner, raw)
                self.store.queue_done(self.owner, raw)
        return None

    def done(self, part: TakenPart) -> None:
        self.store.queue_done(self.owner, part.raw)

    def refresh_lease(self) -> None:
        self.store.refresh_lease(self.owner, LEASE_TTL_S)

    def reclaim_orphans(self) -> int:
        """Take back the parts of dispatchers whose lease expired; how many were put back."""
        moved = self.store.reclaim_orphans(self.owner)
        if moved:
            log.warning("Ray queue %s: took back %d part(s) of stopped dispatchers", self.owner, moved)
        return moved

    def return_all(self) -> int:
        """Hand this dispatcher's unfinished parts back to the pending list (on close)."""
        return self.store.queue_return_all(self.owner)

    def pending(self) -> int:
        return self.store.queue_length()
