"""Every bad input gets the right gRPC status and a message a person can act on."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import grpc
import pytest

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.errors import InvalidArgument, NotFound
from embedfleet.local import LocalCluster
from embedfleet.v1 import jobs_pb2


def _status(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


DOC = {"id": "a", "text": "hello"}


def _with_metadata(metadata_json: str) -> list[dict[str, str]]:
    """One document whose metadata goes to the gateway as this exact JSON text."""
    return [{"id": "a", "text": "hello", "metadata": metadata_json}]


@pytest.mark.parametrize(
    ("name", "call", "code", "message"),
    [
        ("empty corpus", lambda c: c.submit_index([], "e2e_errors"), "INVALID_ARGUMENT", "the corpus is empty"),
        (
            "empty text",
            lambda c: c.submit_embed([DOC, {"id": "b", "text": "   "}]),
            "INVALID_ARGUMENT",
            "document 1: document 'b' text is empty",
        ),
        (
            "duplicate id",
            lambda c: c.submit_embed([DOC, DOC]),
            "INVALID_ARGUMENT",
            "id 'a' was already used by document 0",
        ),
        ("unknown model", lambda c: c.submit_embed([DOC], model="gpt-9"), "NOT_FOUND", "unknown model 'gpt-9'"),
        (
            "unsupported dimension",
            lambda c: c.submit_embed([DOC], dimensions=100),
            "INVALID_ARGUMENT",
            "cannot output 100 dimensions; supported: 384",
        ),
        ("bad collection name", lambda c: c.submit_index([DOC], "no-dashes"), "INVALID_ARGUMENT", "is invalid"),
        ("unknown collection", lambda c: c.search("e2e_missing", "q"), "NOT_FOUND", "does not exist"),
        ("unknown job", lambda c: c.get_job("0" * 32), "NOT_FOUND", "does not exist"),
        ("unknown job watch", lambda c: list(c.watch("0" * 32)), "NOT_FOUND", "does not exist"),
        ("unknown job cancel", lambda c: c.cancel_job("0" * 32), "NOT_FOUND", "does not exist"),
        ("empty job id", lambda c: c.get_job(""), "INVALID_ARGUMENT", "job_id must be"),
        (
            "text too large",
            lambda c: c.submit_embed([{"id": "a", "text": "x" * (1024 * 1024 + 1)}]),
            "RESOURCE_EXHAUSTED",
            "the limit is 1048576",
        ),
        ("too many texts", lambda c: c.embed(["x"] * 257), "RESOURCE_EXHAUSTED", "exceed the Embed limit of 256"),
        ("empty embed", lambda c: c.embed([]), "INVALID_ARGUMENT", "texts is empty"),
        ("empty text embed", lambda c: c.embed(["ok", ""]), "INVALID_ARGUMENT", "text 1"),
        (
            "server path outside",
            lambda c: c.submit_embed(None, server_path="/etc/passwd"),
            "FAILED_PRECONDITION",
            "outside the gateway's allowed corpus dirs",
        ),
        (
            "distill: too few texts",
            lambda c: c.submit_distill("s1", ["one", "two"]),
            "INVALID_ARGUMENT",
            "at least 4 non-empty texts",
        ),
        (
            "distill: unknown teacher",
            lambda c: c.submit_distill("s1", ["t"] * 8, teacher="gpt-9"),
            "NOT_FOUND",
            "gpt-9",
        ),
        ("distill: bad name", lambda c: c.submit_distill("no/slash", ["t"] * 8), "INVALID_ARGUMENT", "student_name"),
        (
            "distill: configured name",
            lambda c: c.submit_distill("all-MiniLM-L6-v2", ["t"] * 8),
            "FAILED_PRECONDITION",
            "is a configured model",
        ),
        (
            "distill: bad mrl dim",
            lambda c: c.submit_distill("s1", ["t"] * 8, matryoshka_dimensions=[512]),
            "INVALID_ARGUMENT",
            "between 1 and 383",
        ),
        ("evaluate: bad dim", lambda c: c.submit_evaluate("teacher", dimensions=[100]), "INVALID_ARGUMENT", "100"),
        (
            "metadata nested deeply",
            lambda c: c.submit_embed(_with_metadata('{"a": ' + "[" * 5000 + "]" * 5000 + "}")),
            "INVALID_ARGUMENT",
            "nested more than 32 levels",
        ),
        (
            "metadata nested past the depth limit",
            lambda c: c.submit_embed(_with_metadata('{"a": ' + "[" * 40 + "]" * 40 + "}")),
            "INVALID_ARGUMENT",
            "nested more than 32 levels",
        ),
        (
            "metadata lone surrogate",
            lambda c: c.submit_index(_with_metadata('{"k": "\\ud800"}'), "e2e_surrogate"),
            "INVALID_ARGUMENT",
            "not valid UTF-8",
        ),
        ("metadata NaN", lambda c: c.submit_embed(_with_metadata('{"k": NaN}')), "INVALID_ARGUMENT", "NaN"),
        ("metadata 1e400", lambda c: c.submit_embed(_with_metadata('{"k": 1e400}')), "INVALID_ARGUMENT", "double"),
        (
            "metadata 2 MB",
            lambda c: c.submit_embed(_with_metadata(json.dumps({"k": "x" * 2_000_000}))),
            "RESOURCE_EXHAUSTED",
            "the limit is 65536",
        ),
        (
            "query too long",
            lambda c: c.search("e2e_missing", "x" * (1024 * 1024 + 1)),
            "RESOURCE_EXHAUSTED",
            "query is 1048577 bytes",
        ),
        (
            "NUL in server path",
            lambda c: c.submit_embed(None, server_path="/tmp/a\x00b.jsonl"),
            "INVALID_ARGUMENT",
            "NUL byte",
        ),
        (
            "relative server path",
            lambda c: c.submit_embed(None, server_path="corpus.jsonl"),
            "INVALID_ARGUMENT",
            "is relative",
        ),
        (
            "bad page token",
            lambda c: c.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_token="zz")),
            "INVALID_ARGUMENT",
            "page_token",
        ),
    ],
)
def test_status_codes(client: EmbedfleetClient, name: str, call, code: str, message: str) -> None:  # type: ignore[no-untyped-def]
    got_code, details = _status(lambda: call(client))
    assert got_code.name == code, details
    assert message in details
    if name == "query too long":
        assert "document" not in details


def test_ids_naming_other_keys_of_a_real_job_are_refused(client: EmbedfleetClient) -> None:
    """``<id>:chunks`` is the key of the job's part hash: it must never be read as a job."""
    job = client.submit_embed([DOC])
    calls = (client.get_job, client.cancel_job, lambda i: list(client.watch(i)), lambda i: list(client.results(i)))
    for bad in (f"{job.id}:chunks", f"{job.id}:events", job.id.upper()):
        for call in calls:
            code, details = _status(functools.partial(call, bad))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "job_id must be the 32 lowercase hex" in details


