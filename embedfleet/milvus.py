"""Milvus collections bound to the model that fills them.

A collection records, in its properties, the model name, version and dimension that wrote it.
Writing vectors from another model into it would mix two vector spaces and make every search
silently wrong, so any mismatch is refused with FailedPrecondition. The gateway checks the name
and dimension before it accepts a job; the worker, which knows the loaded weights' version,
checks all three before writing.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet.domain import DEFAULT_INDEX, BitBasis, IndexSpec, Precision, StoredField, VectorField
from embedfleet.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, echo
from embedfleet.milvus_engine import MilvusEngine
from embedfleet.registry import ModelSpec
from embedfleet.wire import packed_width

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
PK_FIELD = "pk"
ID_FIELD = "doc_id"
TEXT_FIELD = "text"
METADATA_FIELD = "metadata"
VECTOR_FIELD = "vector"
# Milvus VARCHAR lengths are in bytes; the stored text is a prefix of the document beyond this.
MAX_STORED_TEXT_BYTES = 65535
MAX_ID_FIELD_BYTES = 1024
_PROP = "embedfleet."
RESERVED_FIELDS = frozenset({PK_FIELD, ID_FIELD, TEXT_FIELD, METADATA_FIELD, VECTOR_FIELD})
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# Milvus Lite stores only float vectors; bits and int8 codes are kept as arrays next to them
# (binary packed into int64 words), which a rescoring step can read back losslessly.
STORABLE_PRECISIONS = (Precision.FLOAT32, Precision.BINARY, Precision.INT8)


def binary_words(dimensions: int) -> int:
    """int64 words that hold a vector's packed bits (Milvus Lite has no binary vector type)."""
    return (packed_width(dimensions, Precision.BINARY) + 7) // 8


def validate_collection_name(name: str) -> None:
    if not _NAME.fullmatch(name or ""):
        raise InvalidArgument(
            f"collection name {echo(name)} is invalid: use letters, digits and underscores, "
            "starting with a letter or underscore, at most 255 characters"
        )


def stored_fields(
    spec: ModelSpec, fields: Iterable[VectorField], existing: Iterable[StoredField] = ()
) -> tuple[StoredField, ...]:
    """Validate an index job's extra fields against the model; resolve their dimensions and the basis of
    their bits: the one asked for, else that of the ``existing`` collection's field of the same name, else
    rotated for a binary field of a Matryoshka model (see ``BitBasis``) and axes for everything else."""
    kept = {f.name: f.bits for f in existing}
    resolved: list[StoredField] = []
    for field in fields:
        if not _FIELD_NAME.fullmatch(field.name) or field.name in RESERVED_FIELDS:
            raise InvalidArgument(
                f"extra field name {echo(field.name)} is invalid: use letters, digits and underscores, starting "
                f"with a letter, and none of {', '.join(sorted(RESERVED_FIELDS))}"
            )
        if field.precision not in STORABLE_PRECISIONS:
            raise InvalidArgument(
                f"extra field {field.name!r}: {field.precision.value} fields are not supported; "
                f"use one of {', '.join(p.value for p in STORABLE_PRECISIONS)}"
            )
        if any(f.name == field.name for f in resolved):
            raise InvalidArgument(f"extra field {field.name!r} is named twice")
        binary = field.precision == Precision.BINARY
        if field.bits == BitBasis.ROTATED and not binary:
            raise InvalidArgument(f"extra field {field.name!r}: rotated bits apply to binary fields only")
        default = BitBasis.ROTATED if binary and spec.matryoshka_dimensions else BitBasis.AXES
        bits = field.bits or kept.get(field.name, default)
        resolved.append(
            StoredField(
                name=field.name,
                dimensions=spec.output_dimensions(field.dimensions),
                precision=field.precision,
                bits=bits,
            )
        )
    return tuple(resolved)


