"""The Celery application both sides share: the gateway sends tasks by name, workers run them.

Only configuration lives here (no task bodies, no torch; task names and payloads are
``embedfleet.tasks``'), so the gateway can enqueue without importing model code. Settings are the
ones long GPU chunks need: acknowledge after the work (``task_acks_late``), give the task back if
the worker dies (``task_reject_on_worker_lost``), take one task at a time (prefetch 1), and a
visibility timeout longer than any chunk.
"""

from __future__ import annotations

from celery import Celery

from embedfleet.settings import CommonSettings
from embedfleet.tasks import EMBED_REQUEST_TASK, RUN_PART_TASK


def make_celery(settings: CommonSettings) -> Celery:
    app = Celery("embedfleet", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.bulk_queue,
        task_routes={
            RUN_PART_TASK: {"queue": settings.bulk_queue},
            EMBED_REQUEST_TASK: {"queue": settings.interactive_queue},
        },
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_seconds,
            # Every broker key under our prefix: deployments and test runs sharing a Redis stay apart.
            "global_keyprefix": f"{settings.key_prefix}celery:",
            "unacked_restore_interval": 1,
        },
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    return app
