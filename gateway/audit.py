"""The audit trail: one JSON line per key-management action, cancel and delete, on the
``embedfleet.audit`` logger (whatever ``log_format`` the rest of the log uses, so a collector can pick
these lines out and parse them). A line names the actor by tenant and key id, never by secret.
"""

from __future__ import annotations

import json
import logging
import time

from embedfleet.gateway import tenancy

log = logging.getLogger("embedfleet.audit")


def record(action: str, target: str, **details: str) -> None:
    """Log that the current caller did ``action`` to ``target`` (a job id, a key id)."""
    actor = tenancy.current()
    line = {
        "audit": action,
        "ts": round(time.time(), 3),
        "tenant": actor.tenant,
        "key_id": actor.key_id,
        "role": actor.role.value,
        "target": target,
        **details,
    }
    log.info(json.dumps(line, sort_keys=True))
