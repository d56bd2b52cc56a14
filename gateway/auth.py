"""Authentication and authorization of a call: its API key -> a principal, and the role its method needs.

The role a method needs is looked up by name: a few methods are named explicitly, the rest by the verb
their name starts with (so ``SubmitDedupJob``, added later, needs a writer like every ``Submit``). A
method that matches nothing needs an admin: a new RPC is closed until someone classifies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embedfleet import errors
from embedfleet.apikeys import KeyStore, Role
from embedfleet.gateway import quotas, tenancy
from embedfleet.gateway.settings import GatewaySettings

# Served to anyone who can connect: health checks (load balancers have no key) and reflection.
PUBLIC_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
# Methods whose role is not their verb's.
ROLE_BY_METHOD = {
    "embedfleet.v1.JobService/SubmitDistillJob": Role.ADMIN,  # it promotes a model every tenant may use
    "embedfleet.v1.StatusService/GetStatus": Role.READER,
}
# The role a method needs by the first word of its name.
ROLE_BY_VERB = (
    ("Get", Role.READER),
    ("List", Role.READER),
    ("Watch", Role.READER),
    ("Stream", Role.READER),
    ("Search", Role.READER),
    ("Submit", Role.WRITER),
    ("Cancel", Role.WRITER),
    ("Resume", Role.WRITER),
    ("Delete", Role.WRITER),
    ("Embed", Role.WRITER),
)
# The key service: admins only, whatever the verb.
ADMIN_SERVICES = ("embedfleet.v1.KeyService/",)
BEARER = "bearer "


def required_role(method: str) -> Role:
    """The least role that may call ``method`` ("package.Service/Method")."""
    if method in ROLE_BY_METHOD:
        return ROLE_BY_METHOD[method]
    if method.startswith(ADMIN_SERVICES):
        return Role.ADMIN
    name = method.rpartition("/")[2]
    return next((role for verb, role in ROLE_BY_VERB if name.startswith(verb)), Role.ADMIN)


def bearer_token(metadata: Sequence[tuple[str, Any]]) -> str:
    """The key of an ``authorization: Bearer <key>`` header; Unauthenticated when there is none."""
    for name, value in metadata:
        if name.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text[: len(BEARER)].lower() == BEARER and text[len(BEARER) :].strip():
                return text[len(BEARER) :].strip()
            raise errors.Unauthenticated("the authorization header must read 'Bearer <API key>'")
    raise errors.Unauthenticated(
        "this gateway requires an API key: pass api_key= to the client, or --api-key / EMBEDFLEET_API_KEY to the CLI"
    )


class Gate:
    """What every call passes before a servicer sees it: who calls, whether the role allows the method,
    and the per-call quotas (``Embed`` and ``Search`` rates, ``quotas.RATED_CALLS``)."""

    def __init__(self, settings: GatewaySettings, keys: KeyStore, limiter: quotas.RateLimiter) -> None:
        self.settings = settings
        self.keys = keys
        self.limiter = limiter

    def public(self, method: str) -> bool:
        return method.startswith(PUBLIC_SERVICES)

    def admit(self, method: str, metadata: Sequence[tuple[str, Any]]) -> tenancy.Principal:
        """The caller's principal, made current for this thread; raises Unauthenticated,
        PermissionDenied or ResourceExhausted."""
        tenancy.act_as(tenancy.ANONYMOUS)  # a refused call is nobody's, not the thread's previous caller's
        if not self.settings.auth:
            principal = tenancy.LOCAL
        else:
            key = self.keys.verify(bearer_token(metadata))
            principal = tenancy.Principal(key.tenant, key.role, key.key_id)
            tenancy.act_as(principal)  # a call its role refuses still counts as the tenant's
            needed = required_role(method)
            if not key.role.allows(needed):
                raise errors.PermissionDenied(
                    f"{method.rpartition('/')[2]} needs the {needed.value} role; API key {key.key_id} is a "
                    f"{key.role.value} key of tenant {key.tenant!r}"
                )
        tenancy.act_as(principal)
        rated = quotas.RATED_CALLS.get(method)
        if rated is not None and principal.tenant:
            self.limiter.take(principal.tenant, self.quota(), rated)
        return principal

    def quota(self) -> quotas.TenantQuota:
        return self.settings.quota_for(tenancy.current().tenant)
