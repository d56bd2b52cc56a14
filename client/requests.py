"""Building v1 request messages from user arguments; shared by the sync and asyncio clients."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from embedfleet import wire
from embedfleet.corpus import document_from_record, read_corpus
from embedfleet.domain import Document, JobState
from embedfleet.v1 import collections_pb2, common_pb2, embed_pb2, jobs_pb2, keys_pb2, search_pb2

# A corpus is a JSONL/Parquet path; an iterable or generator of Document objects or {"id", "text",
# "metadata"} dicts; or a table: a pandas DataFrame, a pyarrow Table/RecordBatch, a pyarrow dataset, or
# a Hugging Face ``datasets.Dataset`` (its columns renamed to id/text/metadata where they differ; a
# streaming ``IterableDataset`` yields dicts). Tables are read batch by batch, never whole.
Corpus = str | Path | Iterable[Document | Mapping[str, Any]] | Any
TABLE_BATCH_ROWS = 4096

# Documents are streamed in batches of this many (or fewer, to stay under the byte budget).
BATCH_DOCUMENTS = 512
BATCH_BYTES = 2 * 1024 * 1024


def embedding_options(
    model: str = "",
    dimensions: int = 0,
    precision: str = "float32",
    input_type: str = "document",
    normalize: bool = True,
) -> common_pb2.EmbeddingOptions:
    return common_pb2.EmbeddingOptions(
        model=model,
        dimensions=dimensions,
        precision=wire.PRECISION.to_pb(wire.PRECISION.parse(precision, "precision")),  # type: ignore[arg-type]
        input_type=wire.INPUT_TYPE.to_pb(wire.INPUT_TYPE.parse(input_type, "input_type")),  # type: ignore[arg-type]
        normalize=normalize,
    )


def iter_documents(corpus: Corpus) -> Iterator[Document]:
    """The corpus's documents, lazily (a generator of ten million documents is never held in memory)."""
    if isinstance(corpus, str | Path):
        yield from read_corpus(corpus)
        return
    for position, item in enumerate(_records(corpus)):
        yield item if isinstance(item, Document) else document_from_record(dict(item), f"document {position}")


def _records(corpus: Any) -> Iterable[Any]:
    """Rows of a tabular corpus as Python dicts, one Arrow batch at a time; any other iterable as is."""
    import pyarrow as pa

    if isinstance(corpus, pa.RecordBatch):
        batches: Iterable[pa.RecordBatch] = [corpus]
    elif isinstance(corpus, pa.Table):
        batches = corpus.to_batches(max_chunksize=TABLE_BATCH_ROWS)
    elif hasattr(corpus, "to_batches") and hasattr(corpus, "schema"):  # pyarrow.dataset.Dataset / Scanner
        batches = corpus.to_batches(batch_size=TABLE_BATCH_ROWS)
    elif hasattr(corpus, "with_format") and hasattr(corpus, "features"):  # datasets.Dataset, in its own row order
        tables = corpus.with_format("arrow").iter(batch_size=TABLE_BATCH_ROWS)
        batches = (batch for table in tables for batch in table.to_batches())
    elif hasattr(corpus, "itertuples") and hasattr(corpus, "iloc"):  # pandas.DataFrame, via Arrow's types
        batches = (
            pa.RecordBatch.from_pandas(corpus.iloc[start : start + TABLE_BATCH_ROWS], preserve_index=False)
            for start in range(0, len(corpus), TABLE_BATCH_ROWS)
        )
    else:
        return corpus
    return (row for batch in batches for row in batch.to_pylist())


def document_batches(documents: Iterable[Document]) -> Iterator[common_pb2.DocumentBatch]:
    batch: list[common_pb2.Document] = []
    size = 0
    for doc in documents:
        batch.append(common_pb2.Document(id=doc.id, text=doc.text, metadata_json=doc.metadata_json))
        size += len(doc.text) + len(doc.metadata_json) + len(doc.id)
        if len(batch) >= BATCH_DOCUMENTS or size >= BATCH_BYTES:
            yield common_pb2.DocumentBatch(documents=batch)
            batch, size = [], 0
    if batch:
        yield common_pb2.DocumentBatch(documents=batch)


