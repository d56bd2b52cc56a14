"""Identifiers derived from data, so that a retried write is an upsert and never a new row."""

import hashlib
import uuid

_PK_MASK = (1 << 63) - 1


def primary_key(collection: str, document_id: str) -> int:
    """A 63-bit Milvus primary key for a document in a collection.

    Derived from the data (not random, not a counter) so that a chunk redelivered after a worker
    crash writes the same keys again and Milvus' upsert overwrites instead of duplicating.
    63 bits keeps it a positive INT64.
    """
    digest = hashlib.blake2b(f"{collection}\x00{document_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _PK_MASK


def new_job_id() -> str:
    """Job ids are random: two submissions of the same corpus are two jobs."""
    return uuid.uuid4().hex
