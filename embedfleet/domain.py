"""Plain, transport-free types of the job domain.

The gateway converts protobuf messages into these and back; the worker and both queue backends
only ever see these. Keeping them here (and not the generated messages) is what lets the job logic
stay independent of gRPC, Celery and Ray.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobKind(StrEnum):
    INDEX = "index"
    EMBED = "embed"
    DISTILL = "distill"
    EVALUATE = "evaluate"
    DEDUP = "dedup"
    CLUSTER = "cluster"


class SearchMode(StrEnum):
    """How a search uses a collection's fields (see ``gateway/search``)."""

    FULL = "full"
    FUNNEL = "funnel"
    BINARY = "binary"


class InputType(StrEnum):
    QUERY = "query"
    DOCUMENT = "document"


class Precision(StrEnum):
    FLOAT32 = "float32"
    FLOAT16 = "float16"
    INT8 = "int8"
    BINARY = "binary"


class BitBasis(StrEnum):
    """What a stored bit field's bits are the signs of: the vector's own coordinates (``axes``), or its
    coordinates after a fixed random orthogonal rotation (``rotated``, ``vectors.bit_rotation``). A
    Matryoshka model puts most of a vector's variance in its leading coordinates, so their signs carry
    far more of it than the trailing ones; a rotation spreads it evenly over the bits (measured: recall
    of a 100-candidate binary shortlist 0.756 -> 0.945 on a distilled MRL student, and within 0.01 either
    way on MiniLM, a model in its own space: bench/RESULTS.md, "Rotated bits")."""

    AXES = "axes"
    ROTATED = "rotated"


class EmbeddingOptions(BaseModel):
    """How text becomes a vector; resolved against the registry before a job is stored."""

    model_config = ConfigDict(frozen=True)

    model: str = ""
    dimensions: int = 0
    precision: Precision = Precision.FLOAT32
    input_type: InputType = InputType.DOCUMENT
    normalize: bool = True


class VectorField(BaseModel):
    """An extra representation an index job writes next to the main vector, as the client asks for it
    (``dimensions`` 0 means the model's full width)."""

    model_config = ConfigDict(frozen=True)

    name: str
    dimensions: int = 0
    precision: Precision = Precision.FLOAT32
    # None: the existing collection's basis, else the model's default (``milvus.stored_fields``).
    bits: BitBasis | None = None


class StoredField(BaseModel):
    """An extra representation as a collection stores it: dimensions resolved against the model, never 0;
    ``bits`` is ``axes`` for every field that is not binary (and for collections made before it was kept)."""

    model_config = ConfigDict(frozen=True)

    name: str
    dimensions: int
    precision: Precision
    bits: BitBasis = BitBasis.AXES

    def describe(self) -> str:
        """``bits(384, binary, rotated)``: the field as messages and listings name it."""
        rotated = ", rotated" if self.bits == BitBasis.ROTATED else ""
        return f"{self.name}({self.dimensions}, {self.precision.value}{rotated})"


class IndexSpec(BaseModel):
    """How a collection's float vector fields are indexed (metric COSINE), fixed at its creation.

    ``type`` "" means "the collection's index" (AUTOINDEX for a new collection); the gateway fills in
    the type's default parameters, so two specs that build the same index compare equal.
    """

    model_config = ConfigDict(frozen=True)

    type: str = ""
    params: dict[str, int] = Field(default_factory=dict)

    def __hash__(self) -> int:  # a binding holding it is cached by value (the sink's set of checked ones)
        return hash((self.type, tuple(sorted(self.params.items()))))


# What a collection is indexed with unless a job asks otherwise (and what older collections have).
DEFAULT_INDEX = IndexSpec(type="AUTOINDEX")


class Document(BaseModel):
    """One corpus record. ``metadata`` is kept as JSON text end to end so numbers survive intact."""

    model_config = ConfigDict(frozen=True)

    id: str
    text: str
    metadata_json: str = ""

    def metadata(self) -> dict[str, Any]:
        return json.loads(self.metadata_json) if self.metadata_json else {}


