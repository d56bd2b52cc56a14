"""The items of each page of a paged RPC, as the SDK returns them; both clients page with these (their
``_paged`` asks for page after page until ``next_page_token`` is empty)."""

from __future__ import annotations

from collections.abc import Iterator

from embedfleet.client.clusters import assignment_from_pb, summary_from_pb
from embedfleet.client.types import Collection, DedupGroup, Job
from embedfleet.cluster_types import Assignment, ClusterSummary
from embedfleet.v1 import collections_pb2, jobs_pb2


def listed_jobs(page: jobs_pb2.ListJobsResponse) -> Iterator[Job]:
    return (Job.from_pb(j) for j in page.jobs)


def dedup_groups(page: jobs_pb2.GetDedupGroupsResponse) -> Iterator[DedupGroup]:
    return (DedupGroup.from_pb(g) for g in page.groups)


def listed_clusters(page: jobs_pb2.ListClustersResponse) -> Iterator[ClusterSummary]:
    return (summary_from_pb(c) for c in page.clusters)


def listed_assignments(page: jobs_pb2.ListClusterAssignmentsResponse) -> Iterator[Assignment]:
    return (assignment_from_pb(a) for a in page.assignments)


def listed_collections(page: collections_pb2.ListCollectionsResponse) -> Iterator[Collection]:
    return (Collection.from_pb(c) for c in page.collections)
