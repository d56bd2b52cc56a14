"""The OpenAI-compatible endpoint against the real system, with the official `openai` client and
plain HTTP: same vectors as gRPC Embed, both encodings, and OpenAI-shaped errors."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.gateway.server import RunningGateway, start_gateway
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.local import LocalCluster


@pytest.fixture(scope="module")
def gateway(celery_system: LocalCluster) -> Iterator[RunningGateway]:
    """A second gateway of the Celery deployment, with the HTTP endpoint on a free loopback port."""
    settings = GatewaySettings(
        redis_url=celery_system.redis_url,
        key_prefix=celery_system.key_prefix,
        milvus_uri=celery_system.milvus_uri,
        backend="celery",
        port=0,
        openai_port=0,
        auth=False,
    )
    running = start_gateway(settings)
    yield running
    running.stop()


def _url(gateway: RunningGateway, path: str) -> str:
    assert gateway.openai is not None
    return f"http://127.0.0.1:{gateway.openai.port}{path}"


def test_openai_client_gets_the_same_vectors_as_grpc(gateway: RunningGateway, celery_system: LocalCluster) -> None:
    texts = ["a cat sat on the mat", "stock markets fell sharply"]
    oa = openai.OpenAI(base_url=_url(gateway, "/v1"), api_key="unused", max_retries=0)
    floats = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    b64 = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format="base64")
    with EmbedfleetClient(celery_system.gateway_address) as client:
        expected = client.embed(texts).vectors
    got = np.asarray([d.embedding for d in floats.data], dtype=np.float32)
    assert got.shape == (2, 384) and np.allclose(got, expected, atol=1e-6)
    assert floats.model == "all-MiniLM-L6-v2" and [d.index for d in floats.data] == [0, 1]
    # base64 is OpenAI's layout: little-endian float32 bytes (the worker's, passed through).
    decoded = np.stack([np.frombuffer(base64.b64decode(str(d.embedding)), "<f4") for d in b64.data])
    assert np.array_equal(decoded, expected)
    assert [m.id for m in oa.models.list()] == ["all-MiniLM-L6-v2"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "all-MiniLM-L6-v2", "input": []}, 400, "input"),
        ({"model": "all-MiniLM-L6-v2", "input": [[1, 2, 3]]}, 400, "input"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 7}, 400, None),
        ({"model": "text-embedding-3-small", "input": "x"}, 404, None),
        ({"model": "all-MiniLM-L6-v2", "input": [""]}, 400, "texts"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(
    gateway: RunningGateway, body: dict[str, object], status: int, param: str | None
) -> None:
    request = urllib.request.Request(
        _url(gateway, "/v1/embeddings"), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=30)
    assert info.value.code == status
    error = json.loads(info.value.read())["error"]
    assert error["message"] and error["param"] == param


def test_not_json_and_unknown_paths(gateway: RunningGateway) -> None:
    bad = urllib.request.Request(_url(gateway, "/v1/embeddings"), data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(bad, timeout=30)
    assert info.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(_url(gateway, "/v1/chat/completions"), timeout=30)
    assert missing.value.code == 404
