"""The corpus side shared by the kinds that embed documents (index, embed): where the documents
come from, their validation, and staging them part by part while they stream in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from embedfleet import errors
from embedfleet.corpus import validate_document
from embedfleet.corpus_refs import read_rows
from embedfleet.domain import CorpusRef, Document, JobParams, ProgressUnit, ResultsRef
from embedfleet.gateway.context import ResolvedModel
from embedfleet.gateway.kinds.base import JobPlan, Submission, job_spec
from embedfleet.gateway.kinds.part_sizing import PartCutter, PartSizing, PartStarts
from embedfleet.gateway.kinds.references import CorpusReference, resolve_reference
from embedfleet.gateway.kinds.spill import ShardWriter
from embedfleet.gateway.kinds.unique_ids import IdDigests


@dataclass(frozen=True)
class DocumentPlan:
    """A document job's parts: ``starts`` (the first document of each) when they were sized by tokens,
    else ``size`` documents each."""

    total: int
    parts: int
    corpus: CorpusRef
    size: int = 0
    starts: tuple[int, ...] = ()
    # Where the parts record their ids' digests: set for a corpus by reference, whose ids the gateway never read.
    id_digests: ResultsRef | None = None

    def job(self, params: JobParams, model: ResolvedModel, display_name: str) -> JobPlan:
        """The job of these parts: its spec (counting documents) and its totals."""
        spec = job_spec(
            params,
            model,
            unit=ProgressUnit.DOCUMENTS,
            part_size=self.size,
            part_starts=self.starts,
            display_name=display_name,
        )
        return JobPlan(spec, total=self.total, parts=self.parts)


def plan_documents(
    sub: Submission, source_path: str, reference: CorpusReference | None, sizing: PartSizing
) -> DocumentPlan:
    """The parts and the corpus for the spec. Either way the workers read the corpus by reference: a
    referenced corpus is sized by tokens from its texts' lengths (Parquet: the text column's; JSONL: the
    lines', no line parsed); streamed documents (or a server-side file named by ``source.path``) are validated, cut
    into parts as they pass (``part_sizing.py``) and spilled to the dataset store.

    A referenced corpus is not bound by ``max_documents_per_job``: nothing of it passes through the
    gateway, while a streamed one is validated here document by document."""
    if reference is None:
        return spill_documents(sub, source_path, sizing)
    if source_path:
        raise errors.InvalidArgument("set source.path or source.uri, not both", "config.source.uri")
    starts = PartStarts(sizing) if sizing.by_tokens else None
    corpus = resolve_reference(sub.ctx, reference, starts.add if starts is not None else None)
    if corpus.rows == 0:
        raise errors.InvalidArgument(f"the corpus {reference.uri!r} has no rows", "config.source.uri")
    data = sub.stager.data
    digests = ResultsRef(filesystem=data.uri, directory=f"{data.job_dir(sub.stager.job_id)}/ids")
    if starts is not None:
        return DocumentPlan(corpus.rows, len(starts.starts), corpus, starts=starts.starts, id_digests=digests)
    return DocumentPlan(
        corpus.rows, -(-corpus.rows // sizing.documents), corpus, size=sizing.documents, id_digests=digests
    )


def spill_documents(sub: Submission, source_path: str, sizing: PartSizing) -> DocumentPlan:
    """Validate every document of the corpus (the server-side file when the request names one, else the
    streamed documents), cut it into parts and spill them to the job's shards, which become the job's
    corpus."""
    documents: Iterator[Document] = sub.ctx.server_corpus(source_path) if source_path else sub.documents
    limits = sub.ctx.settings
    shards = sub.stager.shards()
    parts = 0
    total = 0
    digests = IdDigests()
    buffer: list[Document] = []
    starts: list[int] = []
    cutter = PartCutter(sizing)
    for doc in documents:
        validate_document(doc, f"document {total}", limits.max_text_bytes, limits.max_metadata_bytes)
        total += 1
        if total > limits.max_documents_per_job:
            raise errors.ResourceExhausted(
                f"the job has more than {limits.max_documents_per_job} documents; split the corpus"
            )
        if not buffer:
            starts.append(total - 1)
        buffer.append(doc)
        if cutter.full_after(len(doc.text.encode())):
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
    if sizing.by_tokens:
        return DocumentPlan(total, parts, corpus, starts=tuple(starts))
    return DocumentPlan(total, parts, corpus, size=sizing.documents)


def _spill(documents: list[Document], shards: ShardWriter, digests: IdDigests) -> None:
    shards.write(documents)
    digests.add([d.id for d in documents])
