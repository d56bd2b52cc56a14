"""prometheus-client's multiprocess mode for a Celery worker, set up before anything imports it.

A Celery worker is a parent process and prefork children that do the work; the chart scrapes one
port per pod, and a child that exits (a crash, a recycled child) must not take its counts with it.
So each child writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` and the parent serves the
sum of all of them (``metrics_server.multiprocess_registry``). prometheus-client reads that variable
once, when it is first imported, and the children inherit the parent's imported modules, so the
variable must be set before the worker's modules are imported: this module itself imports nothing
of prometheus-client.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> Path:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory: the given one with its old metric
    files removed (counts of a previous container must not be added to this one's), or a new
    temporary one, removed at exit."""
    if "prometheus_client" in sys.modules and ENV not in os.environ:
        raise RuntimeError(f"prometheus_client was imported before {ENV} was set: the children would not report")
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path
    path = Path(tempfile.mkdtemp(prefix="embedfleet-metrics-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    os.environ[ENV] = str(path)
    return path
