"""API keys: each bound to one tenant and one role, kept in Redis only as a salted hash.

A key reads ``efk_<key id>_<secret>``. The id (16 hex digits) names the record and may be shown,
logged and listed; the secret (32 random bytes) is shown once, by ``create``, and never stored: the
record holds a random salt and HMAC-SHA256(salt, secret). The secret has 256 bits of entropy, so a
fast keyed hash is enough (a slow KDF protects guessable passwords, not random keys) and every call
can be checked against Redis without a local cache: a revoked key fails on the next call on every
gateway. Digests are compared with ``hmac.compare_digest`` (constant time).

This module is shared by the gateway (checking and managing keys) and the CLI's ``keys create
--bootstrap``, which writes the first admin key straight to Redis before any key exists.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from embedfleet import errors

KEY_SCHEME = "efk"
# Tenants name Milvus collections (``tenant_<tenant>_<name>``) and Redis keys: lowercase letters and
# digits only, so the namespace prefix is unambiguous (no underscore can end a tenant early).
TENANT_PATTERN = re.compile(r"[a-z][a-z0-9]{0,31}")
_KEY_ID = re.compile(r"[0-9a-f]{16}")
MAX_KEY_NAME_CHARS = 64


class Role(StrEnum):
    """What a key may do; each role includes the ones below it (reader < writer < admin)."""

    READER = "reader"  # get, list, watch jobs and their results; search; list models
    WRITER = "writer"  # + submit, cancel and resume jobs; Embed
    ADMIN = "admin"  # + manage the tenant's keys, and distillation (it promotes models)

    def allows(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.READER: 0, Role.WRITER: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class ApiKey:
    """A key's record, as listed: never its secret."""

    key_id: str
    tenant: str
    role: Role
    name: str
    created_at: float


def validate_tenant(tenant: str, field: str = "tenant") -> str:
    if not TENANT_PATTERN.fullmatch(tenant):
        raise errors.InvalidArgument(
            f"tenant {errors.echo(tenant)} must be 1 to 32 lowercase letters and digits, starting with a letter", field
        )
    return tenant


def validate_key_id(key_id: str, field: str = "key_id") -> str:
    if not _KEY_ID.fullmatch(key_id):
        raise errors.InvalidArgument(f"key_id {errors.echo(key_id)} is not a key id (16 hex digits)", field)
    return key_id


def _digest(salt: bytes, secret: str) -> str:
    return hmac.new(salt, secret.encode(), hashlib.sha256).hexdigest()


class KeyStore:
    """The key records under ``<prefix>apikey:<id>`` (a hash) and ``<prefix>apikeys:<tenant>`` (the
    tenant's ids). Safe to share across threads."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.r = client
        self.prefix = prefix

    def _record_key(self, key_id: str) -> str:
        return f"{self.prefix}apikey:{key_id}"

    def _tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}apikeys:{tenant}"

    def create(self, tenant: str, role: Role, name: str = "") -> tuple[ApiKey, str]:
        """A new key: its record and the full key, which exists nowhere else from now on."""
        validate_tenant(tenant)
        if len(name) > MAX_KEY_NAME_CHARS or not name.isprintable():
            raise errors.InvalidArgument(f"a key's name is at most {MAX_KEY_NAME_CHARS} printable characters", "name")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        record = ApiKey(key_id, tenant, role, name, time.time())
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self._record_key(key_id),
            mapping={
                "tenant": tenant,
                "role": role.value,
                "name": name,
                "created_at": repr(record.created_at),
                "salt": salt.hex(),
                "digest": _digest(salt, secret),
            },
        )
        pipe.sadd(self._tenant_key(tenant), key_id)
        pipe.execute()
        return record, f"{KEY_SCHEME}_{key_id}_{secret}"

    def verify(self, presented: str) -> ApiKey:
        """The record of a presented key, or Unauthenticated (saying why, never echoing the secret)."""
        scheme, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        if scheme != KEY_SCHEME or not _KEY_ID.fullmatch(key_id) or not secret:
            raise errors.Unauthenticated(
                f"the API key is malformed (an embedfleet key reads {KEY_SCHEME}_<16 hex digits>_<secret>)"
            )
        fields = self.r.hgetall(self._record_key(key_id))
        if not fields:
            raise errors.Unauthenticated(f"API key {key_id} is unknown or was revoked; ask an admin for a new one")
        record = {k.decode(): v.decode() for k, v in fields.items()}
        if not hmac.compare_digest(_digest(bytes.fromhex(record["salt"]), secret), record["digest"]):
            raise errors.Unauthenticated(f"API key {key_id}: the secret does not match; ask an admin for a new key")
        return _record(key_id, record)

    def list(self, tenant: str) -> list[ApiKey]:
        """The tenant's live keys, oldest first."""
        ids = sorted(m.decode() for m in self.r.smembers(self._tenant_key(validate_tenant(tenant))))
        pipe = self.r.pipeline(transaction=False)
        for key_id in ids:
            pipe.hgetall(self._record_key(key_id))
        keys = [
            _record(key_id, {k.decode(): v.decode() for k, v in raw.items()})
            for key_id, raw in zip(ids, pipe.execute(), strict=True)
            if raw
        ]
        return sorted(keys, key=lambda k: k.created_at)

    def revoke(self, tenant: str, key_id: str) -> ApiKey:
        """Delete one of the tenant's keys: its next use fails everywhere. Another tenant's key, like an
        unknown one, is NOT_FOUND (a tenant cannot learn which ids exist elsewhere)."""
        validate_key_id(key_id)
        raw = self.r.hgetall(self._record_key(key_id))
        record = _record(key_id, {k.decode(): v.decode() for k, v in raw.items()}) if raw else None
        if record is None or record.tenant != tenant:
            raise errors.NotFound(f"tenant {tenant!r} has no API key {key_id}")
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self._record_key(key_id))
        pipe.srem(self._tenant_key(tenant), key_id)
        pipe.execute()
        return record


def _record(key_id: str, fields: dict[str, str]) -> ApiKey:
    return ApiKey(key_id, fields["tenant"], Role(fields["role"]), fields.get("name", ""), float(fields["created_at"]))
