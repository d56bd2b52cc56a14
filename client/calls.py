"""What each unary and paged RPC of the SDK sends and what it returns, written once for both clients.

A method of ``EmbedfleetClient`` and its twin on ``AsyncEmbedfleetClient`` differ only in how they
wait (a blocking call or an ``await``); the request they build and what they read from the response
are the same, so they live here, one entry per call, and each client's method is one line
(``self._call(calls.GET_JOB, job_id)``) that its ``_call``/``_paged`` runs in its own way. A new RPC
is one entry here and a one-line method in each client, and the two cannot build or read it
differently. Requests with more to check than a field or two are built in ``requests``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from embedfleet.client import requests as rq
from embedfleet.client.clusters import assignment_from_pb, map_from_pb, summary_from_pb
from embedfleet.client.types import (
    Collection,
    CreatedKey,
    DedupGroup,
    DeploymentStatus,
    EmbedResult,
    Job,
    ModelInfo,
    SearchHit,
    api_key_from_pb,
)
from embedfleet.v1 import collections_pb2, jobs_pb2, keys_pb2, models_pb2, status_pb2

R = TypeVar("R")


@dataclass(frozen=True)
class Unary(Generic[R]):
    """One unary RPC: ``service`` names the client's stub attribute (``jobs``, ``keys``...), ``request``
    builds the request from the method's arguments and ``result`` reads the response."""

    service: str
    method: str
    request: Callable[..., Any]
    result: Callable[[Any], R]


@dataclass(frozen=True)
class Paged(Generic[R]):
    """One paged RPC: ``request(*args, page_token)`` asks for a page, ``items`` reads one; the clients
    ask for page after page until ``next_page_token`` is empty."""

    service: str
    method: str
    request: Callable[..., Any]
    items: Callable[[Any], Iterable[R]]


def _job(response: Any) -> Job:
    return Job.from_pb(response.job)


def _collection(response: Any) -> Collection:
    return Collection.from_pb(response.collection)


# -- jobs -------------------------------------------------------------------------------------
SUBMIT_DISTILL = Unary("jobs", "SubmitDistillJob", rq.distill_request, _job)
SUBMIT_EVALUATE = Unary("jobs", "SubmitEvaluateJob", rq.evaluate_request, _job)
SUBMIT_DEDUP = Unary("jobs", "SubmitDedupJob", rq.dedup_request, _job)
SUBMIT_CLUSTER = Unary("jobs", "SubmitClusterJob", rq.cluster_request, _job)
GET_JOB = Unary("jobs", "GetJob", lambda job_id: jobs_pb2.GetJobRequest(job_id=job_id), _job)
CANCEL_JOB = Unary("jobs", "CancelJob", lambda job_id: jobs_pb2.CancelJobRequest(job_id=job_id), _job)
RESUME_JOB = Unary("jobs", "ResumeJob", lambda job_id: jobs_pb2.ResumeJobRequest(job_id=job_id), _job)
GET_CLUSTER_MAP = Unary(
    "jobs", "GetClusterMap", lambda job_id: jobs_pb2.GetClusterMapRequest(job_id=job_id), map_from_pb
)
LIST_JOBS = Paged("jobs", "ListJobs", rq.list_jobs_request, lambda page: (Job.from_pb(j) for j in page.jobs))
DEDUP_GROUPS = Paged(
    "jobs", "GetDedupGroups", rq.dedup_groups_request, lambda page: (DedupGroup.from_pb(g) for g in page.groups)
)
CLUSTERS = Paged(
    "jobs", "ListClusters", rq.list_clusters_request, lambda page: (summary_from_pb(c) for c in page.clusters)
)
CLUSTER_ASSIGNMENTS = Paged(
    "jobs",
    "ListClusterAssignments",
    rq.cluster_assignments_request,
    lambda page: (assignment_from_pb(a) for a in page.assignments),
)

# -- embedding, search, models, status --------------------------------------------------------
EMBED = Unary("embeddings", "Embed", rq.embed_request, EmbedResult.from_pb)
SEARCH = Unary(
    "searches",
    "Search",
    rq.search_request,
    lambda response: [[SearchHit.from_pb(h) for h in result.hits] for result in response.results],
)
LIST_MODELS = Unary(
    "models",
    "ListModels",
    models_pb2.ListModelsRequest,
    lambda response: [ModelInfo.from_pb(m) for m in response.models],
)
GET_STATUS = Unary("statuses", "GetStatus", status_pb2.GetStatusRequest, DeploymentStatus.from_pb)

# -- collections ------------------------------------------------------------------------------
LIST_COLLECTIONS = Paged(
    "collections",
    "ListCollections",
    rq.list_collections_request,
    lambda page: (Collection.from_pb(c) for c in page.collections),
)
GET_COLLECTION = Unary(
    "collections", "GetCollection", lambda name: collections_pb2.GetCollectionRequest(name=name), _collection
)
DELETE_COLLECTION = Unary(
    "collections", "DeleteCollection", lambda name: collections_pb2.DeleteCollectionRequest(name=name), _collection
)

# -- API keys ---------------------------------------------------------------------------------
CREATE_KEY = Unary(
    "keys",
    "CreateKey",
    rq.create_key_request,
    lambda answer: CreatedKey(api_key_from_pb(answer.key), answer.secret),
)
LIST_KEYS = Unary(
    "keys", "ListKeys", keys_pb2.ListKeysRequest, lambda response: [api_key_from_pb(k) for k in response.keys]
)
REVOKE_KEY = Unary(
    "keys",
    "RevokeKey",
    lambda key_id: keys_pb2.RevokeKeyRequest(key_id=key_id),
    lambda response: api_key_from_pb(response.key),
)
