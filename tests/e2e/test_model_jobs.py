"""Distillation and evaluation jobs through the API, on the real worker and the real packaged model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState
from embedfleet.local import LocalCluster


def test_evaluate_job_scores_the_default_model(client: EmbedfleetClient) -> None:
    job = client.wait(client.submit_evaluate("all-MiniLM-L6-v2", eval_limit=100).id)
    assert job.state == JobState.SUCCEEDED, job.error
    assert 0.35 < job.metrics["lee_spearman"] < 0.65  # all-MiniLM-L6-v2 is ~0.51 on the full Lee set
    assert 0.2 < job.metrics["recall_at_10"] <= 1.0 and 0 < job.metrics["ndcg_at_10"] <= 1.0


@pytest.fixture(scope="module")
def celery_client(celery_system: LocalCluster) -> Iterator[EmbedfleetClient]:
    with EmbedfleetClient(celery_system.gateway_address, timeout=120) as c:
        yield c


def test_distill_job_trains_gates_registers_and_serves(
    celery_client: EmbedfleetClient, wordnet_docs: list[dict]
) -> None:
    """Training is backend-agnostic job logic; the evaluate test above covers model jobs on both backends."""
    client = celery_client
    texts = [str(d["text"]) for d in wordnet_docs[1000:1400]]
    options = {"keep_layers": 2, "max_steps": 24, "batch_size": 16, "eval_limit": 60, "matryoshka_dimensions": [128]}
    job = client.wait(client.submit_distill("mini-student", texts, min_quality_fraction=0.05, **options).id)
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.done == job.total == 24  # progress counted optimizer steps
    assert job.metrics["agreement_after"] > job.metrics["agreement_before"]
    assert 0 < job.metrics["heldout_agreement"] < 1  # the last held-out check, reported as it ran
    assert job.outputs["model"] == "mini-student" and job.outputs["promoted"] == "true"
    assert "student.dim128.lee_spearman" in job.metrics and "fraction.lee_spearman" in job.metrics

    served = {m.name: m for m in client.list_models()}["mini-student"]
    assert (served.role, served.origin, served.matryoshka_dimensions) == ("mrl", "store", [128])
    assert served.version.startswith("sha256:") and "lee_spearman" in served.metrics
    vectors = client.embed(["a promoted student serves at once"], model="mini-student", dimensions=128).vectors
    assert vectors.shape == (1, 128) and np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-5)

    # A gate the student cannot pass: registered, not promoted, not served.
    refused = client.wait(client.submit_distill("strict-student", texts, min_quality_fraction=1.5, **options).id)
    assert refused.state == JobState.SUCCEEDED and refused.outputs["promoted"] == "false"
    assert "of the teacher's" in refused.outputs["gate"]
    assert "strict-student" not in {m.name for m in client.list_models()}
