"""The corpus side shared by the kinds that embed documents (index, embed): where the documents
come from, their validation, and staging them part by part while they stream in."""

from __future__ import annotations

from collections.abc import Iterator

from embedfleet import errors
from embedfleet.corpus import validate_document
from embedfleet.corpus_refs import read_rows
from embedfleet.domain import CorpusRef, Document
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.kinds.base import Submission
from embedfleet.gateway.kinds.references import CorpusReference, resolve_reference
from embedfleet.gateway.kinds.spill import ShardWriter
from embedfleet.gateway.kinds.unique_ids import IdDigests


def part_size(requested: int, ctx: GatewayContext) -> int:
    size = requested or ctx.settings.default_chunk_size
    if size > ctx.settings.max_chunk_size:
        raise errors.InvalidArgument(
            f"chunk_size {size} exceeds the limit {ctx.settings.max_chunk_size}", "config.chunk_size"
        )
    return size


def plan_documents(
    sub: Submission, source_path: str, reference: CorpusReference | None, size: int
) -> tuple[int, int, CorpusRef]:
    """(documents, parts, the corpus for the spec). Either way the workers read the corpus by
    reference: a referenced corpus is planned from its files' row counts, streamed documents (or a
    server-side file named by ``source.path``) are validated and spilled to the dataset store.

    A referenced corpus is not bound by ``max_documents_per_job``: nothing of it passes through the
    gateway, while a streamed one is validated here document by document."""
    if reference is None:
        return spill_documents(sub, source_path, size)
    if source_path:
        raise errors.InvalidArgument("set source.path or source.uri, not both", "config.source.uri")
    corpus = resolve_reference(sub.ctx, reference)
    if corpus.rows == 0:
        raise errors.InvalidArgument(f"the corpus {reference.uri!r} has no rows", "config.source.uri")
    return corpus.rows, -(-corpus.rows // size), corpus


def spill_documents(sub: Submission, source_path: str, size: int) -> tuple[int, int, CorpusRef]:
    """Validate every document of the corpus (the server-side file when the request names one, else the
    streamed documents) and spill them in parts of ``size`` to the job's shards; returns (documents,
    parts, the shards as the job's corpus)."""
    documents: Iterator[Document] = sub.ctx.server_corpus(source_path) if source_path else sub.documents
    limits = sub.ctx.settings
    shards = sub.stager.shards()
    parts = 0
    total = 0
    digests = IdDigests()
    buffer: list[Document] = []
    for doc in documents:
        validate_document(doc, f"document {total}", limits.max_text_bytes, limits.max_metadata_bytes)
        total += 1
        if total > limits.max_documents_per_job:
            raise errors.ResourceExhausted(
                f"the job has more than {limits.max_documents_per_job} documents; split the corpus"
            )
        buffer.append(doc)
        if len(buffer) == size:
            _spill(buffer, shards, digests)
            parts += 1
            buffer = []
    if buffer:
        _spill(buffer, shards, digests)
        parts += 1
    if total == 0:
        raise errors.InvalidArgument("the corpus is empty: send at least one document")
    corpus = shards.close(limits.max_text_bytes, limits.max_metadata_bytes)
    repeat = digests.first_repeat(lambda position: read_rows(corpus, position, 1)[0].id)
    if repeat is not None:
        first, second, doc_id = repeat
        raise errors.InvalidArgument(
            f"document {second}: id {errors.echo(doc_id)} was already used by document {first}; ids must be unique"
        )
    return total, parts, corpus


def _spill(documents: list[Document], shards: ShardWriter, digests: IdDigests) -> None:
    shards.write(documents)
    digests.add([d.id for d in documents])
