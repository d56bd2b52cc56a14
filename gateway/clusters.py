"""Reading a finished cluster job's results: its clusters, its row assignments and its map, page by page.

The tables are the job's Parquet files beside the collection (``embedfleet/cluster_store.py``); the job
record says where. Page tokens are row offsets this server issued, checked before use.
"""

from __future__ import annotations

from embedfleet import cluster_store, errors
from embedfleet.cluster_types import Assignment, ClusterSummary, MapPoint
from embedfleet.domain import ClusterParams, JobState, ResultsRef
from embedfleet.gateway.jobs import JobsCore

DEFAULT_CLUSTERS_PAGE, MAX_CLUSTERS_PAGE = 100, 1000
DEFAULT_ROWS_PAGE, MAX_ROWS_PAGE = 1000, 10_000


def _page(size: int, token: str, default: int, most: int) -> tuple[int, int]:
    """(offset, size) of a page request; a token that is not an offset this server issued is refused."""
    size = size or default
    if not 0 < size <= most:
        raise errors.InvalidArgument(f"page_size must be between 1 and {most} (0 means {default})", "page_size")
    if token and not (token.isdigit() and len(token) <= 12):
        raise errors.InvalidArgument(
            "page_token is not one this server issued; omit it for the first page", "page_token"
        )
    return int(token or 0), size


def _token(offset: int, more: bool) -> str:
    return str(offset) if more else ""


class ClustersCore:
    """Reads a cluster job's tables; the job is looked up through ``JobsCore.get``, so another tenant's
    job is NOT_FOUND here as everywhere."""

    def __init__(self, jobs: JobsCore) -> None:
        self.jobs = jobs

    def _results(self, job_id: str) -> ResultsRef:
        snap = self.jobs.get(job_id)
        if not isinstance(snap.spec.params, ClusterParams):
            raise errors.FailedPrecondition(f"job {job_id} is an {snap.spec.kind.value} job, not a cluster job")
        if snap.state != JobState.SUCCEEDED:
            raise errors.FailedPrecondition(
                f"cluster job {job_id} is {snap.state.value}; its clusters can be read once it has SUCCEEDED"
            )
        return snap.spec.params.results

    def clusters(self, job_id: str, page_size: int, page_token: str) -> tuple[list[ClusterSummary], str, int]:
        """One page of the clusters (largest first), the next token and how many there are."""
        offset, size = _page(page_size, page_token, DEFAULT_CLUSTERS_PAGE, MAX_CLUSTERS_PAGE)
        summaries = cluster_store.read_summaries(self._results(job_id))
        end = offset + size
        return summaries[offset:end], _token(end, end < len(summaries)), len(summaries)

    def assignments(
        self, job_id: str, page_size: int, page_token: str, cluster: int | None
    ) -> tuple[list[Assignment], str]:
        offset, size = _page(page_size, page_token, DEFAULT_ROWS_PAGE, MAX_ROWS_PAGE)
        rows, more = cluster_store.read_assignments(self._results(job_id), offset, size, cluster)
        return rows, _token(offset + size, more)

    def cluster_map(self, job_id: str) -> tuple[list[MapPoint], list[ClusterSummary]]:
        ref = self._results(job_id)
        return cluster_store.read_map(ref), cluster_store.read_summaries(ref)