class CorpusFormat(StrEnum):
    PARQUET = "parquet"
    JSONL = "jsonl"


class SeekPoint(BaseModel):
    """Where row ``row`` of an uncompressed JSONL file starts: its byte offset and line number (from 1),
    so a part that starts deep in a large file seeks there instead of reading every line before it."""

    model_config = ConfigDict(frozen=True)

    row: int
    offset: int
    line: int


class CorpusFile(BaseModel):
    """One file of a corpus by reference: its path on the reference's filesystem and its row count
    (Parquet rows, or non-blank JSONL lines), counted once by the gateway so parts are row ranges."""

    model_config = ConfigDict(frozen=True)

    path: str
    rows: int
    # Every ``corpus_refs.SEEK_ROWS`` rows of an uncompressed JSONL file (Parquet reads row groups instead).
    seek_points: tuple[SeekPoint, ...] = ()


class CorpusRef(BaseModel):
    """A corpus the workers read themselves, resolved at submission: the filesystem (a URI that
    ``embedfleet.datastore.open_filesystem`` opens), the files in corpus order and how to read a record.
    ``max_text_bytes``/``max_metadata_bytes`` are the gateway's limits then, so workers validate by the rule the
    job was accepted under."""

    model_config = ConfigDict(frozen=True)

    filesystem: str
    format: CorpusFormat
    files: tuple[CorpusFile, ...]
    id_column: str = "id"
    text_column: str = "text"
    metadata_column: str = "metadata"
    max_text_bytes: int
    # Milvus' JSON field limit unless the gateway was configured lower.
    max_metadata_bytes: int = 65536

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


class ResultsRef(BaseModel):
    """Where an embed job writes its vectors: one Parquet file per part under ``directory`` on the
    filesystem ``filesystem`` names (a retried part rewrites its own file, never a second one)."""

    model_config = ConfigDict(frozen=True)

    filesystem: str
    directory: str


# -- what each job kind carries, resolved at submission -------------------------------------------
# One class per kind, tagged by ``kind``: a job spec carries exactly one of them (``JobParams``), so a
# kind's settings never leak into another's and adding a kind adds one class here.


class IngestDedupAction(StrEnum):
    """What an index job does with a near-duplicate: leave it out, or write it marked."""

    SKIP = "skip"
    MARK = "mark"


class IngestDedup(BaseModel):
    """Dedup on ingest: each part's documents are checked against the part and the collection; what was
    found is recorded under ``output`` (``embedfleet.worker.kinds.dedup_ingest``)."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    action: IngestDedupAction = IngestDedupAction.SKIP
    output: ResultsRef


class _CorpusJob(BaseModel):
    """What index and embed jobs share: a corpus staged with the parts, or read by reference."""

    # Set when the corpus is read by reference; None when its parts were staged by the gateway.
    corpus: CorpusRef | None = None
    # Where the parts of a corpus the gateway did not read write the digests of its ids, so that ids
    # repeated across parts are found (``worker/kinds/repeated_ids.py``); None for a streamed corpus,
    # whose repeats the gateway refused at submission.
    id_digests: ResultsRef | None = None

    @property
    def resumable(self) -> bool:
        """ResumeJob may queue parts again only when a corpus by reference outlives them (staged ones do not)."""
        return self.corpus is not None


class IndexParams(_CorpusJob):
    """Embed documents and upsert them into a model-bound Milvus collection."""

    kind: Literal[JobKind.INDEX] = JobKind.INDEX
    collection: str
    # Extra representations of the same forward pass, dimensions resolved by the gateway.
    stored_fields: tuple[StoredField, ...] = ()
    # The collection's index, resolved by the gateway (type and every parameter set).
    index: IndexSpec = DEFAULT_INDEX
    # Dedup on ingest; None writes every document.
    dedup: IngestDedup | None = None


class EmbedParams(_CorpusJob):
    """Embed documents and keep the vectors for the client to stream back."""

    kind: Literal[JobKind.EMBED] = JobKind.EMBED
    # Where the vectors go; None for jobs accepted before results moved out of Redis.
    results: ResultsRef | None = None


class DistillParams(BaseModel):
    """A distillation job's settings, resolved at submission (model names, not roles)."""

    kind: Literal[JobKind.DISTILL] = JobKind.DISTILL
    teacher: str
    student_name: str
    keep_layers: int
    init_model: str = ""
    steps: int
    batch_size: int
    learning_rate: float
    matryoshka_dimensions: tuple[int, ...] = ()
    min_quality_fraction: float
    eval_limit: int

    # Its texts are staged with its one part and dropped when the part ends: nothing to resume from.
    resumable: ClassVar[bool] = False