@dataclass(frozen=True)
class CollectionBinding:
    """The model that owns a collection's vector space, and the representations its rows carry."""

    model: str
    model_version: str
    dimensions: int
    fields: tuple[StoredField, ...] = ()
    # How the float vector fields are indexed; collections made before this was recorded have AUTOINDEX.
    index: IndexSpec = DEFAULT_INDEX

    def properties(self) -> dict[str, str]:
        return {
            f"{_PROP}model": self.model,
            f"{_PROP}model_version": self.model_version,
            f"{_PROP}dimensions": str(self.dimensions),
            # ``bits`` only where it is not the default, so a field reads back as it did before it was kept.
            f"{_PROP}fields": json.dumps([f.model_dump(mode="json", exclude_defaults=True) for f in self.fields]),
            f"{_PROP}index": self.index.model_dump_json(),
        }

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> CollectionBinding | None:
        if f"{_PROP}model" not in props:
            return None
        fields = json.loads(props.get(f"{_PROP}fields", "[]"))
        return cls(
            model=props[f"{_PROP}model"],
            model_version=props.get(f"{_PROP}model_version", ""),
            dimensions=int(props.get(f"{_PROP}dimensions", "0")),
            fields=tuple(StoredField.model_validate(f) for f in fields),
            index=IndexSpec.model_validate_json(props.get(f"{_PROP}index", DEFAULT_INDEX.model_dump_json())),
        )

    def check_compatible(
        self,
        collection: str,
        *,
        model: str,
        dimensions: int,
        version: str | None,
        fields: tuple[StoredField, ...] | None = None,
        index: IndexSpec | None = None,
    ) -> None:
        """Refuse a writer whose vectors would not be comparable with the ones stored, or that asks
        for another index than the collection was built with."""
        if index is not None and index != self.index:
            raise FailedPrecondition(
                f"collection {collection!r} is indexed with {describe_index(self.index)}; this job asks for "
                f"{describe_index(index)}. Leave the index unset to use the collection's, or index into a new "
                "collection."
            )
        if fields is not None and set(fields) != set(self.fields):
            have = ", ".join(f.describe() for f in self.fields) or "none"
            raise FailedPrecondition(
                f"collection {collection!r} has extra fields {have}; the job must write exactly those"
            )
        if model != self.model or dimensions != self.dimensions:
            raise FailedPrecondition(
                f"collection {collection!r} holds {self.dimensions}-d vectors of model {self.model!r}; "
                f"this request uses {dimensions}-d vectors of {model!r}. Index into a new collection "
                "or use the collection's model."
            )
        if version is not None and self.model_version and version != self.model_version:
            raise FailedPrecondition(
                f"collection {collection!r} was filled by {self.model!r} version {self.model_version}; "
                f"the worker has version {version}. Re-index into a new collection after a model upgrade."
            )


CONNECT_ATTEMPTS = 3


def connect(uri: str, token: str = "") -> MilvusClient:
    """A client of the Milvus at ``uri``. pymilvus shares one channel per address between clients, and
    a server may drop it (``GOAWAY too_many_pings``) just as a new client registers on it: a failed
    connect is tried again after a short pause before it counts as an outage (UNAVAILABLE)."""
    attempt = 1
    while True:
        try:
            return MilvusClient(uri=uri, token=token)
        except MilvusException as exc:
            if attempt >= CONNECT_ATTEMPTS:
                raise Unavailable(f"cannot reach Milvus at {uri}: {exc.message}") from None
            time.sleep(0.5 * attempt)
            attempt += 1


# Lite fails a flush that races another one on the same collection ("current_seq is monotonic"); the
# other flush is still being applied, so this one is tried again shortly after.
FLUSH_ATTEMPTS = 5
_FLUSH_RACE = "monotonic"


def persist(client: MilvusClient, collection: str, engine: MilvusEngine) -> None:
    """Make the collection's acknowledged writes durable before the part that made them counts as done.
    Only an engine that is not durable on acknowledgement is flushed: on a Milvus server each flush seals
    small segments and is rate-limited, and its log already holds the writes."""
    if engine.durable_on_acknowledgement:
        return
    attempt = 1
    while True:
        try:
            client.flush(collection)
            return
        except MilvusException as exc:
            if _FLUSH_RACE not in (exc.message or "") or attempt >= FLUSH_ATTEMPTS:
                raise
            time.sleep(0.05 * attempt)
            attempt += 1


