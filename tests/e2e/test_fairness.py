"""Fair scheduling across jobs, on each backend: a small job submitted behind a large one finishes
while the large one is still running, and Embed answers while bulk chunks run."""

from __future__ import annotations

import time

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.domain import JobState


def _docs(n: int, tag: str) -> list[dict[str, str]]:
    return [{"id": f"{tag}-{i}", "text": f"{tag} sentence number {i} about fair queues"} for i in range(n)]


def test_a_small_job_does_not_wait_behind_a_large_one(client: EmbedfleetClient) -> None:
    large = client.submit_embed(_docs(240, "large"), chunk_size=5)  # 48 chunks
    small = client.submit_embed(_docs(1, "small"))
    started = time.monotonic()
    embed_latency = time.monotonic()
    assert client.embed(["is anyone there?"]).vectors.shape == (1, 384)  # while bulk chunks run
    embed_latency = time.monotonic() - embed_latency
    assert client.wait(small.id).state == JobState.SUCCEEDED
    waited = time.monotonic() - started
    behind = client.get_job(large.id)
    # First come, first served, the small job would have waited for all 48 chunks of the large one.
    assert behind.state == JobState.RUNNING and behind.chunks_finished < behind.chunks_total // 2, (waited, behind)
    assert embed_latency < 10, embed_latency
    assert client.wait(large.id).state == JobState.SUCCEEDED
