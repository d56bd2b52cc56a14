"""The gateway side of each job kind, found by its request type in one table (see ``base.JobPlanner``)."""

from __future__ import annotations

from typing import Any

from embedfleet.gateway.kinds.base import JobPlanner
from embedfleet.gateway.kinds.cluster import ClusterPlanner, ClusterRequest
from embedfleet.gateway.kinds.dedup import DedupPlanner, DedupRequest
from embedfleet.gateway.kinds.distill import DistillPlanner, DistillRequest
from embedfleet.gateway.kinds.embed import EmbedJobRequest, EmbedPlanner
from embedfleet.gateway.kinds.evaluate import EvaluatePlanner, EvaluateRequest
from embedfleet.gateway.kinds.index import IndexPlanner, IndexRequest

JobRequest = IndexRequest | EmbedJobRequest | DistillRequest | EvaluateRequest | DedupRequest | ClusterRequest

PLANNERS: dict[type[Any], JobPlanner[Any]] = {
    IndexRequest: IndexPlanner(),
    EmbedJobRequest: EmbedPlanner(),
    DistillRequest: DistillPlanner(),
    EvaluateRequest: EvaluatePlanner(),
    DedupRequest: DedupPlanner(),
    ClusterRequest: ClusterPlanner(),
}
