"""Embed jobs, gateway side: any model output the registry allows; the vectors go to Parquet files in
the dataset store, where StreamJobResults reads them."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs

from embedfleet import errors
from embedfleet.domain import EmbeddingOptions, EmbedParams, ResultsRef
from embedfleet.gateway.kinds.base import JobPlan, Submission
from embedfleet.gateway.kinds.documents import plan_documents
from embedfleet.gateway.kinds.part_sizing import part_sizing
from embedfleet.gateway.kinds.references import CorpusReference, store_path


@dataclass(frozen=True)
class EmbedJobRequest:
    embedding: EmbeddingOptions
    source_path: str = ""
    reference: CorpusReference | None = None
    output_uri: str = ""
    chunk_size: int = 0
    display_name: str = ""


def results_location(sub: Submission, output_uri: str) -> ResultsRef:
    """The job's results directory: its own in the dataset store, or the user's ``output_uri`` there,
    which must not hold files already (parts of two jobs would mix, and a part file is overwritten)."""
    data = sub.stager.data
    if not output_uri:
        return ResultsRef(filesystem=data.uri, directory=f"{data.job_dir(sub.stager.job_id)}/results")
    directory = store_path(sub.ctx, output_uri, "config.output_uri")
    info = data.fs.get_file_info(directory)
    if info.type == pafs.FileType.File or (
        info.type == pafs.FileType.Directory and data.fs.get_file_info(pafs.FileSelector(directory))
    ):
        raise errors.FailedPrecondition(f"output_uri {output_uri!r} already holds files; name a new directory")
    return ResultsRef(filesystem=data.uri, directory=directory)


class EmbedPlanner:
    def plan(self, request: EmbedJobRequest, sub: Submission) -> JobPlan:
        ctx = sub.ctx
        model = ctx.resolve(request.embedding)
        sizing = part_sizing(request.chunk_size, ctx.settings, model.spec.max_seq_length)
        plan = plan_documents(sub, request.source_path, request.reference, sizing)
        params = EmbedParams(
            corpus=plan.corpus, id_digests=plan.id_digests, results=results_location(sub, request.output_uri)
        )
        return plan.job(params, model, request.display_name)
