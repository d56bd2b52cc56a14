"""Cluster job results as the SDK returns them: the plain values of ``embedfleet.cluster_types``
built from the v1 messages (no protobuf in user code)."""

from __future__ import annotations

from embedfleet.cluster_types import Assignment, ClusterMap, ClusterSummary, MapPoint, Representative
from embedfleet.v1 import jobs_pb2


def summary_from_pb(pb: jobs_pb2.ClusterSummary) -> ClusterSummary:
    return ClusterSummary(
        cluster=pb.cluster_id,
        size=pb.size,
        terms=[(t.term, t.score) for t in pb.terms],
        representatives=[Representative(r.id, r.text, r.similarity) for r in pb.representatives],
    )


def assignment_from_pb(pb: jobs_pb2.ClusterAssignment) -> Assignment:
    return Assignment(pb.id, pb.cluster_id, pb.similarity)


def map_from_pb(pb: jobs_pb2.GetClusterMapResponse) -> ClusterMap:
    return ClusterMap(
        points=[MapPoint(p.id, p.cluster_id, p.x, p.y, p.text) for p in pb.points],
        clusters=[summary_from_pb(c) for c in pb.clusters],
        projection=pb.projection,
    )
