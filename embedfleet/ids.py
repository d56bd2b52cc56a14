"""Identifiers derived from data, so that a retried write is an upsert and never a new row."""

import hashlib
import re
import uuid
from collections.abc import Sequence

import numpy as np

from embedfleet.errors import InvalidArgument, echo

_PK_MASK = (1 << 63) - 1
# What ``new_job_id`` issues: uuid4().hex. Nothing else may reach the job store's key names, where
# ``<id>:chunks`` would name another job's hash.
_JOB_ID = re.compile(r"[0-9a-f]{32}")


def primary_key(collection: str, document_id: str) -> int:
    """A 63-bit Milvus primary key for a document in a collection.

    Derived from the data (not random, not a counter) so that a chunk redelivered after a worker
    crash writes the same keys again and Milvus' upsert overwrites instead of duplicating.
    63 bits keeps it a positive INT64.
    """
    digest = hashlib.blake2b(f"{collection}\x00{document_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _PK_MASK


def id_digests(ids: Sequence[str]) -> np.ndarray:
    """(n, 2) uint64: the halves of each id's 128-bit BLAKE2b digest. What repeated ids are found by
    without keeping the ids themselves (the gateway keeps the first half of a streamed corpus's, the
    workers write both halves of a referenced corpus's)."""
    raw = b"".join(hashlib.blake2b(i.encode(), digest_size=16).digest() for i in ids)
    return np.frombuffer(raw, dtype=">u8").reshape(-1, 2).astype(np.uint64)


def new_job_id() -> str:
    """Job ids are random: two submissions of the same corpus are two jobs."""
    return uuid.uuid4().hex


def validate_job_id(job_id: str) -> str:
    """The id unchanged if it has the form the gateway issues; anything else is the caller's mistake."""
    if not _JOB_ID.fullmatch(job_id):
        raise InvalidArgument(
            f"job_id must be the 32 lowercase hex digits a Submit call returned, got {echo(job_id)}", "job_id"
        )
    return job_id
