"""Conversions between v1 messages and domain types round-trip, and refuse out-of-range enums.
Pure: no services."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedfleet.domain import (
    EmbeddingOptions,
    EmbedParams,
    IndexParams,
    InputType,
    JobSnapshot,
    JobSpec,
    JobState,
    PartFailure,
    Precision,
    ProgressUnit,
    StoredField,
)
from embedfleet.errors import InvalidArgument
from embedfleet.gateway import convert
from embedfleet.gateway.embedding import EmbedResult
from embedfleet.gateway.kinds.index import IndexRequest
from embedfleet.jobstore import PartVectors
from embedfleet.v1 import common_pb2, jobs_pb2
from embedfleet.wire import JOB_STATE, batch_vectors

options_st = st.builds(
    EmbeddingOptions,
    model=st.text(max_size=20),
    dimensions=st.integers(0, 4096),
    precision=st.sampled_from(Precision),
    input_type=st.sampled_from(InputType),
    normalize=st.booleans(),
)


@given(options_st)
def test_embedding_options_round_trip(options: EmbeddingOptions) -> None:
    assert convert.options_from_pb(convert.options_to_pb(options)) == options


def test_options_defaults_when_unset() -> None:
    assert convert.options_from_pb(common_pb2.EmbeddingOptions()) == EmbeddingOptions()


@pytest.mark.parametrize("field", ["precision", "input_type"])
@pytest.mark.parametrize("value", [99, -1, 42])
def test_out_of_range_enums_are_refused(field: str, value: int) -> None:
    config = jobs_pb2.IndexJobConfig(collection="c")
    setattr(config.embedding, field, value)
    with pytest.raises(InvalidArgument) as info:
        convert.index_from_pb(config)
    assert info.value.field == f"config.embedding.{field}"
    bad_field = jobs_pb2.IndexJobConfig(extra_fields=[jobs_pb2.VectorField(name="b", precision=99)])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="extra_fields"):
        convert.index_from_pb(bad_field)


def test_state_filter() -> None:
    assert convert.state_filter_from_pb(0) is None
    assert convert.state_filter_from_pb(JOB_STATE.to_pb(JobState.FAILED)) == JobState.FAILED
    with pytest.raises(InvalidArgument, match="state 99"):
        convert.state_filter_from_pb(99)


def test_index_config_to_request() -> None:
    config = jobs_pb2.IndexJobConfig(
        collection="docs",
        chunk_size=64,
        display_name="n",
        source=jobs_pb2.CorpusSource(path="/data/x.jsonl"),
        extra_fields=[jobs_pb2.VectorField(name="v", dimensions=8, precision=common_pb2.PRECISION_INT8)],
        index=jobs_pb2.IndexSpec(type="hnsw", params={"M": 8}),
    )
    request = convert.index_from_pb(config)
    assert isinstance(request, IndexRequest)
    assert (request.collection, request.chunk_size, request.source_path) == ("docs", 64, "/data/x.jsonl")
    assert request.extra_fields[0].precision == Precision.INT8
    assert (request.index.type, request.index.params) == ("hnsw", {"M": 8})


def test_job_snapshot_to_pb() -> None:
    spec = JobSpec(
        params=IndexParams(
            collection="docs", stored_fields=(StoredField(name="v", dimensions=8, precision=Precision.INT8),)
        ),
        embedding=EmbeddingOptions(model="m"),
        output_dimensions=16,
        part_size=10,
        unit=ProgressUnit.DOCUMENTS,
    )
    snap = JobSnapshot(
        id="j",
        spec=spec,
        state=JobState.FAILED,
        total=25,
        failed=10,
        done=15,
        parts_total=3,
        parts_finished=3,
        created_at=1.5,
        failed_parts=[PartFailure(part=1, first_unit=10, units=10, message="boom")],
    )
    pb = convert.job_to_pb(snap)
    assert (pb.collection, pb.model, pb.progress.chunks_total, pb.progress.total) == ("docs", "m", 3, 25)
    assert pb.kind == jobs_pb2.JOB_KIND_INDEX and pb.state == jobs_pb2.JOB_STATE_FAILED
    assert (pb.failed_chunks[0].chunk_index, pb.failed_chunks[0].first_document) == (1, 10)
    assert (
        convert.job_to_pb(
            snap.model_copy(update={"spec": spec.model_copy(update={"params": EmbedParams()})})
        ).collection
        == ""
    )


def test_vectors_pass_through_untouched() -> None:
    data = bytes(range(16))
    result = EmbedResult(data=data, rows=2, dimensions=8, precision=Precision.INT8, model="m", version="v", truncated=0)
    pb = convert.embed_result_to_pb(result)
    assert pb.embeddings.data == data and list(pb.embeddings.ids) == ["0", "1"]
    assert batch_vectors(pb.embeddings).shape == (2, 8)
    part = convert.part_result_to_pb(3, 30, PartVectors(["a"], 16, Precision.BINARY, b"\x01\x02"))
    assert (part.chunk_index, part.first_document, part.embeddings.data) == (3, 30, b"\x01\x02")
    assert batch_vectors(part.embeddings).shape == (1, 2)
