"""Key management for the caller's tenant: create (the secret returned once), list, revoke. Each
action leaves an audit line. Transport-free, like the other cores."""

from __future__ import annotations

from embedfleet import errors
from embedfleet.apikeys import ApiKey, KeyStore, Role
from embedfleet.gateway import audit, tenancy


class KeysCore:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys

    def _tenant(self) -> str:
        tenant = tenancy.current().tenant
        if not tenant:
            raise errors.FailedPrecondition(
                "this gateway runs with auth off, so there is no tenant to manage keys for; turn auth on "
                "(EMBEDFLEET_AUTH=true) and make the first admin key with `embedfleet keys create --bootstrap`"
            )
        return tenant

    def create(self, role: Role, name: str) -> tuple[ApiKey, str]:
        key, secret = self.keys.create(self._tenant(), role, name)
        audit.record("key.create", key.key_id, new_role=role.value, name=name)
        return key, secret

    def list(self) -> list[ApiKey]:
        return self.keys.list(self._tenant())

    def revoke(self, key_id: str) -> ApiKey:
        key = self.keys.revoke(self._tenant(), key_id)
        audit.record("key.revoke", key.key_id)
        return key
