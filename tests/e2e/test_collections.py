"""The collection service against the real system (gateway, Celery worker, Milvus Lite): what index jobs
made is listed and described, a page at a time; a collection in use by a job is not deleted; a deleted
one is gone for search and for the listing, with an audit line; bad names and tokens are refused; the
CLI does the same with --json."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from click.testing import CliRunner

from embedfleet import milvus
from embedfleet.client import errors
from embedfleet.client.aio import AsyncEmbedfleetClient
from embedfleet.client.cli import main
from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState, Precision
from embedfleet.local import LocalCluster
from embedfleet.v1 import collections_pb2


def _docs(tag: str, n: int) -> list[dict[str, object]]:
    return [{"id": f"{tag}-{i}", "text": f"{tag} paragraph {i} about cats and boats"} for i in range(n)]


def _cli(cluster: LocalCluster, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--gateway", cluster.gateway_address, *args], input="")
    return result.exit_code, result.output


def test_list_get_and_delete_collections(celery_system: LocalCluster, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    tag = uuid.uuid4().hex[:8]
    first, second = f"coll_{tag}_a", f"coll_{tag}_b"
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as client:
        bits = [{"name": "bits", "precision": "binary"}]
        job = client.index(_docs("a", 12), first, extra_fields=bits)
        assert job.state == JobState.SUCCEEDED, job.error
        assert client.index(_docs("b", 3), second).state == JobState.SUCCEEDED

        got = client.get_collection(first)
        assert (got.name, got.model, got.dimensions, got.row_count, got.active_job_ids) == (
            first,
            client.list_models()[0].name,
            384,
            12,
            [],
        )
        assert [(f.name, f.dimensions, f.precision) for f in got.fields] == [("bits", 384, Precision.BINARY)]
        assert got.index.type == "AUTOINDEX" and got.model_version

        # A collection embedfleet did not make is neither listed nor described.
        foreign = f"foreign_{tag}"
        raw = milvus.connect(celery_system.milvus_uri)
        raw.create_collection(foreign, dimension=4)
        try:
            listed = {c.name: c for c in client.list_collections(page_size=1)}  # one per page: the token works
            assert {first, second} <= set(listed) and foreign not in listed
            assert listed[second].row_count == 3
            with pytest.raises(errors.FailedPrecondition, match="not created by embedfleet"):
                client.get_collection(foreign)
        finally:
            raw.drop_collection(foreign)

        async def through_asyncio() -> tuple[set[str], object, set[str]]:
            async with AsyncEmbedfleetClient(celery_system.gateway_address) as aio:
                names = {c.name for c in await aio.list_collections(page_size=1)}
                jobs = {j.id async for j in aio.list_jobs(page_size=2)}
                return names, await aio.get_collection(second), jobs

        aio_names, aio_second, aio_jobs = asyncio.run(through_asyncio())
        assert {first, second} <= aio_names and aio_second == listed[second] and job.id in aio_jobs

        # In use by a job: refused, naming the job; once the job is cancelled, deleted.
        busy = client.submit_index(_docs("busy", 40), first, chunk_size=1, extra_fields=bits)
        with pytest.raises(errors.FailedPrecondition, match=busy.id):
            client.delete_collection(first)
        assert first in {c.name for c in client.list_collections() if busy.id in c.active_job_ids}
        assert client.cancel_job(busy.id).state == JobState.CANCELLED
        gone = client.delete_collection(first)
        assert gone.name == first and gone.row_count >= 12
        with pytest.raises(errors.NotFound):
            client.get_collection(first)
        with pytest.raises(errors.NotFound):
            client.search(first, "cats")
        with pytest.raises(errors.NotFound):
            client.delete_collection(first)
        assert first not in {c.name for c in client.list_collections()}

        for bad in ("bad name", "docs\n", "", "x" * 300):
            with pytest.raises(errors.InvalidArgument):
                client.get_collection(bad)
        with pytest.raises(errors.InvalidArgument, match="collection name"):  # a page token is a name
            client.collections.ListCollections(collections_pb2.ListCollectionsRequest(page_token="a;b"), timeout=30)

    audit = [json.loads(r.getMessage()) for r in caplog.records if r.name == "embedfleet.audit"]
    assert {"audit": "collection.delete", "target": first, "rows": str(gone.row_count)}.items() <= next(
        line for line in audit if line.get("target") == first
    ).items()

    # The CLI: --json listing, a refused delete without confirmation, then a confirmed one.
    code, out = _cli(celery_system, "--json", "collections", "get", second)
    assert code == 0 and json.loads(out)["row_count"] == 3
    code, out = _cli(celery_system, "collections", "delete", second)
    assert code == 1 and "Aborted" in out
    code, out = _cli(celery_system, "--json", "collections", "delete", second, "--yes")
    assert code == 0 and json.loads(out)["name"] == second
    code, out = _cli(celery_system, "collections", "get", second)
    assert code == 4 and "NOT_FOUND" in out
