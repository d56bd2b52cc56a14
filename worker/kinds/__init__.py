"""The worker side of each job kind, found by kind in one table (see ``base.PartHandler``)."""

from __future__ import annotations

from embedfleet.domain import JobKind
from embedfleet.worker.kinds.base import PartHandler
from embedfleet.worker.kinds.cluster import ClusterPart
from embedfleet.worker.kinds.dedup import DedupPart
from embedfleet.worker.kinds.distill import DistillPart
from embedfleet.worker.kinds.embed import EmbedPart
from embedfleet.worker.kinds.evaluate import EvaluatePart
from embedfleet.worker.kinds.index import IndexPart

HANDLERS: dict[JobKind, PartHandler] = {
    JobKind.INDEX: IndexPart(),
    JobKind.EMBED: EmbedPart(),
    JobKind.DISTILL: DistillPart(),
    JobKind.EVALUATE: EvaluatePart(),
    JobKind.DEDUP: DedupPart(),
    JobKind.CLUSTER: ClusterPart(),
}