class RequestStream:
    """The messages of a Submit*Job call; keeps the error if reading the local corpus failed.

    gRPC reads the iterator on its own thread, where an exception only cancels the call; the
    client re-raises the stored error so the user sees "corpus.jsonl:12: not valid JSON", not
    "CANCELLED".
    """

    def __init__(self, first: Any, documents: Iterable[Document], wrap: type) -> None:
        self.first = first
        self.documents = documents
        self.wrap = wrap
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[Any]:
        yield self.first
        try:
            for batch in document_batches(self.documents):
                yield self.wrap(documents=batch)
        except BaseException as exc:
            self.error = exc
            raise


def vector_field(name: str, dimensions: int = 0, precision: str = "float32", bits: str = "") -> jobs_pb2.VectorField:
    """An extra representation for an index job, e.g. ``vector_field("bits", precision="binary")``;
    ``bits`` ("axes" or "rotated", binary fields only; "" the collection's or the model's default)."""
    code = wire.PRECISION.to_pb(wire.PRECISION.parse(precision, "precision"))
    basis = wire.BIT_BASIS.to_pb(wire.BIT_BASIS.parse(bits, "bits")) if bits else 0
    return jobs_pb2.VectorField(name=name, dimensions=dimensions, precision=code, bits=basis)  # type: ignore[arg-type]


def index_spec(index: Mapping[str, Any] | None) -> jobs_pb2.IndexSpec:
    """A collection's index, e.g. ``{"type": "HNSW", "params": {"M": 16, "efConstruction": 200}}``
    (None or {}: the existing collection's, or AUTOINDEX)."""
    index = index or {}
    params = {str(k): int(v) for k, v in dict(index.get("params") or {}).items()}
    return jobs_pb2.IndexSpec(type=str(index.get("type", "")), params=params)


def corpus_source(
    server_path: str = "", source_uri: str = "", columns: Mapping[str, str] | None = None
) -> jobs_pb2.CorpusSource:
    """Where the gateway finds the corpus: a server-side file, or a corpus by reference (``source_uri``,
    read by the workers) whose record fields ``columns`` may rename, e.g. ``{"text": "passage"}``."""
    names = dict(columns or {})
    unknown = set(names) - {"id", "text", "metadata"}
    if unknown:
        raise ValueError(f"columns may rename id, text and metadata, not {sorted(unknown)}")
    return jobs_pb2.CorpusSource(
        path=server_path,
        uri=source_uri,
        id_column=names.get("id", ""),
        text_column=names.get("text", ""),
        metadata_column=names.get("metadata", ""),
    )


def index_stream(
    corpus: Corpus | None,
    collection: str,
    options: common_pb2.EmbeddingOptions,
    *,
    server_path: str = "",
    source_uri: str = "",
    columns: Mapping[str, str] | None = None,
    chunk_size: int = 0,
    display_name: str = "",
    extra_fields: Iterable[Mapping[str, Any]] = (),
    index: Mapping[str, Any] | None = None,
    dedup: Mapping[str, Any] | None = None,
) -> RequestStream:
    config = jobs_pb2.IndexJobConfig(
        collection=collection,
        embedding=options,
        source=corpus_source(server_path, source_uri, columns),
        chunk_size=chunk_size,
        display_name=display_name,
        extra_fields=[vector_field(**dict(f)) for f in extra_fields],
        index=index_spec(index),
        dedup=ingest_dedup(dedup),
    )
    documents = iter_documents(corpus) if corpus is not None else iter(())
    return RequestStream(jobs_pb2.SubmitIndexJobRequest(config=config), documents, jobs_pb2.SubmitIndexJobRequest)