def test_server_paths_say_nothing_of_the_gateway_filesystem(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    corpora = cluster.corpus_dirs[0]
    long_path = str(corpora / ".." / ("x" * 10_000))
    code, details = _status(lambda: client.submit_embed(None, server_path=long_path))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "outside" in details and len(details) < 300
    for outside in ("/etc/passwd", "/etc/no-such-file"):  # existing or not: the same answer
        code, details = _status(functools.partial(client.submit_embed, None, server_path=outside))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert details == f"corpus path {outside!r} is outside the gateway's allowed corpus dirs"
    inside = f"{corpora}/../{corpora.name}/no.jsonl"
    code, details = _status(lambda: client.submit_embed(None, server_path=inside))
    assert code == grpc.StatusCode.NOT_FOUND and str(corpora / "no.jsonl") in details


def test_results_of_an_index_job_are_refused(client: EmbedfleetClient) -> None:
    job = client.submit_index([DOC], "e2e_results_refused")
    code, details = _status(lambda: list(client.results(job.id)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "only embed jobs have results" in details


def test_server_side_file_errors_name_the_line(client: EmbedfleetClient, cluster: LocalCluster) -> None:
    corpora = cluster.corpus_dirs[0]
    corpora.mkdir(parents=True, exist_ok=True)
    code, details = _status(lambda: client.submit_embed(None, server_path=str(corpora / "missing.jsonl")))
    assert code == grpc.StatusCode.NOT_FOUND and "missing.jsonl" in details
    bad = corpora / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "fine"}\n{"id": "b" "text": "x"}\n')
    code, details = _status(lambda: client.submit_embed(None, server_path=str(bad)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "bad.jsonl:2: not valid JSON" in details


def test_local_file_errors_are_raised_as_they_happened(client: EmbedfleetClient, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        client.submit_embed(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    good = "".join(f'{{"id": "{i}", "text": "fine"}}\n' for i in range(600))
    bad.write_text(good + "{oops\n")  # the error comes after a batch was streamed
    with pytest.raises(InvalidArgument, match=r"bad\.jsonl:601: not valid JSON"):
        client.submit_embed(bad)
