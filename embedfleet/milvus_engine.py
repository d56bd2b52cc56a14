"""What the Milvus in use can store and index, so that a job it cannot serve is refused at submission
with a reason, not failed by a worker after the corpus was staged.

Milvus Lite 3.2 (pure Python) reports ``milvus_lite-3.2.2``; the Milvus server reports ``v2.3.5`` (the
PyPI ``milvus`` package adds ``-lite`` to it, but it is the C++ engine). They differ in what matters
here: a Milvus server older than 2.4 allows one vector field per collection, and each engine accepts
its own set of index types. Milvus Lite accepts an unsupported index type (IVF_PQ, DISKANN, SCANN,
BIN_FLAT) silently on an empty collection and fails once data is flushed, so only the types below are
allowed, with bounded integer parameters and defaults filled in (the collection records the result).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pymilvus import MilvusClient

from embedfleet.domain import DEFAULT_INDEX, IndexSpec, Precision, StoredField
from embedfleet.errors import FailedPrecondition, InvalidArgument

_SERVER_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
_LITE_PREFIX = "milvus_lite-"
MULTI_VECTOR_SINCE = (2, 4)


@dataclass(frozen=True)
class IndexType:
    """One index type: its build parameters as ``name -> (default, min, max)``."""

    params: Mapping[str, tuple[int, int, int]]
    engines: frozenset[str] = frozenset({"lite", "server"})


# Bounds follow Milvus' own checks (knowhere): nlist 1..65536, HNSW M 2..2048, efConstruction >= 1.
INDEX_TYPES: dict[str, IndexType] = {
    "AUTOINDEX": IndexType({}),
    "FLAT": IndexType({}),
    "IVF_FLAT": IndexType({"nlist": (128, 1, 65536)}),
    "IVF_SQ8": IndexType({"nlist": (128, 1, 65536)}),
    "HNSW": IndexType({"M": (16, 2, 2048), "efConstruction": (200, 1, 2**31 - 1)}),
}
# Known Milvus types this project does not build (Lite refuses them once data is flushed; the binary
# ones index BINARY_VECTOR fields, which bits are not stored as).
REFUSED_TYPES = frozenset({"IVF_PQ", "DISKANN", "SCANN", "HNSW_SQ", "BIN_FLAT", "BIN_IVF_FLAT", "GPU_IVF_FLAT"})


@dataclass(frozen=True)
class MilvusEngine:
    """The engine behind a Milvus URI, from its reported version."""

    lite: bool
    version: tuple[int, ...]
    reported: str

    @property
    def name(self) -> str:
        return f"{'Milvus Lite' if self.lite else 'Milvus'} {'.'.join(map(str, self.version))}"

    @property
    def kind(self) -> str:
        return "lite" if self.lite else "server"

    @property
    def durable_on_acknowledgement(self) -> bool:
        """Whether an acknowledged upsert or delete survives the engine being killed. A Milvus server writes
        to its log (rocksmq, Pulsar, Kafka) before it answers. Milvus Lite answers from memory: killed with
        SIGKILL a few seconds into a stream of upserts, it came back without most of what it had
        acknowledged, and with all of it when each write was followed by a flush (bench/lite_durability.py)."""
        return not self.lite

    @property
    def multiple_vector_fields(self) -> bool:
        """Milvus Lite stores several vector fields per collection; a server since 2.4."""
        return self.lite or self.version[:2] >= MULTI_VECTOR_SINCE

    @classmethod
    def from_version(cls, reported: str) -> MilvusEngine:
        if reported.startswith(_LITE_PREFIX):
            numbers = reported.removeprefix(_LITE_PREFIX).split(".")
            return cls(True, tuple(int(n) for n in numbers if n.isdigit()), reported)
        match = _SERVER_VERSION.match(reported)
        if match is None:
            raise ValueError(f"unrecognised Milvus version {reported!r}")
        return cls(False, tuple(int(n) for n in match.groups() if n is not None), reported)


def detect(client: MilvusClient) -> MilvusEngine:
    return MilvusEngine.from_version(str(client.get_server_version()))


def resolve_index(spec: IndexSpec, engine: MilvusEngine, field: str = "config.index") -> IndexSpec:
    """The spec with its type normalized and defaults filled in; unknown or out-of-range settings refused."""
    name = (spec.type or DEFAULT_INDEX.type).upper()
    allowed = sorted(t for t, kind in INDEX_TYPES.items() if engine.kind in kind.engines)
    index_type = INDEX_TYPES.get(name)
    if index_type is None or engine.kind not in index_type.engines:
        why = (
            f"{name} is not supported on {engine.name} (Milvus Lite accepts it on an empty collection and fails "
            "once data is flushed)"
            if name in REFUSED_TYPES
            else f"unknown index type {spec.type!r}"
        )
        raise InvalidArgument(f"{why}; use one of {', '.join(allowed)}", f"{field}.type")
    params: dict[str, int] = {}
    for key, value in spec.params.items():
        if key not in index_type.params:
            takes = ", ".join(index_type.params) or "no parameters"
            raise InvalidArgument(f"index {name} has no parameter {key!r}; it takes {takes}", f"{field}.params")
        _, low, high = index_type.params[key]
        if not low <= value <= high:
            raise InvalidArgument(
                f"index {name} parameter {key} must be in [{low}, {high}], not {value}", f"{field}.params"
            )
        params[key] = value
    for key, (default, _, _) in index_type.params.items():
        params.setdefault(key, default)
    return IndexSpec(type=name, params=params)


def check_vector_fields(engine: MilvusEngine, fields: Iterable[StoredField]) -> None:
    """Refuse extra float vector fields where the engine allows only the main one."""
    floats = [f.name for f in fields if f.precision == Precision.FLOAT32]
    if floats and not engine.multiple_vector_fields:
        since = ".".join(map(str, MULTI_VECTOR_SINCE))
        raise FailedPrecondition(
            f"{engine.name} allows one vector field per collection (several need Milvus {since} or later, or "
            f"Milvus Lite); the extra float field(s) {', '.join(floats)} would add more. Leave them out, or store "
            'bits instead ({"precision": "binary"}, for search mode binary)'
        )
