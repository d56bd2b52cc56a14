"""An OpenAI-compatible HTTP endpoint beside gRPC: ``POST /v1/embeddings`` and ``GET /v1/models``.

The OpenAI embeddings API is what TEI and infinity also speak, so LangChain, LlamaIndex and every
RAG tool that takes an OpenAI base URL work unchanged when pointed here. Requests are converted and
handed to the same ``EmbedCore`` as gRPC ``Embed`` (same validation, limits, workers and errors);
only the transport differs. Errors use OpenAI's shape (``{"error": {"message", "type", "param",
"code"}}``) with the HTTP status for the gRPC code of the same domain error (one table below).

``usage`` reports 0 tokens: token counts are not returned by the workers yet.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np

from embedfleet import errors
from embedfleet.domain import EmbeddingOptions, Precision
from embedfleet.gateway.auth import Gate
from embedfleet.gateway.embedding import EmbedCore
from embedfleet.gateway.errors import status_for
from embedfleet.gateway.models import ModelsCore
from embedfleet.wire import unpack_vectors

log = logging.getLogger(__name__)

HTTP_BY_CODE: dict[grpc.StatusCode, HTTPStatus] = {
    grpc.StatusCode.INVALID_ARGUMENT: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.NOT_FOUND: HTTPStatus.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION: HTTPStatus.BAD_REQUEST,
    grpc.StatusCode.RESOURCE_EXHAUSTED: HTTPStatus.TOO_MANY_REQUESTS,
    grpc.StatusCode.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: HTTPStatus.GATEWAY_TIMEOUT,
    grpc.StatusCode.UNAUTHENTICATED: HTTPStatus.UNAUTHORIZED,
    grpc.StatusCode.PERMISSION_DENIED: HTTPStatus.FORBIDDEN,
}
ENCODINGS = ("float", "base64")
# The gRPC method whose role and quotas an HTTP route has (any other path: a reader's, then NOT_FOUND).
GATED_RPCS = {
    ("POST", "/v1/embeddings"): "embedfleet.v1.EmbedService/Embed",
    ("GET", "/v1/models"): "embedfleet.v1.ModelService/ListModels",
}


@dataclass(frozen=True)
class EmbeddingsRequest:
    texts: list[str]
    options: EmbeddingOptions
    encoding: str


def parse_embeddings_request(body: Any) -> EmbeddingsRequest:
    """OpenAI's request body -> texts and options; what embedfleet cannot honour is refused by name."""
    if not isinstance(body, dict):
        raise errors.InvalidArgument("the request body must be a JSON object", "body")
    raw = body.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        texts = list(raw)
    elif isinstance(raw, list) and raw and all(isinstance(t, int | list) for t in raw):
        raise errors.InvalidArgument("token arrays are not supported: send the input as text", "input")
    else:
        raise errors.InvalidArgument("input must be a string or a non-empty list of strings", "input")
    model = body.get("model", "")
    if not isinstance(model, str):
        raise errors.InvalidArgument("model must be a string", "model")
    dimensions = body.get("dimensions", 0) or 0
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 0:
        raise errors.InvalidArgument("dimensions must be a positive integer", "dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODINGS:
        raise errors.InvalidArgument(f"encoding_format must be one of {', '.join(ENCODINGS)}", "encoding_format")
    return EmbeddingsRequest(texts, EmbeddingOptions(model=model, dimensions=dimensions), encoding)


def embeddings_response(request: EmbeddingsRequest, embedder: EmbedCore) -> dict[str, Any]:
    result = embedder.embed(request.texts, request.options)
    if request.encoding == "base64":  # little-endian float32 bytes, as OpenAI sends them
        items: list[Any] = [
            base64.b64encode(result.data[i * result.dimensions * 4 : (i + 1) * result.dimensions * 4]).decode()
            for i in range(result.rows)
        ]
    else:
        vectors = unpack_vectors(result.data, result.rows, result.dimensions, Precision.FLOAT32)
        items = np.asarray(vectors, dtype=np.float64).tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": item} for i, item in enumerate(items)],
        "model": result.model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def models_response(models: ModelsCore) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": m.spec.name, "object": "model", "created": 0, "owned_by": "embedfleet"} for m in models.list()],
    }


def error_body(exc: BaseException) -> tuple[HTTPStatus, dict[str, Any]]:
    code, message = status_for(exc)
    status = HTTP_BY_CODE.get(code, HTTPStatus.INTERNAL_SERVER_ERROR)
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        log.exception("unexpected error in an OpenAI-compatible request")
    error = {"message": message, "type": code.name.lower(), "param": getattr(exc, "field", "") or None, "code": None}
    return status, {"error": error}


class OpenAIEndpoint:
    """A threaded HTTP server on ``host:port`` (port 0 picks one; see ``port``)."""

    def __init__(
        self,
        embedder: EmbedCore,
        models: ModelsCore,
        host: str,
        port: int,
        max_body_bytes: int,
        gate: Gate | None = None,
    ) -> None:
        """``gate``: the gRPC services' tenant gate; each request passes it as the RPC of the same work
        (its ``Authorization: Bearer`` header is the API key)."""
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("openai http: " + format, *args)

            def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _route(self, method: str) -> dict[str, Any]:
                path = self.path.split("?", 1)[0].rstrip("/")
                if endpoint.gate is not None:
                    rpc = GATED_RPCS.get((method, path), "embedfleet.v1.ModelService/ListModels")
                    endpoint.gate.admit(rpc, list(self.headers.items()))
                if method == "GET" and path == "/v1/models":
                    return models_response(endpoint.models)
                if method == "POST" and path == "/v1/embeddings":
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > endpoint.max_body_bytes:
                        raise errors.ResourceExhausted(f"the request body is over {endpoint.max_body_bytes} bytes")
                    try:
                        body = json.loads(self.rfile.read(length) or b"null")
                    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                        raise errors.InvalidArgument("the request body is not valid JSON", "body") from None
                    return embeddings_response(parse_embeddings_request(body), endpoint.embedder)
                raise errors.NotFound(f"no such endpoint: {method} {path or '/'} (serving /v1/embeddings, /v1/models)")

            def _handle(self, method: str) -> None:
                try:
                    self._send(HTTPStatus.OK, self._route(method))
                except Exception as exc:
                    self._send(*error_body(exc))

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.embedder = embedder
        self.models = models
        self.gate = gate
        self.max_body_bytes = max_body_bytes
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedfleet-openai", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
