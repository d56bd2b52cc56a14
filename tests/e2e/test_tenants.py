"""Tenants end to end, with auth turned on in the session's gateway: two tenants try every RPC on each
other's jobs, collections and keys (by real ids, guessed ids and filter expressions) and nothing
crosses, on Celery and on Ray; roles, revocation, quotas and the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from embedfleet.apikeys import KeyStore, Role
from embedfleet.client import errors
from embedfleet.client.cli import main
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.gateway.quotas import TenantQuota
from embedfleet.gateway.server import start_gateway
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.ids import new_job_id
from embedfleet.local import LocalCluster


def _last_json(output: str) -> Any:
    """The last JSON line a command printed (a local Ray's workers also print to this process's stdout)."""
    return json.loads([line for line in output.splitlines() if line.startswith(("{", "["))][-1])


@dataclass
class Tenant:
    name: str
    secrets: dict[Role, str]
    key_ids: dict[Role, str]
    clients: dict[Role, EmbedfleetClient] = field(default_factory=dict)

    @property
    def admin(self) -> EmbedfleetClient:
        return self.clients[Role.ADMIN]

    @property
    def writer(self) -> EmbedfleetClient:
        return self.clients[Role.WRITER]

    @property
    def reader(self) -> EmbedfleetClient:
        return self.clients[Role.READER]


@contextmanager
def auth_on(cluster: LocalCluster) -> Iterator[Callable[[], Tenant]]:
    """The session's gateway with auth on (as ``embedfleet gateway`` runs) while the block runs; yields
    a maker of tenants, each with a bootstrapped key and a client (no retries) per role."""
    settings = cluster.gateway.ctx.settings
    keys = KeyStore(cluster.gateway.ctx.store.r, cluster.key_prefix)
    made: list[Tenant] = []

    def tenant() -> Tenant:
        name = f"t{uuid.uuid4().hex[:8]}"
        created = {role: keys.create(name, role, f"test-{role.value}") for role in Role}
        t = Tenant(name, {r: s for r, (_, s) in created.items()}, {r: k.key_id for r, (k, _) in created.items()})
        t.clients = {
            r: EmbedfleetClient(cluster.gateway_address, api_key=s, retries=0, timeout=120)
            for r, s in t.secrets.items()
        }
        made.append(t)
        return t

    settings.auth = True
    try:
        yield tenant
    finally:
        settings.auth = False
        for t in made:
            for c in t.clients.values():
                c.close()


def _docs(tag: str, n: int) -> list[dict[str, object]]:
    return [{"id": f"{tag}-{i}", "text": f"{tag} note {i}: a cat sleeps", "metadata": {"owner": tag}} for i in range(n)]


def _tenant_calls(tenant: str, method: str, code: str) -> float:
    labels = {"tenant": tenant, "method": method, "code": code}
    return REGISTRY.get_sample_value("embedfleet_tenant_rpc_requests_total", labels) or 0.0


def _not_found_message(call: Callable[[str], object], job_id: str) -> str:
    with pytest.raises(errors.NotFound) as raised:
        call(job_id)
    return str(raised.value.details()).replace(job_id, "<id>")


def test_nothing_crosses_between_tenants(cluster: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    """The whole cross-tenant run, on each queue backend."""
    caplog.set_level(logging.INFO)
    with auth_on(cluster) as make_tenant:
        a, b = make_tenant(), make_tenant()
        indexed = a.writer.index(_docs("a", 4), "docs")
        assert indexed.state == JobState.SUCCEEDED and indexed.collection == "docs"  # the tenant's name for it
        embedded = a.writer.submit_embed(_docs("a", 2))
        assert a.reader.wait(embedded.id).state == JobState.SUCCEEDED
        assert b.writer.index(_docs("b", 3), "docs").state == JobState.SUCCEEDED  # same name, its own collection
        a_jobs = {indexed.id, embedded.id}

        # Every job RPC on another tenant's job, and on a guessed id, answers the same NOT_FOUND.
        guessed = new_job_id()
        calls: list[Callable[[str], object]] = [
            b.reader.get_job,
            b.writer.cancel_job,
            b.writer.resume_job,
            lambda job_id: list(b.reader.watch(job_id)),
            lambda job_id: list(b.reader.results(job_id)),
        ]
        for job_id in (*a_jobs, guessed):
            messages = {_not_found_message(call, job_id) for call in calls}
            assert messages == {"job '<id>' does not exist (or expired)"}, messages
        with pytest.raises(errors.Unauthenticated):
            EmbedfleetClient(cluster.gateway_address, retries=0).get_job(embedded.id)
        assert a_jobs.isdisjoint(j.id for j in b.reader.list_jobs())
        assert a_jobs <= {j.id for j in a.reader.list_jobs()}
        assert a.reader.get_job(embedded.id).state == JobState.SUCCEEDED  # still the owner's
        assert sum(1 for _ in a.reader.results(embedded.id)) == 1
        results_dir = f"jobs/{embedded.id}/results"  # A's vectors, by dataset-store path and by URI
        store_uri = cluster.gateway.ctx.datastore.uri.rstrip("/")
        for uri in (results_dir, f"{store_uri}/{results_dir}", f"../../{results_dir}", f"tenants/{a.name}/x"):
            with pytest.raises((errors.NotFound, errors.FailedPrecondition, errors.InvalidArgument)):
                b.writer.submit_embed(None, source_uri=uri)

        # Search sees only the caller's collection, whatever the filter or the name guessed.
        assert {h.id for h in b.reader.search("docs", "a cat", top_k=10)} == {"b-0", "b-1", "b-2"}
        for expr in ('doc_id in ["a-0", "a-1"]', 'metadata["owner"] == "a"', 'doc_id like "a%"', ""):
            assert all(h.id.startswith("b-") for h in b.reader.search("docs", "a cat", top_k=10, filter=expr)), expr
        with pytest.raises(errors.NotFound):
            b.reader.search(f"tenant_{a.name}_docs", "a cat")  # the physical name is B's namespace again
        assert {h.id for h in a.reader.search("docs", "a cat", top_k=10)} == {f"a-{i}" for i in range(4)}

        # Collections: each tenant lists, describes and deletes its own only, under its own names.
        assert [(c.name, c.row_count) for c in a.reader.list_collections()] == [("docs", 4)]
        assert [(c.name, c.row_count) for c in b.reader.list_collections()] == [("docs", 3)]
        for call in (b.reader.get_collection, b.writer.delete_collection):
            with pytest.raises(errors.NotFound):
                call(f"tenant_{a.name}_docs")
        with pytest.raises(errors.PermissionDenied):
            b.reader.delete_collection("docs")

        # Dedup and cluster jobs (kinds added after tenancy, with no tenant code of their own): B's
        # job works on B's "docs" alone, and A's job results are NOT_FOUND to B like any other job.
        deduped = b.writer.submit_dedup("docs", 0.9, mode="exact")
        assert b.reader.wait(deduped.id).state == JobState.SUCCEEDED and deduped.total == 3
        for job_id in (deduped.id, guessed):
            with pytest.raises(errors.NotFound):
                list(a.reader.dedup_groups(job_id))
            with pytest.raises(errors.NotFound):
                a.reader.clusters(job_id)
            with pytest.raises(errors.NotFound):
                a.reader.cluster_map(job_id)

        # Status lists the caller's active jobs only.
        busy = a.writer.submit_embed(_docs("busy", 64), chunk_size=1)
        assert busy.id not in {j.id for j in b.reader.status().jobs}
        assert busy.id in {j.id for j in a.reader.status().jobs}
        assert a.writer.cancel_job(busy.id).state == JobState.CANCELLED

        # B drops its "docs"; A's, of the same name, is untouched.
        assert b.writer.delete_collection("docs").row_count == 3
        assert not b.reader.list_collections()
        assert {h.id for h in a.reader.search("docs", "a cat", top_k=10)} == {f"a-{i}" for i in range(4)}

        # Keys: a tenant lists and revokes its own only.
        assert {k.key_id for k in b.admin.list_keys()} == set(b.key_ids.values())
        with pytest.raises(errors.NotFound):
            b.admin.revoke_key(a.key_ids[Role.READER])
        assert a.reader.get_job(indexed.id).id == indexed.id  # A's key survived B's attempt

    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "embedfleet.audit"]
    assert {"audit": "job.cancel", "tenant": a.name, "key_id": a.key_ids[Role.WRITER], "target": busy.id}.items() <= (
        next(line for line in audit if line["target"] == busy.id).items()
    )
    assert not [line for line in audit if line["target"] in a_jobs]  # B's refused cancels did nothing
    for secret in (*a.secrets.values(), *b.secrets.values()):
        assert secret not in caplog.text


def test_roles_and_revocation(celery_system: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with auth_on(celery_system) as make_tenant:
        a = make_tenant()
        with pytest.raises(errors.Unauthenticated):
            EmbedfleetClient(celery_system.gateway_address, retries=0).list_models()  # no key
        with pytest.raises(errors.Unauthenticated):
            EmbedfleetClient(celery_system.gateway_address, api_key="efk_0123456789abcdef_x", retries=0).list_models()
        listed = ("embedfleet.v1.ModelService/ListModels", "OK")
        assert a.reader.list_models()
        assert _tenant_calls(a.name, *listed) == 1  # the metrics say which tenant called
        for denied in (
            lambda: a.reader.submit_embed(_docs("r", 1)),
            lambda: a.reader.embed(["hello"]),
            lambda: a.writer.create_key("reader"),
            lambda: a.writer.submit_distill("student-x", ["a text"]),
        ):
            with pytest.raises(errors.PermissionDenied):
                denied()
        assert _tenant_calls(a.name, "embedfleet.v1.EmbedService/Embed", "PERMISSION_DENIED") == 1
        job = a.writer.submit_embed(_docs("w", 1))
        assert a.reader.wait(job.id).state == JobState.SUCCEEDED

        created = a.admin.create_key("reader", name="rotated")
        with EmbedfleetClient(celery_system.gateway_address, api_key=created.secret, retries=0) as rotated:
            assert rotated.get_job(job.id).id == job.id
            assert a.admin.revoke_key(created.key.key_id).key_id == created.key.key_id
            with pytest.raises(errors.Unauthenticated):
                rotated.get_job(job.id)  # at once: keys are checked against Redis on every call
        assert created.key.key_id not in {k.key_id for k in a.admin.list_keys()}
    actions = [json.loads(r.getMessage())["audit"] for r in caplog.records if r.name == "embedfleet.audit"]
    assert actions.count("key.create") == 1 and actions.count("key.revoke") == 1
    assert created.secret not in caplog.text


def test_quotas_answer_resource_exhausted_with_retry_info(celery_system: LocalCluster) -> None:
    settings = celery_system.gateway.ctx.settings
    with auth_on(celery_system) as make_tenant:
        c, other = make_tenant(), make_tenant()
        settings.tenant_quotas = {
            c.name: TenantQuota(
                max_concurrent_jobs=1,
                max_documents_per_job=5,
                max_message_bytes=4000,
                embed_requests_per_second=0.2,
                embed_burst=2,
                search_requests_per_second=0.2,
                search_burst=1,
                max_open_streams=1,
            )
        }
        try:
            c.writer.embed(["one"])
            c.writer.embed(["two"])
            with pytest.raises(errors.ResourceExhausted) as rate:
                c.writer.embed(["three"])
            assert rate.value.retry_after is not None and 0 < rate.value.retry_after <= 5
            assert other.writer.embed(["another tenant's bucket is full"]).vectors.shape[0] == 1
            with pytest.raises(errors.NotFound):  # past the gate: the collection is not there
                c.reader.search("no_such_collection", "a query")
            with pytest.raises(errors.ResourceExhausted, match="Search quota"):
                c.reader.search("no_such_collection", "a query")

            with pytest.raises(errors.ResourceExhausted, match="documents per job"):
                c.writer.submit_embed(_docs("many", 6))
            with pytest.raises(errors.ResourceExhausted, match="bytes per message"):
                c.writer.submit_embed([{"id": f"big-{i}", "text": "x" * 1500} for i in range(3)])
            running = c.writer.submit_embed(_docs("slow", 5), chunk_size=1)
            watch = c.reader.watch(running.id)
            next(watch)  # one open stream: the tenant's share
            with pytest.raises(errors.ResourceExhausted, match="max_open_streams"):
                next(c.reader.watch(running.id))
            other_watch = other.reader.watch(other.writer.submit_embed(_docs("watched", 1)).id)
            next(other_watch)  # another tenant's watch still opens
            watch.close()
            other_watch.close()
            with pytest.raises(errors.ResourceExhausted, match="active jobs") as jobs:
                c.writer.submit_embed(_docs("second", 1))
            assert jobs.value.retry_after is not None and jobs.value.retry_after > 0
            assert other.writer.submit_embed(_docs("free", 1)).state == JobState.QUEUED  # others are not limited
            c.writer.cancel_job(running.id)
        finally:
            settings.tenant_quotas = {}


def test_keys_cli_bootstrap_then_create_list_revoke(
    celery_system: LocalCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`keys create --bootstrap` writes the first admin key to Redis and prints it once; with it, the
    CLI creates, lists and revokes keys through the gateway (exit code 8 once revoked)."""
    monkeypatch.setenv("EMBEDFLEET_REDIS_URL", celery_system.redis_url)
    monkeypatch.setenv("EMBEDFLEET_KEY_PREFIX", celery_system.key_prefix)
    tenant = f"t{uuid.uuid4().hex[:8]}"

    def run(*args: str, key: str = "") -> tuple[int, str]:
        options = ["--gateway", celery_system.gateway_address, "--json", *(["--api-key", key] if key else [])]
        result = CliRunner().invoke(main, [*options, "keys", *args], catch_exceptions=False)
        return result.exit_code, result.output

    with auth_on(celery_system):
        code, out = run("create", "--bootstrap", "--tenant", tenant, "--role", "admin", "--name", "first")
        admin = _last_json(out)
        assert code == 0 and admin["key"]["tenant"] == tenant and admin["secret"].startswith("efk_")
        code, out = run("create", "--role", "writer", "--name", "ci", key=admin["secret"])
        writer = _last_json(out)
        assert code == 0 and writer["key"]["role"] == "writer"
        code, out = run("list", key=admin["secret"])
        listed = _last_json(out)
        assert {k["key_id"] for k in listed} == {admin["key"]["key_id"], writer["key"]["key_id"]}
        assert writer["secret"] not in out and admin["secret"] not in out  # listed without secrets
        code, out = run("revoke", writer["key"]["key_id"], key=admin["secret"])
        assert code == 0 and _last_json(out)["key_id"] == writer["key"]["key_id"]  # JSON, as --json asks
        assert run("list", key=writer["secret"])[0] == 8  # UNAUTHENTICATED: revoked


