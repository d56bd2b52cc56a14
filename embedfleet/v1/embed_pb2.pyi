from embedfleet.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "options")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    options: _common_pb2.EmbeddingOptions
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[_common_pb2.EmbeddingOptions, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "model", "model_version", "truncated")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    embeddings: _common_pb2.EmbeddingBatch
    model: str
    model_version: str
    truncated: int
    def __init__(self, embeddings: _Optional[_Union[_common_pb2.EmbeddingBatch, _Mapping]] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., truncated: _Optional[int] = ...) -> None: ...