def read_binding(client: MilvusClient, collection: str) -> CollectionBinding | None:
    """The collection's binding; None if the collection does not exist.

    A collection that exists but was not made by embedfleet is refused: its schema is unknown.
    """
    if not client.has_collection(collection):
        return None
    props = client.describe_collection(collection).get("properties", {})
    binding = CollectionBinding.from_properties(props)
    if binding is None:
        raise FailedPrecondition(f"collection {collection!r} exists but was not created by embedfleet")
    return binding


def require_binding(client: MilvusClient, collection: str) -> CollectionBinding:
    validate_collection_name(collection)
    binding = read_binding(client, collection)
    if binding is None:
        raise NotFound(f"collection {collection!r} does not exist; run an index job to create it")
    return binding


def int8_ranges(client: MilvusClient, collection: str, field: str) -> np.ndarray:
    """The calibration ranges an int8 field was quantized with, as stored with the collection."""
    props = client.describe_collection(collection).get("properties", {})
    return np.asarray(json.loads(props[f"{_PROP}int8_ranges.{field}"]), dtype=np.float32)


def describe_index(spec: IndexSpec) -> str:
    params = ", ".join(f"{k}={v}" for k, v in sorted(spec.params.items()))
    return f"{spec.type}({params})" if params else spec.type


def _add_float_index(index: object, field: str, spec: IndexSpec) -> None:
    index.add_index(field_name=field, index_type=spec.type, metric_type="COSINE", params=dict(spec.params))  # type: ignore[attr-defined]


def _add_stored_field(schema: object, index: object, field: StoredField, spec: IndexSpec) -> None:
    if field.precision == Precision.FLOAT32:
        schema.add_field(field.name, DataType.FLOAT_VECTOR, dim=field.dimensions)  # type: ignore[attr-defined]
        _add_float_index(index, field.name, spec)
    elif field.precision == Precision.BINARY:
        words = binary_words(field.dimensions)
        schema.add_field(field.name, DataType.ARRAY, element_type=DataType.INT64, max_capacity=words)  # type: ignore[attr-defined]
    else:
        schema.add_field(field.name, DataType.ARRAY, element_type=DataType.INT8, max_capacity=field.dimensions)  # type: ignore[attr-defined]


def ensure_collection(
    client: MilvusClient,
    collection: str,
    binding: CollectionBinding,
    ranges: Mapping[str, np.ndarray] | None = None,
) -> None:
    """Create the collection for this binding, or check that the existing one matches it.

    ``ranges`` holds the int8 calibration ranges of each int8 field; they are stored with the
    collection so that anyone reading the codes can dequantize them. Several workers may race to
    create the collection; the loser sees it exist and checks it instead.
    """
    existing = read_binding(client, collection)
    if existing is None:
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(PK_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(ID_FIELD, DataType.VARCHAR, max_length=MAX_ID_FIELD_BYTES)
        schema.add_field(TEXT_FIELD, DataType.VARCHAR, max_length=MAX_STORED_TEXT_BYTES)
        schema.add_field(METADATA_FIELD, DataType.JSON)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=binding.dimensions)
        index = client.prepare_index_params()
        _add_float_index(index, VECTOR_FIELD, binding.index)
        for field in binding.fields:
            _add_stored_field(schema, index, field, binding.index)
        properties = binding.properties()
        for name, value in (ranges or {}).items():
            properties[f"{_PROP}int8_ranges.{name}"] = json.dumps(np.round(value, 6).tolist())
        try:
            client.create_collection(collection, schema=schema, index_params=index, properties=properties)
            return
        except MilvusException:
            existing = read_binding(client, collection)
            if existing is None:
                raise
    existing.check_compatible(
        collection,
        model=binding.model,
        dimensions=binding.dimensions,
        version=binding.model_version,
        fields=binding.fields,
        index=binding.index,
    )
