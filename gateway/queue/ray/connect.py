"""Joining Ray, or starting a local Ray that listens on 127.0.0.1 only."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from embedfleet.settings import CommonSettings

log = logging.getLogger(__name__)

# With this set to 0 before Ray is imported, every port a local Ray instance opens binds to
# 127.0.0.1; without it Ray picks the machine's external address.
RAY_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

# Starting a local Ray is tried this many times. On a loaded machine its raylet can miss a start-up
# deadline Ray hard-codes (30 s for the node to register; its agents' port files), and Ray gives up with
# "The current node timed out during startup"; a second start on the same machine then succeeds.
LOCAL_START_ATTEMPTS = 2
_STARTUP_TIMEOUT = "timed out during startup"


def connect_ray(settings: CommonSettings) -> bool:
    """Join the configured Ray cluster, or start a local one on 127.0.0.1; True if this started Ray.

    ``ray_address`` "" starts a fresh local instance (``address="local"``: ``None`` would silently
    join any cluster found in /tmp/ray or ``RAY_ADDRESS``), with every core and no dashboard.
    "auto" or "ray://host:port" joins an existing cluster. A process that already called
    ``ray.init`` keeps its connection, and remains the one to shut it down.
    """
    address = settings.ray_address
    if not address:
        if "ray" in sys.modules and os.environ.get(RAY_LOOPBACK_ENV) != "0":
            raise RuntimeError(
                f"ray was imported before {RAY_LOOPBACK_ENV}=0 was set, so a local Ray would listen on the "
                f"machine's external address; set {RAY_LOOPBACK_ENV}=0 in the environment first"
            )
        os.environ[RAY_LOOPBACK_ENV] = "0"
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, namespace=settings.ray_namespace)
    else:
        start_local(
            lambda: ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                namespace=settings.ray_namespace,
            ),
            ray.shutdown,
        )
    return True


def start_local(init: Callable[[], object], shutdown: Callable[[], None]) -> None:
    """``init()``, tried again after ``shutdown()`` (which stops what the failed start left running) when
    Ray reports that its node timed out during start-up; any other failure, or the last one, is raised."""
    for attempt in range(1, LOCAL_START_ATTEMPTS + 1):
        try:
            init()
            return
        except Exception as exc:
            if _STARTUP_TIMEOUT not in str(exc) or attempt == LOCAL_START_ATTEMPTS:
                raise
            log.warning("local Ray did not start (%s); starting it again (attempt %d)", exc, attempt + 1)
            shutdown()
