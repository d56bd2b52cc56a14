"""Collections: the Milvus collections index jobs filled, listed and described under the names their
tenant uses, and dropped on request.

A collection is only ever the caller's own (``tenancy``): another tenant's is NOT_FOUND, exactly like one
that does not exist. Deleting is refused while one of the caller's jobs works on the collection, since
an index job would create it again half-filled and a dedup or cluster job would fail on it; a job
submitted just after the check finds the collection gone, as if it had been dropped before.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedfleet import errors, milvus
from embedfleet.gateway import audit, paging, tenancy
from embedfleet.gateway.context import GatewayContext


@dataclass(frozen=True)
class CollectionInfo:
    name: str  # as the caller names it
    binding: milvus.CollectionBinding
    row_count: int
    active_job_ids: list[str]


class CollectionsCore:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx

    def page(self, page_size: int, page_token: str) -> tuple[list[CollectionInfo], str]:
        """The caller's embedfleet collections by name, from just after ``page_token`` (the last name
        of the previous page); collections embedfleet did not make are left out."""
        size = paging.page_size(page_size)
        if page_token:
            milvus.validate_collection_name(page_token)
        physical = self.ctx.on_milvus(lambda client: client.list_collections())
        names = sorted(
            (name, physical_name)
            for physical_name in physical
            if (name := tenancy.own_collection(physical_name)) is not None and name > page_token
        )
        found: list[CollectionInfo] = []
        active = self._active_jobs()
        for name, physical_name in names:
            if len(found) == size:
                return found, found[-1].name  # more names follow
            try:
                binding = self.ctx.binding(physical_name)
            except errors.FailedPrecondition:
                continue  # not made by embedfleet
            if binding is not None:  # not dropped since the listing
                found.append(self._info(name, physical_name, binding, active))
        return found, ""

    def get(self, name: str) -> CollectionInfo:
        physical = self.ctx.collection(name)
        binding = self.ctx.binding(physical)
        if binding is None:
            raise errors.NotFound(f"collection {name!r} does not exist; `embedfleet collections list` lists yours")
        return self._info(name, physical, binding, self._active_jobs())

    def delete(self, name: str) -> CollectionInfo:
        """Drop the collection and its rows; refused while a job of the caller works on it."""
        info = self.get(name)
        if info.active_job_ids:
            raise errors.FailedPrecondition(
                f"collection {name!r} is in use by job(s) {', '.join(info.active_job_ids)}: cancel them or wait "
                "for them to end, then delete it"
            )
        physical = self.ctx.collection(name)
        self.ctx.on_milvus(lambda client: client.drop_collection(physical))
        audit.record("collection.delete", name, model=info.binding.model, rows=str(info.row_count))
        return info

    def _info(
        self, name: str, physical: str, binding: milvus.CollectionBinding, active: dict[str, list[str]]
    ) -> CollectionInfo:
        stats = self.ctx.on_milvus(lambda client: client.get_collection_stats(physical))
        return CollectionInfo(name, binding, int(stats.get("row_count", 0)), active.get(physical, []))

    def _active_jobs(self) -> dict[str, list[str]]:
        """The caller's QUEUED or RUNNING jobs by the Milvus collection they work on. Every job kind that
        works on a collection names it ``params.collection`` (the physical name). One Redis round trip for
        all of them: a listing page must not cost a read per job running on the cluster."""
        by_collection: dict[str, list[str]] = {}
        for job_id, spec in self.ctx.store.specs(self.ctx.store.active_jobs()).items():
            collection = getattr(spec.params, "collection", None)
            if collection and tenancy.owns(spec.tenant):
                by_collection.setdefault(collection, []).append(job_id)
        return by_collection