class EvaluateParams(BaseModel):
    """An evaluation job's settings, resolved at submission."""

    kind: Literal[JobKind.EVALUATE] = JobKind.EVALUATE
    model: str
    dimensions: tuple[int, ...] = ()
    teacher: str = ""
    eval_limit: int

    # Reads the shared evaluation data: a part can always run again.
    resumable: ClassVar[bool] = True


class DedupMode(StrEnum):
    """How a dedup job finds pairs: within k-means partitions and their neighbours, or all pairs."""

    PARTITIONED = "partitioned"
    EXACT = "exact"


class KeepPolicy(StrEnum):
    """Which row of a duplicate group stays: the smallest id, the one nearest the group's mean vector,
    or the one with the longest text."""

    FIRST = "first"
    NEAREST = "nearest"
    LONGEST = "longest"


class DedupAction(StrEnum):
    """What a dedup job does to the removed rows: nothing (a dry run, the default) or delete them."""

    DRY_RUN = "dry_run"
    DELETE = "delete"


class DedupParams(BaseModel):
    """Find near-duplicate rows of a collection (or of the rows a filter selects), resolved at submission.

    Parts are groups of partitions (part ``i`` handles partitions ``p`` with ``p % parts == i``); the
    partitions' centroids are stored beside the output (``output.directory/centroids.npy``)."""

    kind: Literal[JobKind.DEDUP] = JobKind.DEDUP
    collection: str
    filter: str = ""
    mode: DedupMode = DedupMode.PARTITIONED
    threshold: float
    policy: KeepPolicy = KeepPolicy.FIRST
    partitions: int = 1
    n_probe: int = 8
    text_pass: bool = True
    # Keep only reciprocal best matches before grouping (``dedup.mutual_best``).
    mutual: bool = False
    action: DedupAction = DedupAction.DRY_RUN
    # Rows the filter selected at submission (the job's total).
    rows: int = 0
    # Where the parts write their pairs and the last one the groups (``embedfleet/dedup_store.py``).
    output: ResultsRef

    # Reads the collection and writes its results under fixed names: parts can always run again.
    resumable: ClassVar[bool] = True


class ClusterMethod(StrEnum):
    """How a cluster job groups vectors (see ``embedfleet/cluster.py``)."""

    KMEANS = "kmeans"
    HDBSCAN = "hdbscan"


class ClusterParams(BaseModel):
    """A cluster job's settings, resolved and validated at submission (defaults filled in).

    ``k`` 0 means "choose k in [k_min, k_max] on a sample"; ``rows`` is what the filter selected then.
    The tables go to ``results`` (the dataset store, beside the collection), not into Milvus rows."""

    kind: Literal[JobKind.CLUSTER] = JobKind.CLUSTER
    collection: str
    filter: str = ""
    method: ClusterMethod = ClusterMethod.KMEANS
    k: int = 0
    k_min: int = 2
    k_max: int = 30
    sample_size: int = 100_000
    min_cluster_size: int = 10
    min_samples: int = 10
    top_terms: int = 10
    representatives: int = 5
    seed: int = 1
    rows: int = 0
    results: ResultsRef

    # Reads the collection and writes its tables under fixed names: the part can always run again.
    resumable: ClassVar[bool] = True


