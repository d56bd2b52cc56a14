"""What each Milvus engine supports, from its reported version, and the index specs refused or completed
at submission. Pure: no services (the engines' real version strings are checked end to end in
tests/e2e/test_milvus_server.py and tests/e2e/test_index_config.py)."""

from __future__ import annotations

import pytest

from embedfleet.domain import IndexSpec, Precision, StoredField
from embedfleet.errors import FailedPrecondition, InvalidArgument
from embedfleet.milvus import CollectionBinding
from embedfleet.milvus_engine import MilvusEngine, check_vector_fields, resolve_index

LITE = MilvusEngine.from_version("milvus_lite-3.2.2")
SERVER_23 = MilvusEngine.from_version("v2.3.5-lite")  # what the PyPI milvus package's C++ server reports
PREFIX = StoredField(name="v128", dimensions=128, precision=Precision.FLOAT32)
BITS = StoredField(name="bits", dimensions=384, precision=Precision.BINARY)


def test_versions_are_read_and_only_old_servers_have_one_vector_field() -> None:
    assert (LITE.lite, LITE.version, LITE.name) == (True, (3, 2, 2), "Milvus Lite 3.2.2")
    assert (SERVER_23.lite, SERVER_23.version, SERVER_23.name) == (False, (2, 3, 5), "Milvus 2.3.5")
    assert LITE.multiple_vector_fields and not SERVER_23.multiple_vector_fields
    assert MilvusEngine.from_version("v2.4.0").multiple_vector_fields
    with pytest.raises(ValueError, match="unrecognised"):
        MilvusEngine.from_version("nonsense")


def test_a_second_vector_field_is_refused_where_the_engine_has_one() -> None:
    check_vector_fields(LITE, (PREFIX, BITS))
    check_vector_fields(SERVER_23, (BITS,))  # bits are an array, not a vector field
    with pytest.raises(FailedPrecondition, match=r"Milvus 2\.3\.5 allows one vector field.*Milvus 2\.4.*v128"):
        check_vector_fields(SERVER_23, (PREFIX, BITS))


def test_index_specs_get_their_defaults_and_a_normalized_type() -> None:
    assert resolve_index(IndexSpec(), LITE) == IndexSpec(type="AUTOINDEX")
    assert resolve_index(IndexSpec(type="hnsw", params={"M": 8}), LITE) == IndexSpec(
        type="HNSW", params={"M": 8, "efConstruction": 200}
    )
    assert resolve_index(IndexSpec(type="IVF_FLAT"), SERVER_23).params == {"nlist": 128}
    # A binding holding the spec is cached by value (the worker's sink keeps the ones it checked).
    hnsw = resolve_index(IndexSpec(type="HNSW"), LITE)
    assert len({CollectionBinding("m", "v", 8, index=hnsw), CollectionBinding("m", "v", 8, index=hnsw)}) == 1


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (IndexSpec(type="BTREE"), "config.index.type", "unknown index type 'BTREE'; use one of AUTOINDEX, FLAT"),
        (IndexSpec(type="IVF_PQ"), "config.index.type", "IVF_PQ is not supported on Milvus Lite 3.2.2"),
        (IndexSpec(type="BIN_FLAT"), "config.index.type", "fails once data is flushed"),
        (IndexSpec(type="HNSW", params={"ef": 64}), "config.index.params", "no parameter 'ef'; it takes M, efC"),
        (IndexSpec(type="HNSW", params={"M": 1}), "config.index.params", r"M must be in \[2, 2048\], not 1"),
        (IndexSpec(type="FLAT", params={"nlist": 4}), "config.index.params", "it takes no parameters"),
    ],
)
def test_bad_index_specs_are_refused_naming_the_field(spec: IndexSpec, field: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        resolve_index(spec, LITE)
    assert info.value.field == field
