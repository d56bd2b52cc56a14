from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_ROLE_UNSPECIFIED: _ClassVar[ModelRole]
    MODEL_ROLE_TEACHER: _ClassVar[ModelRole]
    MODEL_ROLE_STUDENT: _ClassVar[ModelRole]
    MODEL_ROLE_MRL: _ClassVar[ModelRole]
MODEL_ROLE_UNSPECIFIED: ModelRole
MODEL_ROLE_TEACHER: ModelRole
MODEL_ROLE_STUDENT: ModelRole
MODEL_ROLE_MRL: ModelRole

class ModelInfo(_message.Message):
    __slots__ = ("name", "role", "dimensions", "matryoshka_dimensions", "max_seq_length", "version", "backend", "query_prompt", "document_prompt", "is_default", "workers", "origin", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MATRYOSHKA_DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    QUERY_PROMPT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_PROMPT_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: ModelRole
    dimensions: int
    matryoshka_dimensions: _containers.RepeatedScalarFieldContainer[int]
    max_seq_length: int
    version: str
    backend: str
    query_prompt: str
    document_prompt: str
    is_default: bool
    workers: int
    origin: str
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[ModelRole, str]] = ..., dimensions: _Optional[int] = ..., matryoshka_dimensions: _Optional[_Iterable[int]] = ..., max_seq_length: _Optional[int] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ..., query_prompt: _Optional[str] = ..., document_prompt: _Optional[str] = ..., is_default: _Optional[bool] = ..., workers: _Optional[int] = ..., origin: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
