"""The job data sweep (real Redis, a local dataset store): a job's directory goes with its record,
and a fresh directory without one (a submission streaming in) stays."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from embedfleet.datastore import DataStore
from embedfleet.domain import EmbeddingOptions, EmbedParams, JobSpec
from embedfleet.gateway.retention import sweep_job_data
from embedfleet.jobstore import JobStore


def _job_dir(root: Path, age_s: float) -> str:
    job_id = uuid.uuid4().hex
    shard = root / "jobs" / job_id / "input" / "shard-00000.parquet"
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"x")
    then = time.time() - age_s
    os.utime(shard, (then, then))
    return job_id


def test_the_sweep_removes_only_the_data_of_jobs_that_are_gone(tmp_path: Path, store: JobStore) -> None:
    data = DataStore(str(tmp_path))
    expired, live, streaming = _job_dir(tmp_path, 7200), _job_dir(tmp_path, 7200), _job_dir(tmp_path, 10)
    (tmp_path / "jobs" / "notes").mkdir()
    spec = JobSpec(params=EmbedParams(), embedding=EmbeddingOptions(model="m"), output_dimensions=3, part_size=1)
    store.create_job(live, spec, total=1, parts=1)
    assert sweep_job_data(data, store, grace_s=3600) == [expired]
    assert sorted(p.name for p in (tmp_path / "jobs").iterdir()) == sorted([live, streaming, "notes"])