def embed_stream(
    corpus: Corpus | None,
    options: common_pb2.EmbeddingOptions,
    *,
    server_path: str = "",
    source_uri: str = "",
    columns: Mapping[str, str] | None = None,
    output_uri: str = "",
    chunk_size: int = 0,
    display_name: str = "",
) -> RequestStream:
    config = jobs_pb2.EmbedJobConfig(
        embedding=options,
        source=corpus_source(server_path, source_uri, columns),
        chunk_size=chunk_size,
        display_name=display_name,
        output_uri=output_uri,
    )
    documents = iter_documents(corpus) if corpus is not None else iter(())
    return RequestStream(jobs_pb2.SubmitEmbedJobRequest(config=config), documents, jobs_pb2.SubmitEmbedJobRequest)


def distill_request(
    student_name: str,
    texts: Iterable[str] = (),
    *,
    teacher: str = "",
    keep_layers: int = 0,
    init_model: str = "",
    server_path: str = "",
    max_steps: int = 0,
    batch_size: int = 0,
    learning_rate: float = 0.0,
    matryoshka_dimensions: Iterable[int] = (),
    min_quality_fraction: float = 0.0,
    eval_limit: int = 0,
    display_name: str = "",
) -> jobs_pb2.SubmitDistillJobRequest:
    return jobs_pb2.SubmitDistillJobRequest(
        config=jobs_pb2.DistillJobConfig(
            teacher=teacher,
            student_name=student_name,
            keep_layers=keep_layers,
            init_model=init_model,
            source=jobs_pb2.CorpusSource(path=server_path),
            texts=list(texts),
            max_steps=max_steps,
            batch_size=batch_size,
            learning_rate=learning_rate,
            matryoshka_dimensions=list(matryoshka_dimensions),
            min_quality_fraction=min_quality_fraction,
            eval_limit=eval_limit,
            display_name=display_name,
        )
    )


def evaluate_request(
    model: str, *, dimensions: Iterable[int] = (), teacher: str = "", eval_limit: int = 0, display_name: str = ""
) -> jobs_pb2.SubmitEvaluateJobRequest:
    return jobs_pb2.SubmitEvaluateJobRequest(
        config=jobs_pb2.EvaluateJobConfig(
            model=model, dimensions=list(dimensions), teacher=teacher, eval_limit=eval_limit, display_name=display_name
        )
    )


def embed_request(
    texts: Sequence[str],
    *,
    model: str = "",
    dimensions: int = 0,
    precision: str = "float32",
    input_type: str = "document",
    normalize: bool = True,
) -> embed_pb2.EmbedRequest:
    """An interactive Embed of a few texts."""
    options = embedding_options(model, dimensions, precision, input_type, normalize)
    return embed_pb2.EmbedRequest(texts=list(texts), options=options)


def search_request(
    collection: str,
    queries: Sequence[str],
    *,
    top_k: int = 10,
    filter: str = "",
    mode: str = "full",
    candidates: int = 0,
    ef: int = 0,
    nprobe: int = 0,
) -> search_pb2.SearchRequest:
    """A Search of one or more query texts; ``mode`` is full, funnel or binary (see SearchMode)."""
    code = wire.SEARCH_MODE.to_pb(wire.SEARCH_MODE.parse(mode, "mode"))
    return search_pb2.SearchRequest(
        collection=collection,
        queries=list(queries),
        top_k=top_k,
        filter=filter,
        mode=code,  # type: ignore[arg-type]
        candidates=candidates,
        ef=ef,
        nprobe=nprobe,
    )


def list_jobs_request(state: JobState | None, page_size: int, page_token: str) -> jobs_pb2.ListJobsRequest:
    code = wire.JOB_STATE.to_pb(state) if state else jobs_pb2.JOB_STATE_UNSPECIFIED
    return jobs_pb2.ListJobsRequest(page_size=page_size, page_token=page_token, state=code)  # type: ignore[arg-type]


