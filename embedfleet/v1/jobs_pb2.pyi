import datetime

from embedfleet.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_KIND_UNSPECIFIED: _ClassVar[JobKind]
    JOB_KIND_INDEX: _ClassVar[JobKind]
    JOB_KIND_EMBED: _ClassVar[JobKind]
    JOB_KIND_DISTILL: _ClassVar[JobKind]
    JOB_KIND_EVALUATE: _ClassVar[JobKind]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
JOB_KIND_UNSPECIFIED: JobKind
JOB_KIND_INDEX: JobKind
JOB_KIND_EMBED: JobKind
JOB_KIND_DISTILL: JobKind
JOB_KIND_EVALUATE: JobKind

class CorpusSource(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class VectorField(_message.Message):
    __slots__ = ("name", "dimensions", "precision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimensions: int
    precision: _common_pb2.Precision
    def __init__(self, name: _Optional[str] = ..., dimensions: _Optional[int] = ..., precision: _Optional[_Union[_common_pb2.Precision, str]] = ...) -> None: ...

class IndexJobConfig(_message.Message):
    __slots__ = ("collection", "embedding", "source", "chunk_size", "display_name", "extra_fields")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    embedding: _common_pb2.EmbeddingOptions
    source: CorpusSource
    chunk_size: int
    display_name: str
    extra_fields: _containers.RepeatedCompositeFieldContainer[VectorField]
    def __init__(self, collection: _Optional[str] = ..., embedding: _Optional[_Union[_common_pb2.EmbeddingOptions, _Mapping]] = ..., source: _Optional[_Union[CorpusSource, _Mapping]] = ..., chunk_size: _Optional[int] = ..., display_name: _Optional[str] = ..., extra_fields: _Optional[_Iterable[_Union[VectorField, _Mapping]]] = ...) -> None: ...

class SubmitIndexJobRequest(_message.Message):
    __slots__ = ("config", "documents")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    config: IndexJobConfig
    documents: _common_pb2.DocumentBatch
    def __init__(self, config: _Optional[_Union[IndexJobConfig, _Mapping]] = ..., documents: _Optional[_Union[_common_pb2.DocumentBatch, _Mapping]] = ...) -> None: ...

class SubmitIndexJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class EmbedJobConfig(_message.Message):
    __slots__ = ("embedding", "source", "chunk_size", "display_name")
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    embedding: _common_pb2.EmbeddingOptions
    source: CorpusSource
    chunk_size: int
    display_name: str
    def __init__(self, embedding: _Optional[_Union[_common_pb2.EmbeddingOptions, _Mapping]] = ..., source: _Optional[_Union[CorpusSource, _Mapping]] = ..., chunk_size: _Optional[int] = ..., display_name: _Optional[str] = ...) -> None: ...

class SubmitEmbedJobRequest(_message.Message):
    __slots__ = ("config", "documents")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    config: EmbedJobConfig
    documents: _common_pb2.DocumentBatch
    def __init__(self, config: _Optional[_Union[EmbedJobConfig, _Mapping]] = ..., documents: _Optional[_Union[_common_pb2.DocumentBatch, _Mapping]] = ...) -> None: ...

class SubmitEmbedJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("total", "done", "failed", "truncated", "chunks_total", "chunks_finished")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FINISHED_FIELD_NUMBER: _ClassVar[int]
    total: int
    done: int
    failed: int
    truncated: int
    chunks_total: int
    chunks_finished: int
    def __init__(self, total: _Optional[int] = ..., done: _Optional[int] = ..., failed: _Optional[int] = ..., truncated: _Optional[int] = ..., chunks_total: _Optional[int] = ..., chunks_finished: _Optional[int] = ...) -> None: ...

class ChunkFailure(_message.Message):
    __slots__ = ("chunk_index", "first_document", "document_count", "message")
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    first_document: int
    document_count: int
    message: str
    def __init__(self, chunk_index: _Optional[int] = ..., first_document: _Optional[int] = ..., document_count: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "kind", "state", "display_name", "model", "collection", "embedding", "progress", "docs_per_second", "eta_seconds", "created_at", "started_at", "finished_at", "error", "failed_chunks", "metrics", "outputs")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DOCS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: JobKind
    state: JobState
    display_name: str
    model: str
    collection: str
    embedding: _common_pb2.EmbeddingOptions
    progress: JobProgress
    docs_per_second: float
    eta_seconds: float
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error: str
    failed_chunks: _containers.RepeatedCompositeFieldContainer[ChunkFailure]
    metrics: _containers.ScalarMap[str, float]
    outputs: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., state: _Optional[_Union[JobState, str]] = ..., display_name: _Optional[str] = ..., model: _Optional[str] = ..., collection: _Optional[str] = ..., embedding: _Optional[_Union[_common_pb2.EmbeddingOptions, _Mapping]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., docs_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., failed_chunks: _Optional[_Iterable[_Union[ChunkFailure, _Mapping]]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., outputs: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DistillJobConfig(_message.Message):
    __slots__ = ("teacher", "student_name", "keep_layers", "init_model", "source", "texts", "max_steps", "batch_size", "learning_rate", "matryoshka_dimensions", "min_quality_fraction", "eval_limit", "display_name")
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    STUDENT_NAME_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAYERS_FIELD_NUMBER: _ClassVar[int]
    INIT_MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    MATRYOSHKA_DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MIN_QUALITY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    EVAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    teacher: str
    student_name: str
    keep_layers: int
    init_model: str
    source: CorpusSource
    texts: _containers.RepeatedScalarFieldContainer[str]
    max_steps: int
    batch_size: int
    learning_rate: float
    matryoshka_dimensions: _containers.RepeatedScalarFieldContainer[int]
    min_quality_fraction: float
    eval_limit: int
    display_name: str
    def __init__(self, teacher: _Optional[str] = ..., student_name: _Optional[str] = ..., keep_layers: _Optional[int] = ..., init_model: _Optional[str] = ..., source: _Optional[_Union[CorpusSource, _Mapping]] = ..., texts: _Optional[_Iterable[str]] = ..., max_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., matryoshka_dimensions: _Optional[_Iterable[int]] = ..., min_quality_fraction: _Optional[float] = ..., eval_limit: _Optional[int] = ..., display_name: _Optional[str] = ...) -> None: ...

class SubmitDistillJobRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: DistillJobConfig
    def __init__(self, config: _Optional[_Union[DistillJobConfig, _Mapping]] = ...) -> None: ...

class SubmitDistillJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class EvaluateJobConfig(_message.Message):
    __slots__ = ("model", "dimensions", "teacher", "eval_limit", "display_name")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    TEACHER_FIELD_NUMBER: _ClassVar[int]
    EVAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    model: str
    dimensions: _containers.RepeatedScalarFieldContainer[int]
    teacher: str
    eval_limit: int
    display_name: str
    def __init__(self, model: _Optional[str] = ..., dimensions: _Optional[_Iterable[int]] = ..., teacher: _Optional[str] = ..., eval_limit: _Optional[int] = ..., display_name: _Optional[str] = ...) -> None: ...

class SubmitEvaluateJobRequest(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: EvaluateJobConfig
    def __init__(self, config: _Optional[_Union[EvaluateJobConfig, _Mapping]] = ...) -> None: ...

class SubmitEvaluateJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: JobState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class StreamJobResultsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class StreamJobResultsResponse(_message.Message):
    __slots__ = ("chunk_index", "first_document", "embeddings")
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    first_document: int
    embeddings: _common_pb2.EmbeddingBatch
    def __init__(self, chunk_index: _Optional[int] = ..., first_document: _Optional[int] = ..., embeddings: _Optional[_Union[_common_pb2.EmbeddingBatch, _Mapping]] = ...) -> None: ...