JobParams = Annotated[
    IndexParams | EmbedParams | DistillParams | EvaluateParams | DedupParams | ClusterParams,
    Field(discriminator="kind"),
]


class ProgressUnit(StrEnum):
    """What a job's ``total``/``done`` count, chosen by its kind."""

    DOCUMENTS = "documents"
    STEPS = "steps"
    EVALUATIONS = "evaluations"


class JobSpec(BaseModel):
    """What a job does, fixed and fully resolved at submission, so workers never re-derive it.

    ``embedding.model`` is the registry name the gateway resolved, ``model_version`` its pin at that
    moment (checksum or hub revision; "" when the entry is unpinned) and ``output_dimensions`` the
    vector length the job produces. ``part_size`` is the number of documents per part when the
    parts are consecutive ranges of the corpus, 0 when they are not (a single training task, later
    partitions of a collection). ``part_starts`` (when not empty) is the first document of every part
    instead, for parts the gateway sized by tokens: a part of titles holds many more documents than a
    part of long paragraphs, and both cost about the same time.
    """

    params: JobParams
    embedding: EmbeddingOptions
    model_version: str = ""
    output_dimensions: int = 0
    part_size: int = 0
    part_starts: tuple[int, ...] = ()
    unit: ProgressUnit = ProgressUnit.DOCUMENTS
    display_name: str = ""
    # The tenant that submitted the job (its API key's): only that tenant sees it. "" on a deployment
    # running with auth off, and for jobs accepted before tenants existed.
    tenant: str = ""

    @property
    def kind(self) -> JobKind:
        return self.params.kind

    @property
    def collection(self) -> str:
        return self.params.collection if isinstance(self.params, IndexParams | DedupParams | ClusterParams) else ""


@dataclass(frozen=True)
class SearchHit:
    """One search result, as the gateway returns it and the SDK hands it to users."""

    id: str
    score: float
    text: str
    metadata_json: str


class PartFailure(BaseModel):
    """A part that ended failed: which units of the job it covered, and why."""

    part: int
    first_unit: int
    units: int
    message: str


class DocumentFailure(BaseModel):
    """One document that failed on its own (the rest of its part was processed): its id and why."""

    id: str
    message: str


class JobSnapshot(BaseModel):
    """A job as read from the store at one moment; rates are derived, never stored."""

    id: str
    spec: JobSpec
    state: JobState
    total: int = 0
    done: int = 0
    failed: int = 0
    truncated: int = 0
    parts_total: int = 0
    parts_finished: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    failed_parts: list[PartFailure] = Field(default_factory=list)
    failed_documents: list[DocumentFailure] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)

    def docs_per_second(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else (now or time.time())
        elapsed = max(end - self.started_at, 1e-6)
        return self.done / elapsed

    def eta_seconds(self, now: float | None = None) -> float:
        if self.state.terminal:
            return 0.0
        rate = self.docs_per_second(now)
        remaining = self.total - self.done - self.failed
        return remaining / rate if rate > 0 else 0.0

    def part_range(self, part: int) -> tuple[int, int]:
        return part_range(self.spec, self.total, self.parts_total, part)


def part_range(spec: JobSpec, total: int, parts_total: int, part: int) -> tuple[int, int]:
    """(first unit, unit count) a part covers: a slice of the corpus when parts are document ranges
    (of ``part_starts`` or of ``part_size`` documents), otherwise an even share of the job's total."""
    if spec.part_starts:
        if part >= len(spec.part_starts):
            return total, 0
        end = spec.part_starts[part + 1] if part + 1 < len(spec.part_starts) else total
        return spec.part_starts[part], end - spec.part_starts[part]
    size = spec.part_size or -(-total // max(parts_total, 1))
    first = min(part * size, total)
    return first, max(0, min(size, total - first))