def test_the_langchain_adapter_carries_the_api_key(celery_system: LocalCluster) -> None:
    from embedfleet.client.langchain import EmbedfleetEmbeddings

    with auth_on(celery_system) as make_tenant:
        t = make_tenant()
        keyed = EmbedfleetEmbeddings(celery_system.gateway_address, api_key=t.secrets[Role.WRITER], retries=0)
        assert len(keyed.embed_query("a cat")) == 384
        assert len(asyncio.run(keyed.aembed_documents(["a cat", "a dog"]))) == 2
        with pytest.raises(errors.Unauthenticated):
            EmbedfleetEmbeddings(celery_system.gateway_address, retries=0).embed_query("a cat")


def test_openai_endpoint_passes_the_same_gate(celery_system: LocalCluster) -> None:
    settings = GatewaySettings(
        redis_url=celery_system.redis_url,
        key_prefix=celery_system.key_prefix,
        milvus_uri=celery_system.milvus_uri,
        port=0,
        openai_port=0,
    )
    running = start_gateway(settings)  # auth on: the default
    keys = KeyStore(running.ctx.store.r, celery_system.key_prefix)
    tenant = f"t{uuid.uuid4().hex[:8]}"
    try:
        assert running.openai is not None
        url = f"http://127.0.0.1:{running.openai.port}/v1/embeddings"

        def post(key: str) -> int:
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
            request = urllib.request.Request(url, json.dumps({"input": ["hi"]}).encode(), headers)
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return int(response.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert post("") == 401
        assert post(keys.create(tenant, Role.READER)[1]) == 403
        assert post(keys.create(tenant, Role.WRITER)[1]) == 200
    finally:
        running.stop()