def dedup_request(
    collection: str,
    threshold: float,
    *,
    mode: str = "partitioned",
    policy: str = "first",
    filter: str = "",
    model: str = "",
    partitions: int = 0,
    n_probe: int = 0,
    parts: int = 0,
    text_pass: bool = True,
    delete: bool = False,
    display_name: str = "",
    mutual: bool = False,
) -> jobs_pb2.SubmitDedupJobRequest:
    """A dedup job: a dry run unless ``delete`` is True (then the removed rows are deleted from Milvus)."""
    return jobs_pb2.SubmitDedupJobRequest(
        config=jobs_pb2.DedupJobConfig(
            collection=collection,
            threshold=threshold,
            mode=wire.DEDUP_MODE.to_pb(wire.DEDUP_MODE.parse(mode, "mode")),  # type: ignore[arg-type]
            policy=wire.KEEP_POLICY.to_pb(wire.KEEP_POLICY.parse(policy, "policy")),  # type: ignore[arg-type]
            filter=filter,
            model=model,
            partitions=partitions,
            n_probe=n_probe,
            parts=parts,
            skip_text_pass=not text_pass,
            action=jobs_pb2.DEDUP_ACTION_DELETE if delete else jobs_pb2.DEDUP_ACTION_DRY_RUN,
            display_name=display_name,
            mutual_best=mutual,
        )
    )


def dedup_groups_request(job_id: str, page_size: int, page_token: str) -> jobs_pb2.GetDedupGroupsRequest:
    return jobs_pb2.GetDedupGroupsRequest(job_id=job_id, page_size=page_size, page_token=page_token)


def ingest_dedup(options: Mapping[str, Any] | None) -> jobs_pb2.IngestDedup | None:
    """Dedup on ingest, e.g. ``{"threshold": 0.95, "action": "mark"}`` (action skip by default)."""
    if options is None:
        return None
    action = wire.INGEST_DEDUP_ACTION.parse(str(options.get("action", "skip")), "dedup.action")
    return jobs_pb2.IngestDedup(
        threshold=float(options["threshold"]),
        action=wire.INGEST_DEDUP_ACTION.to_pb(action),  # type: ignore[arg-type]
    )


def cluster_request(
    collection: str,
    *,
    method: str = "kmeans",
    k: int = 0,
    filter: str = "",
    k_min: int = 0,
    k_max: int = 0,
    sample_size: int = 0,
    min_cluster_size: int = 0,
    min_samples: int = 0,
    top_terms: int = 0,
    representatives: int = 0,
    model: str = "",
    seed: int = 0,
    display_name: str = "",
) -> jobs_pb2.SubmitClusterJobRequest:
    """A cluster job: ``method`` kmeans (``k``, or k = 0 to choose it in [k_min, k_max]) or hdbscan."""
    code = wire.CLUSTER_METHOD.to_pb(wire.CLUSTER_METHOD.parse(method, "method"))
    return jobs_pb2.SubmitClusterJobRequest(
        config=jobs_pb2.ClusterJobConfig(
            collection=collection,
            filter=filter,
            method=code,  # type: ignore[arg-type]
            k=k,
            k_min=k_min,
            k_max=k_max,
            sample_size=sample_size,
            min_cluster_size=min_cluster_size,
            min_samples=min_samples,
            top_terms=top_terms,
            representatives=representatives,
            model=model,
            seed=seed,
            display_name=display_name,
        )
    )


def list_collections_request(page_size: int, page_token: str) -> collections_pb2.ListCollectionsRequest:
    return collections_pb2.ListCollectionsRequest(page_size=page_size, page_token=page_token)


def list_clusters_request(job_id: str, page_size: int, page_token: str) -> jobs_pb2.ListClustersRequest:
    return jobs_pb2.ListClustersRequest(job_id=job_id, page_size=page_size, page_token=page_token)


def cluster_assignments_request(
    job_id: str, cluster: int | None, page_size: int, page_token: str
) -> jobs_pb2.ListClusterAssignmentsRequest:
    request = jobs_pb2.ListClusterAssignmentsRequest(job_id=job_id, page_size=page_size, page_token=page_token)
    if cluster is not None:
        request.cluster_id = cluster
    return request


def create_key_request(role: str, name: str) -> keys_pb2.CreateKeyRequest:
    """``role`` as a person spells it: reader, writer or admin."""
    return keys_pb2.CreateKeyRequest(role=wire.ROLE.to_pb(wire.ROLE.parse(role, "role")), name=name)  # type: ignore[arg-type]
