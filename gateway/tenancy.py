"""Who is calling: the principal of the current RPC, and what it means for names it sends.

The auth interceptor sets the principal before every call reaches a servicer; the cores read it with
``current()``, so scoping lives in the jobs core and the context (every job kind, present and future,
is scoped without an edit to its planner or servicer). With auth off there is one principal, the
local admin of tenant "": a loopback deployment has a single user.

Collections are namespaced by name prefix: the tenant ``acme``'s collection ``docs`` is the Milvus
collection ``tenant_acme_docs``. A prefix and not a Milvus database per tenant, because Milvus Lite
(every test and ``embedfleet up``) has no databases, because one Milvus client then serves every tenant
(a database is chosen per connection), and because the worker needs no change: the job spec names the
physical collection. Tenant names are letters and digits only, so the first underscore after
``tenant_`` ends the tenant and no tenant's names can collide with another's. Filter expressions run
inside one collection, so a tenant's filter only ever sees its own rows.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from embedfleet import errors
from embedfleet.apikeys import TENANT_PATTERN, Role

NAMESPACE = "tenant_"
# A tenant's own part of the dataset store: the paths it names (corpora, output_uri) are inside it.
DATA_AREA = "tenants"


@dataclass(frozen=True)
class Principal:
    tenant: str  # "" when auth is off
    role: Role
    key_id: str = ""  # the API key's id (never its secret), for audit lines


LOCAL = Principal(tenant="", role=Role.ADMIN)
# A call not (yet) admitted: health checks, and a call while its key is being checked.
ANONYMOUS = Principal(tenant="", role=Role.READER)

# Set by the auth interceptor at the start of every call, in the thread that runs it; a pool thread
# never carries one call's principal into the next, because the next sets its own first.
_current: ContextVar[Principal] = ContextVar("embedfleet_principal", default=LOCAL)


def current() -> Principal:
    return _current.get()


def act_as(principal: Principal) -> None:
    """Make ``principal`` the caller of the RPC now running in this thread."""
    _current.set(principal)


def collection_name(name: str) -> str:
    """The Milvus name of the caller's collection ``name``."""
    tenant = current().tenant
    if tenant:
        return f"{NAMESPACE}{tenant}_{name}"
    if name.startswith(NAMESPACE):
        raise errors.InvalidArgument(
            f"collection names starting with {NAMESPACE!r} are reserved for tenants' collections", "collection"
        )
    return name


def display_collection(physical: str) -> str:
    """A Milvus collection name as its tenant knows it (the namespace prefix taken off)."""
    if not physical.startswith(NAMESPACE):
        return physical
    tenant, _, name = physical.removeprefix(NAMESPACE).partition("_")
    return name if TENANT_PATTERN.fullmatch(tenant) and name else physical


def own_collection(physical: str) -> str | None:
    """The caller's name for the Milvus collection ``physical``; None if it is not the caller's."""
    name = display_collection(physical)
    try:
        return name if collection_name(name) == physical else None
    except errors.InvalidArgument:  # a tenant-namespaced name, seen with auth off
        return None


def owns(tenant: str) -> bool:
    """Whether the caller may see an object owned by ``tenant``."""
    return current().tenant == tenant


def data_path(relative: str) -> str:
    """A dataset-store path the caller named, inside its tenant's area (``tenants/<tenant>/``): no tenant
    can name another's corpora, results or spilled inputs. With auth off, paths are the store's own,
    except the tenants' area."""
    tenant = current().tenant
    if tenant:
        return f"{DATA_AREA}/{tenant}/{relative}"
    if relative == DATA_AREA or relative.startswith(f"{DATA_AREA}/"):
        raise errors.InvalidArgument(f"the dataset store's {DATA_AREA}/ directory holds tenants' data", "uri")
    return relative


def model_name(name: str) -> str:
    """The registry name of a model the caller's distillation job promotes: ``<tenant>.<name>`` (model
    names allow dots; tenant names have none), so only the tenant sees and uses it."""
    tenant = current().tenant
    return f"{tenant}.{name}" if tenant else name


def may_use_model(name: str, configured: set[str]) -> bool:
    """Configured models serve everyone; a promoted ``<tenant>.<name>`` only its tenant (and, with auth
    off, the local admin); other promoted models everyone."""
    if name in configured:
        return True
    owner, dot, _ = name.partition(".")
    return not dot or not TENANT_PATTERN.fullmatch(owner) or not current().tenant or owner == current().tenant
