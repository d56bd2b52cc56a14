"""Celery adapter: two tasks that call the runner, and the worker process entry point.

Prefork children each build their own runtime (and so load models once per process) in
``worker_process_init``; the parent never imports torch. The parent serves ``/metrics`` for all of
them (prometheus-client's multiprocess mode, prepared by the ``embedfleet worker`` command), and
logging is ours (``log_format``/``log_level``), not Celery's.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from embedfleet.celery_app import make_celery
from embedfleet.logs import configure_logging
from embedfleet.metrics_multiprocess import ENV as MULTIPROC_ENV
from embedfleet.metrics_server import multiprocess_registry, serve_metrics
from embedfleet.tasks import EMBED_REQUEST_TASK, RUN_PART_TASK, PartTask, retry_delay
from embedfleet.worker.runner import RetryPart
from embedfleet.worker.runtime import WorkerRuntime, build_runtime
from embedfleet.worker.settings import WorkerSettings

log = logging.getLogger(__name__)

_settings: WorkerSettings | None = None
_runtime: WorkerRuntime | None = None


def _get_runtime() -> WorkerRuntime:
    global _runtime
    if _runtime is None:
        assert _settings is not None, "create_app() must run before tasks"
        _runtime = build_runtime(_settings)
    return _runtime


def _init_process(**_: object) -> None:
    runtime = _get_runtime()
    runtime.preload()
    settings = runtime.settings
    runtime.start_heartbeat(f"{settings.metrics_host}:{settings.metrics_port}" if settings.metrics_port else "")


def _shutdown_process(**_: object) -> None:
    if _runtime is not None:
        _runtime.stop()


def create_app(settings: WorkerSettings) -> Celery:
    global _settings
    _settings = settings
    app = make_celery(settings)
    # Loading a model takes longer than Celery's default 4 s allowance for a child to start.
    app.conf.worker_proc_alive_timeout = 300

    @app.task(name=RUN_PART_TASK, bind=True, max_retries=None)
    def run_part(self, job_id: object, part: object) -> None:
        """Attempts are counted by the job store, so retries here are unlimited: the runner fails a
        part once it used up ``max_chunk_attempts``, and a part that another worker holds (``BUSY``)
        comes back after that worker's lease would lapse."""
        task = PartTask.from_args(job_id, part)
        try:
            _get_runtime().runner.run_part(task.job_id, task.part)
        except RetryPart as exc:
            raise self.retry(countdown=exc.delay_s, exc=exc) from exc
        except Exception as exc:  # the runtime could not even be built (models, Redis): never a silent ack
            log.exception("job %s part %d: the worker could not run it", task.job_id, task.part)
            raise self.retry(countdown=retry_delay(self.request.retries + 1), exc=exc) from exc

    @app.task(name=EMBED_REQUEST_TASK)
    def embed_request(request_id: str) -> None:
        _get_runtime().runner.embed_request(request_id)

    worker_process_init.connect(_init_process, weak=False)
    worker_process_shutdown.connect(_shutdown_process, weak=False)
    # A receiver here means Celery leaves logging alone; the prefork children inherit this set-up.
    setup_logging.connect(lambda **_: configure_logging(settings.log_format, settings.log_level), weak=False)
    return app


def run_worker(settings: WorkerSettings) -> None:
    """Block running a Celery worker on the bulk and interactive queues."""
    if settings.metrics_port and MULTIPROC_ENV not in os.environ:
        raise RuntimeError(f"metrics_port is set but {MULTIPROC_ENV} is not: start workers with `embedfleet worker`")
    app = create_app(settings)
    if settings.metrics_port:  # 0 = off: then there is no multiprocess directory to read either
        serve_metrics(settings.metrics_host, settings.metrics_port, multiprocess_registry())
    queues = settings.queues or (settings.interactive_queue, settings.bulk_queue)
    app.worker_main(
        [
            # A JSON log stream carries only JSON lines: no start-up banner on stdout.
            *(["--quiet"] if settings.log_format == "json" else []),
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={settings.concurrency}",
            "--pool=prefork",
            f"--queues={','.join(queues)}",
            f"--hostname=embedfleet-{settings.worker_id}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )
