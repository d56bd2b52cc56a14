"""The wire codec: every enum value maps both ways, unknown numbers are refused, vectors round-trip.
Pure: no services."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from embedfleet import wire
from embedfleet.domain import Precision
from embedfleet.errors import InvalidArgument

CODECS = [
    wire.PRECISION,
    wire.INPUT_TYPE,
    wire.JOB_STATE,
    wire.ROLE,
    wire.JOB_KIND,
    wire.MODEL_ROLE,
    wire.SEARCH_MODE,
    wire.CORPUS_FORMAT,
    wire.DEDUP_MODE,
    wire.KEEP_POLICY,
    wire.INGEST_DEDUP_ACTION,
    wire.DEDUP_ACTION,
    wire.CLUSTER_METHOD,
    wire.BIT_BASIS,
]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.domain.__name__)
def test_every_value_maps_both_ways(codec: wire.EnumCodec) -> None:  # type: ignore[type-arg]
    numbers = {codec.to_pb(member) for member in codec.domain}
    assert len(numbers) == len(codec.domain) and 0 not in numbers
    for member in codec.domain:
        assert codec.from_pb(codec.to_pb(member), "f") == member


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.domain.__name__)
@given(number=st.integers(min_value=-(2**31), max_value=2**31 - 1))
def test_unknown_numbers_are_refused_with_the_field(codec: wire.EnumCodec, number: int) -> None:  # type: ignore[type-arg]
    known = {codec.to_pb(m) for m in codec.domain}
    if number in known or (number == 0 and codec.default is not None):
        return
    with pytest.raises(InvalidArgument) as info:
        codec.from_pb(number, "options.precision")
    assert info.value.field == "options.precision" and str(number) in str(info.value)


def test_unspecified_is_the_default_or_no_filter() -> None:
    assert wire.PRECISION.from_pb(0, "p") == Precision.FLOAT32
    assert wire.JOB_STATE.optional_from_pb(0, "state") is None
    with pytest.raises(InvalidArgument):
        wire.JOB_STATE.from_pb(0, "state")


@pytest.mark.parametrize("precision", list(Precision))
@given(rows=st.integers(0, 5), dims=st.integers(1, 40), data=st.data())
def test_vectors_round_trip(precision: Precision, rows: int, dims: int, data: st.DataObject) -> None:
    width = wire.packed_width(dims, precision)
    array = data.draw(hnp.arrays(wire.DTYPES[precision], (rows, width)))
    packed = wire.pack_vectors(array, precision)
    assert len(packed) == rows * width * wire.DTYPES[precision].itemsize
    out = wire.unpack_vectors(packed, rows, dims, precision)
    assert np.array_equal(out, array, equal_nan=precision in (Precision.FLOAT32, Precision.FLOAT16))


def test_truncated_vector_data_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="need 8"):
        wire.unpack_vectors(b"\x00" * 12, 2, 4, Precision.INT8)
