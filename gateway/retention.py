"""Retention of job data in the dataset store: a job's directory (spilled input shards, results)
lives as long as its record in the job store (``job_ttl_seconds``, refreshed while the job runs),
and is removed by a sweep once the record is gone.

A directory whose newest file is younger than ``grace_s`` is kept even without a record: it may
belong to a submission still streaming in, whose record is created only once it is accepted.
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow.fs as pafs

from embedfleet import errors
from embedfleet.datastore import DataStore
from embedfleet.jobstore import JobStore

log = logging.getLogger(__name__)


def sweep_job_data(data: DataStore, store: JobStore, grace_s: float, now: float | None = None) -> list[str]:
    """Remove the directories of jobs whose records are gone; returns their job ids."""
    root = f"{data.root.rstrip('/')}/jobs"
    cutoff = (now if now is not None else time.time()) - grace_s
    removed = []
    for entry in data.fs.get_file_info(pafs.FileSelector(root, allow_not_found=True)):
        job_id = entry.base_name
        if entry.type != pafs.FileType.Directory or store.r.exists(store.job_key(job_id)):
            continue
        files = data.fs.get_file_info(pafs.FileSelector(entry.path, recursive=True))
        stamps = [f.mtime.timestamp() for f in files if f.type == pafs.FileType.File and f.mtime is not None]
        newest = max(stamps, default=0.0)
        if newest < cutoff:
            try:
                data.remove_job(job_id)
            except errors.InvalidArgument:
                continue  # not a directory the system made (not named by a job id): leave it
            removed.append(job_id)
    return removed


def run_retention_loop(
    data: DataStore, store: JobStore, interval_s: float, grace_s: float, stop: threading.Event
) -> None:
    """Sweep now and then, until ``stop`` is set."""
    while not stop.wait(interval_s):
        try:
            removed = sweep_job_data(data, store, grace_s)
            if removed:
                log.info("removed the data of %d expired jobs", len(removed))
        except Exception:
            log.warning("job data sweep failed", exc_info=True)
