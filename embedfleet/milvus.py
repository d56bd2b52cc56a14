"""Milvus collections bound to the model that fills them.

A collection records, in its properties, the model name, version and dimension that wrote it.
Writing vectors from another model into it would mix two vector spaces and make every search
silently wrong, so any mismatch is refused with FailedPrecondition. The gateway checks the name
and dimension before it accepts a job; the worker, which knows the loaded weights' version,
checks all three before writing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from embedfleet.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable

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


def validate_collection_name(name: str) -> None:
    if not _NAME.match(name or ""):
        raise InvalidArgument(
            f"collection name {name!r} is invalid: use letters, digits and underscores, "
            "starting with a letter or underscore, at most 255 characters"
        )


@dataclass(frozen=True)
class CollectionBinding:
    """The model that owns a collection's vector space."""

    model: str
    model_version: str
    dimensions: int

    def properties(self) -> dict[str, str]:
        return {
            f"{_PROP}model": self.model,
            f"{_PROP}model_version": self.model_version,
            f"{_PROP}dimensions": str(self.dimensions),
        }

    @classmethod
    def from_properties(cls, props: dict[str, str]) -> CollectionBinding | None:
        if f"{_PROP}model" not in props:
            return None
        return cls(
            model=props[f"{_PROP}model"],
            model_version=props.get(f"{_PROP}model_version", ""),
            dimensions=int(props.get(f"{_PROP}dimensions", "0")),
        )

    def check_compatible(self, collection: str, *, model: str, dimensions: int, version: str | None) -> None:
        """Refuse a writer whose vectors would not be comparable with the ones stored."""
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


def connect(uri: str, token: str = "") -> MilvusClient:
    try:
        return MilvusClient(uri=uri, token=token)
    except MilvusException as exc:
        raise Unavailable(f"cannot reach Milvus at {uri}: {exc.message}") from None


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


def ensure_collection(client: MilvusClient, collection: str, binding: CollectionBinding) -> None:
    """Create the collection for this binding, or check that the existing one matches it.

    Several workers may race to create it; the loser sees it exist and checks it instead.
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
        index.add_index(field_name=VECTOR_FIELD, index_type="AUTOINDEX", metric_type="COSINE")
        try:
            client.create_collection(collection, schema=schema, index_params=index, properties=binding.properties())
            return
        except MilvusException:
            existing = read_binding(client, collection)
            if existing is None:
                raise
    existing.check_compatible(
        collection, model=binding.model, dimensions=binding.dimensions, version=binding.model_version
    )
