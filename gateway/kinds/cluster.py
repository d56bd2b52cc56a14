"""Cluster jobs, gateway side: validate the method's parameters, check the collection (it exists, and was
filled by the model the request names, the default model if none), count the rows the filter selects
(which also proves Milvus can parse the filter) and plan one part; progress counts rows assigned."""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet import errors, milvus
from embedfleet.cluster_store import results_directory
from embedfleet.collection_scan import check_filter, count
from embedfleet.domain import ClusterMethod, ClusterParams, EmbeddingOptions, JobSpec, ProgressUnit, ResultsRef
from embedfleet.gateway.context import GatewayContext
from embedfleet.gateway.kinds.base import JobPlan, Submission

MAX_K = 1000
MIN_SAMPLE, MAX_SAMPLE = 1000, 1_000_000
MAX_MIN_CLUSTER_SIZE = 10_000
MAX_LISTED = 50  # top terms and representatives per cluster


@dataclass(frozen=True)
class ClusterRequest:
    collection: str
    filter: str = ""
    method: ClusterMethod = ClusterMethod.KMEANS
    k: int = 0
    k_min: int = 0
    k_max: int = 0
    sample_size: int = 0
    min_cluster_size: int = 0
    min_samples: int = 0
    top_terms: int = 0
    representatives: int = 0
    model: str = ""
    seed: int = 0
    display_name: str = ""


def _in_range(value: int, low: int, high: int, field: str, meaning: str = "") -> int:
    if not low <= value <= high:
        zero = f" ({meaning})" if meaning else ""
        raise errors.InvalidArgument(f"{field.split('.')[-1]} {value} must be between {low} and {high}{zero}", field)
    return value


class ClusterPlanner:
    def plan(self, request: ClusterRequest, sub: Submission) -> JobPlan:
        ctx = sub.ctx
        expr = check_filter(request.filter, "config.filter", ctx.settings.max_filter_bytes)
        params = _parameters(request, expr)
        collection = ctx.collection(request.collection)  # the caller's tenant's collection of that name
        binding = ctx.binding(collection)
        if binding is None:
            raise errors.NotFound(f"collection {request.collection!r} does not exist; run an index job to create it")
        model = ctx.registry.resolve(request.model).name
        if model != binding.model:
            raise errors.FailedPrecondition(
                f"collection {request.collection!r} holds vectors of {binding.model!r}, not of {model!r}"
                f"{'' if request.model else ' (the default model)'}; name the collection's model, or cluster a "
                f"collection {model!r} filled"
            )
        rows = count(ctx.milvus_client(), collection, params.filter, "config.filter")
        _check_size(params, rows, ctx, request.collection)
        directory = results_directory(ctx.datastore.root, collection, sub.stager.job_id)
        params = params.model_copy(
            update={
                "collection": collection,
                "rows": rows,
                "k_max": min(params.k_max, rows - 1),
                "results": ResultsRef(filesystem=ctx.datastore.uri, directory=directory),
            }
        )
        spec = JobSpec(
            params=params,
            embedding=EmbeddingOptions(model=binding.model, dimensions=binding.dimensions),
            model_version=binding.model_version,
            output_dimensions=binding.dimensions,
            unit=ProgressUnit.DOCUMENTS,
            display_name=request.display_name,
        )
        return JobPlan(spec, total=rows, parts=1)


def _parameters(request: ClusterRequest, expr: str) -> ClusterParams:
    """The request's parameters validated and with defaults filled in, ``expr`` the checked filter (results
    are set by the planner)."""
    milvus.validate_collection_name(request.collection)
    kmeans = request.method == ClusterMethod.KMEANS
    if not kmeans and (request.k or request.k_min or request.k_max or request.sample_size):
        raise errors.InvalidArgument(
            "k, k_min, k_max and sample_size are k-means settings; HDBSCAN finds k itself", "config.k"
        )
    if kmeans and (request.min_cluster_size or request.min_samples):
        raise errors.InvalidArgument(
            "min_cluster_size and min_samples are HDBSCAN settings; set method HDBSCAN or leave them unset",
            "config.min_cluster_size",
        )
    if request.k:
        _in_range(request.k, 2, MAX_K, "config.k", "0 chooses k on a sample")
    k_min = _in_range(request.k_min or 2, 2, MAX_K, "config.k_min", "0 means 2")
    k_max = _in_range(request.k_max or max(30, k_min), k_min, MAX_K, "config.k_max", "0 means 30; at least k_min")
    min_cluster = _in_range(request.min_cluster_size or 10, 2, MAX_MIN_CLUSTER_SIZE, "config.min_cluster_size")
    return ClusterParams(
        collection=request.collection,
        filter=expr,
        method=request.method,
        k=request.k,
        k_min=k_min,
        k_max=k_max,
        sample_size=_in_range(request.sample_size or 100_000, MIN_SAMPLE, MAX_SAMPLE, "config.sample_size"),
        min_cluster_size=min_cluster,
        min_samples=_in_range(request.min_samples or min_cluster, 1, MAX_MIN_CLUSTER_SIZE, "config.min_samples"),
        top_terms=_in_range(request.top_terms or 10, 1, MAX_LISTED, "config.top_terms", "0 means 10"),
        representatives=_in_range(request.representatives or 5, 1, MAX_LISTED, "config.representatives"),
        seed=request.seed or 1,
        results=ResultsRef(filesystem="", directory=""),
    )


def _check_size(params: ClusterParams, rows: int, ctx: GatewayContext, collection: str) -> None:
    where = f"collection {collection!r}" + (" with this filter" if params.filter else "")
    if rows < 2:
        raise errors.FailedPrecondition(f"{where} has {rows} row(s); clustering needs at least 2")
    if params.method == ClusterMethod.HDBSCAN and rows > ctx.settings.max_hdbscan_rows:
        raise errors.FailedPrecondition(
            f"{where} has {rows} rows; HDBSCAN takes at most {ctx.settings.max_hdbscan_rows} (its cost grows with "
            "the square of the rows): use method KMEANS, or a filter that selects fewer rows"
        )
    if params.method == ClusterMethod.KMEANS and not params.k and rows <= params.k_min:
        raise errors.InvalidArgument(
            f"{where} has {rows} rows, too few to choose k from {params.k_min} up: give k", "config.k_min"
        )
    if params.k > rows:
        raise errors.InvalidArgument(f"k {params.k} is more than the {rows} rows selected", "config.k")
    if params.method == ClusterMethod.HDBSCAN and params.min_cluster_size > rows:
        raise errors.InvalidArgument(
            f"min_cluster_size {params.min_cluster_size} is more than the {rows} rows selected",
            "config.min_cluster_size",
        )
