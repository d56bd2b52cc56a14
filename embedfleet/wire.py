"""The one wire codec of ``embedfleet.v1``, shared by the gateway and the client.

Every table between a domain enum and its protobuf enum, and the layout of ``EmbeddingBatch.data``
(dtype per precision, packed bit width, byte order), is defined here once. The tables are built by
name (``Precision.INT8`` <-> ``PRECISION_INT8``), so a value added to both sides is mapped without
an edit here, and a test checks that every value of each side has its partner.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from embedfleet.apikeys import Role
from embedfleet.domain import (
    BitBasis,
    ClusterMethod,
    CorpusFormat,
    DedupAction,
    DedupMode,
    IngestDedupAction,
    InputType,
    JobKind,
    JobState,
    KeepPolicy,
    Precision,
    SearchMode,
)
from embedfleet.errors import InvalidArgument
from embedfleet.registry import ModelRole
from embedfleet.v1 import common_pb2, jobs_pb2, keys_pb2, models_pb2, search_pb2

E = TypeVar("E", bound=StrEnum)


class _ProtoEnum(Protocol):
    """A generated protobuf enum: its ``Value(name)`` gives the number."""

    def Value(self, name: str) -> Any: ...


class EnumCodec(Generic[E]):
    """A domain enum <-> a protobuf enum whose values are ``<PREFIX>_<NAME>``, 0 being ``_UNSPECIFIED``."""

    def __init__(self, domain: type[E], pb: _ProtoEnum, prefix: str, default: E | None) -> None:
        self.domain = domain
        self.default = default
        self._to_pb: dict[E, int] = {member: int(pb.Value(f"{prefix}_{member.name}")) for member in domain}
        self._from_pb = {number: member for member, number in self._to_pb.items()}
        self._names = ", ".join(f"{number} ({member.value})" for member, number in self._to_pb.items())

    def to_pb(self, value: E) -> int:
        return self._to_pb[value]

    def from_pb(self, number: int, field: str) -> E:
        """The domain value of a wire number; 0 (unspecified) is the default, an unknown number is refused."""
        if number == 0 and self.default is not None:
            return self.default
        try:
            return self._from_pb[number]
        except KeyError:
            raise InvalidArgument(f"{field} {number} is not a known value; use one of {self._names}", field) from None

    def optional_from_pb(self, number: int, field: str) -> E | None:
        """Like ``from_pb`` where 0 means "not given" (a filter), not a default."""
        return None if number == 0 else self.from_pb(number, field)

    def parse(self, text: str, field: str) -> E:
        """A user's spelling (``"int8"``) -> the domain value, for client arguments."""
        try:
            return self.domain(text)
        except ValueError:
            allowed = ", ".join(m.value for m in self.domain)
            raise ValueError(f"{field} must be one of {allowed}, not {text!r}") from None


PRECISION = EnumCodec(Precision, common_pb2.Precision, "PRECISION", Precision.FLOAT32)
INPUT_TYPE = EnumCodec(InputType, common_pb2.InputType, "INPUT_TYPE", InputType.DOCUMENT)
JOB_STATE = EnumCodec(JobState, jobs_pb2.JobState, "JOB_STATE", None)
JOB_KIND = EnumCodec(JobKind, jobs_pb2.JobKind, "JOB_KIND", None)
MODEL_ROLE = EnumCodec(ModelRole, models_pb2.ModelRole, "MODEL_ROLE", None)
SEARCH_MODE = EnumCodec(SearchMode, search_pb2.SearchMode, "SEARCH_MODE", SearchMode.FULL)
BIT_BASIS = EnumCodec(BitBasis, jobs_pb2.BitBasis, "BIT_BASIS", None)  # 0: the collection's, or the model's
CORPUS_FORMAT = EnumCodec(CorpusFormat, jobs_pb2.CorpusFormat, "CORPUS_FORMAT", None)  # 0: from the file names
DEDUP_MODE = EnumCodec(DedupMode, jobs_pb2.DedupMode, "DEDUP_MODE", DedupMode.PARTITIONED)
KEEP_POLICY = EnumCodec(KeepPolicy, jobs_pb2.KeepPolicy, "KEEP_POLICY", KeepPolicy.FIRST)
INGEST_DEDUP_ACTION = EnumCodec(
    IngestDedupAction, jobs_pb2.IngestDedupAction, "INGEST_DEDUP_ACTION", IngestDedupAction.SKIP
)
DEDUP_ACTION = EnumCodec(DedupAction, jobs_pb2.DedupAction, "DEDUP_ACTION", DedupAction.DRY_RUN)
CLUSTER_METHOD = EnumCodec(ClusterMethod, jobs_pb2.ClusterMethod, "CLUSTER_METHOD", ClusterMethod.KMEANS)
ROLE = EnumCodec(Role, keys_pb2.Role, "ROLE", None)

# ``EmbeddingBatch.data`` element type per precision (little-endian; binary is packed bits).
DTYPES: dict[Precision, np.dtype] = {
    Precision.FLOAT32: np.dtype("<f4"),
    Precision.FLOAT16: np.dtype("<f2"),
    Precision.INT8: np.dtype("i1"),
    Precision.BINARY: np.dtype("u1"),
}


def packed_width(dimensions: int, precision: Precision) -> int:
    """Elements per row of a packed vector: one per dimension, or one byte per 8 bits for binary."""
    return (dimensions + 7) // 8 if precision == Precision.BINARY else dimensions


def pack_vectors(vectors: np.ndarray, precision: Precision) -> bytes:
    """Row-major little-endian bytes, the layout of ``EmbeddingBatch.data``."""
    return np.ascontiguousarray(vectors, dtype=DTYPES[precision]).tobytes()


def unpack_vectors(data: bytes, rows: int, dimensions: int, precision: Precision) -> np.ndarray:
    """The inverse of ``pack_vectors``: a read-only (rows, packed_width) array over ``data``."""
    width = packed_width(dimensions, precision)
    array = np.frombuffer(data, dtype=DTYPES[precision])
    if array.size != rows * width:
        raise InvalidArgument(
            f"vector data holds {array.size} values; {rows} rows of {dimensions}-d {precision.value} "
            f"vectors need {rows * width}"
        )
    return array.reshape(rows, width)


def embedding_batch(ids: list[str], data: bytes, dimensions: int, precision: Precision) -> common_pb2.EmbeddingBatch:
    """An ``EmbeddingBatch`` from already packed bytes (no unpack/pack round trip)."""
    code = PRECISION.to_pb(precision)
    return common_pb2.EmbeddingBatch(ids=ids, dimensions=dimensions, precision=code, data=data)  # type: ignore[arg-type]


def batch_vectors(batch: common_pb2.EmbeddingBatch) -> np.ndarray:
    """The vectors of an ``EmbeddingBatch`` as NumPy rows."""
    precision = PRECISION.from_pb(batch.precision, "precision")
    return unpack_vectors(batch.data, len(batch.ids), batch.dimensions, precision)
