"""The engine without a model: token-budget batch plans, every text its own vector in order whatever
the batching, the bounded pipeline, and the per-device configuration (the CUDA path's included, which
this CPU-only machine checks by construction)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from fakes import HashEncoder
from hypothesis import given, settings
from hypothesis import strategies as st

from embedfleet.domain import InputType
from embedfleet.registry import DEFAULT_MODELS
from embedfleet.worker.embedding import embed_texts
from embedfleet.worker.models.base import EncodedBatch, gather
from embedfleet.worker.models.batching import (
    DEFAULT_MAX_BATCH,
    DEFAULT_TOKEN_BUDGET,
    BatchPolicy,
    batch_policy,
    padded_tokens,
    plan_batches,
)
from embedfleet.worker.models.torch import forward_dtype, token_budget
from embedfleet.worker.pipeline import overlap
from embedfleet.worker.settings import WorkerSettings

policies = st.builds(BatchPolicy, tokens=st.integers(1, 600), max_texts=st.integers(1, 64))


@settings(deadline=None)  # the machine is shared: time is not what this checks
@given(lengths=st.lists(st.integers(0, 300), max_size=200), policy=policies)
def test_a_plan_holds_every_text_once_within_the_budget(lengths: list[int], policy: BatchPolicy) -> None:
    batches = plan_batches(lengths, policy)
    assert sorted(int(i) for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert widths == sorted(widths, reverse=True) and 1 <= len(batch) <= policy.max_texts
        # Over budget only a text that alone exceeds it, in a batch of its own.
        assert max(widths[0], 1) * len(batch) <= policy.tokens or len(batch) == 1
    # Longest first across batches too: a part's costliest pass runs (and fails, if it must) first.
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_sorting_by_length_cuts_padding_against_fixed_count_batches() -> None:
    rng = np.random.default_rng(0)
    lengths = [int(x) for x in rng.integers(5, 256, 512)]
    fixed = [np.arange(i, min(i + 32, 512)) for i in range(0, 512, 32)]  # arrival order, 32 at a time
    budget = plan_batches(lengths, BatchPolicy(tokens=4096, max_texts=256))
    assert padded_tokens(lengths, budget) < 0.6 * padded_tokens(lengths, fixed)


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="abc ", max_size=40), max_size=60),
    policy=policies,
    input_type=st.sampled_from(list(InputType)),
)
def test_every_text_gets_its_own_vector_in_order_whatever_the_batching(
    texts: list[str], policy: BatchPolicy, input_type: InputType
) -> None:
    alone = HashEncoder(policy=BatchPolicy(tokens=1, max_texts=1))
    expected = [alone.encode([t], input_type).vectors[0] for t in texts]
    out = embed_texts(HashEncoder(policy=policy), texts, input_type=input_type, normalize=False)
    assert out.vectors.shape == (len(texts), 16) and out.raw.shape == (len(texts), 16)
    for got, want in zip(out.raw, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert out.truncated == sum(len(t.split()) > 8 for t in texts)


def test_gather_refuses_a_missing_vector() -> None:
    batch = EncodedBatch(rows=np.array([0, 2]), vectors=np.ones((2, 4), np.float32), truncated=0, tokens=2, padded=2)
    with pytest.raises(RuntimeError, match="2 of 3 vectors"):
        gather([batch], 3, 4)


def _counted(n: int, produced: list[int]) -> Iterator[int]:
    """0 .. n-1, each noted in ``produced`` as it is made."""
    for i in range(n):
        produced.append(i)
        yield i


def test_the_pipeline_keeps_order_and_stays_bounded() -> None:
    produced: list[int] = []
    consumed: list[int] = []

    def consume(i: int) -> None:
        time.sleep(0.002)
        assert len(produced) - i <= 4  # at most depth queued + one in hand + one being produced
        consumed.append(i)

    overlap(_counted(20, produced), consume, depth=2)
    assert consumed == list(range(20))


def test_the_pipeline_overlaps_the_two_stages() -> None:
    """The producer makes item 1 only once item 0 is being consumed: run one after the other, this
    would wait forever (bounded here by the timeout)."""
    consuming = threading.Event()

    def items() -> Iterator[int]:
        yield 0
        assert consuming.wait(10), "item 0 was not consumed while item 1 was being produced"
        yield 1

    consumed: list[int] = []

    def consume(i: int) -> None:
        consuming.set()
        consumed.append(i)

    overlap(items(), consume)
    assert consumed == [0, 1]


def test_a_consumer_error_stops_the_producer_and_is_raised() -> None:
    produced: list[int] = []

    def consume(i: int) -> None:
        if i == 3:
            raise ValueError("Milvus refused row 3")

    with pytest.raises(ValueError, match="row 3"):
        overlap(_counted(1000, produced), consume)
    assert len(produced) < 10


def test_a_producer_error_waits_for_the_consumer_then_is_raised() -> None:
    consumed: list[int] = []
    done = threading.Event()

    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("CUDA OOM")

    def consume(i: int) -> None:
        time.sleep(0.05)
        consumed.append(i)
        if i == 2:
            done.set()

    with pytest.raises(RuntimeError, match="OOM"):
        overlap(items(), consume)
    assert done.is_set() and consumed == [1, 2]  # nothing left half-written behind the error


def test_budgets_per_device_model_and_worker() -> None:
    assert batch_policy("cpu") == BatchPolicy(DEFAULT_TOKEN_BUDGET["cpu"], DEFAULT_MAX_BATCH["cpu"])
    assert batch_policy("cuda:1") == BatchPolicy(DEFAULT_TOKEN_BUDGET["cuda"], DEFAULT_MAX_BATCH["cuda"])
    assert DEFAULT_TOKEN_BUDGET["cuda"] > DEFAULT_TOKEN_BUDGET["cpu"]
    assert batch_policy("cpu", 1000, 8) == BatchPolicy(1000, 8)
    spec = DEFAULT_MODELS[0].model_copy(update={"cpu_token_budget": 2048, "cuda_token_budget": 65536})
    assert token_budget(spec, "cpu") == 2048 and token_budget(spec, "cuda") == 65536
    assert token_budget(spec, "cuda", override=500) == 500  # EMBEDFLEET_TOKEN_BUDGET wins
    assert token_budget(DEFAULT_MODELS[0], "cuda") == 0  # then the device default applies


def test_the_cuda_path_runs_half_precision_and_the_cpu_stays_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    assert forward_dtype("cuda", "float16") == "float16"
    assert forward_dtype("cuda:0", "bfloat16") == "bfloat16"
    assert forward_dtype("cpu", "float16") == "float32"
    with pytest.raises(ValueError, match="float8"):
        forward_dtype("cuda", "float8")
    monkeypatch.setenv("EMBEDFLEET_CUDA_DTYPE", "bfloat16")
    monkeypatch.setenv("EMBEDFLEET_TOKEN_BUDGET", "32768")
    worker = WorkerSettings()
    assert (worker.cuda_dtype, worker.token_budget, worker.encode_batch_size) == ("bfloat16", 32768, 0)
    monkeypatch.setenv("EMBEDFLEET_CUDA_DTYPE", "float8")
    with pytest.raises(ValueError, match="cuda_dtype"):
        WorkerSettings()
