"""The gateway, the client and the CLI must stay light: no torch, no sentence-transformers; the
queue backends must not pull worker code (or Ray) into the gateway until a dispatcher is built."""

import subprocess
import sys


def _imported(modules: str, check: str) -> None:
    """Import ``modules`` in a fresh interpreter and assert ``check`` (over sys.modules) is empty."""
    code = f"import sys, {modules}\nbad = sorted(m for m in sys.modules if {check})\nassert not bad, bad\n"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gateway_and_client_import_without_torch() -> None:
    _imported(
        "embedfleet.gateway.server, embedfleet.client, embedfleet.client.cli, embedfleet.gateway.queue",
        "m in ('torch', 'sentence_transformers', 'transformers')",
    )


def test_queue_backends_import_no_worker_code_torch_or_ray() -> None:
    _imported(
        "embedfleet.gateway.queue, embedfleet.gateway.queue.celery, embedfleet.gateway.queue.ray.dispatcher",
        "m.startswith('embedfleet.worker') or m.split('.')[0] in ('torch', 'sentence_transformers', 'ray')",
    )


def test_ray_actor_module_imports_neither_torch_nor_ray() -> None:
    _imported("embedfleet.worker.ray_actor", "m.split('.')[0] in ('torch', 'sentence_transformers', 'ray')")


def test_settings_do_not_import_prometheus_client() -> None:
    """`embedfleet worker` reads its settings, then sets PROMETHEUS_MULTIPROC_DIR, then imports the
    worker: settings must not pull prometheus_client in first (the children would not report)."""
    _imported("embedfleet.worker.settings, embedfleet.gateway.settings", "m == 'prometheus_client'")
