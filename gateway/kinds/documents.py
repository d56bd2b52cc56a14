"""The corpus side shared by the kinds that embed documents (index, embed): where the documents
come from, their validation, and staging them part by part while they stream in."""

from __future__ import annotations

from collections.abc import Iterator

from embedfleet import errors
from embedfleet.corpus import validate_document
from embedfleet.domain import Document
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.kinds.base import PartStager


def part_size(requested: int, ctx: GatewayContext) -> int:
    size = requested or ctx.settings.default_chunk_size
    if size > ctx.settings.max_chunk_size:
        raise errors.InvalidArgument(
            f"chunk_size {size} exceeds the limit {ctx.settings.max_chunk_size}", "config.chunk_size"
        )
    return size


def corpus(source_path: str, streamed: Iterator[Document], ctx: GatewayContext) -> Iterator[Document]:
    """The server-side file when the request names one, else the streamed documents."""
    return ctx.server_corpus(source_path) if source_path else streamed


def stage_documents(
    documents: Iterator[Document], size: int, ctx: GatewayContext, stager: PartStager
) -> tuple[int, int]:
    """Validate every document and stage them in parts of ``size``; returns (documents, parts)."""
    limits = ctx.settings
    parts = 0
    total = 0
    seen: dict[str, int] = {}
    buffer: list[Document] = []
    for doc in documents:
        where = f"document {total}"
        validate_document(doc, where, limits.max_text_bytes)
        if doc.id in seen:
            raise errors.InvalidArgument(
                f"{where}: id {doc.id!r} was already used by document {seen[doc.id]}; ids must be unique"
            )
        seen[doc.id] = total
        total += 1
        if total > limits.max_documents_per_job:
            raise errors.ResourceExhausted(
                f"the job has more than {limits.max_documents_per_job} documents; split the corpus"
            )
        buffer.append(doc)
        if len(buffer) == size:
            stager.stage(parts, buffer)
            parts += 1
            buffer = []
    if buffer:
        stager.stage(parts, buffer)
        parts += 1
    if total == 0:
        raise errors.InvalidArgument("the corpus is empty: send at least one document")
    return total, parts
