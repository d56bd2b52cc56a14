"""The whole system on one machine: a Milvus Lite server, Celery worker processes (or, with the Ray
backend, a local Ray instance whose actors the gateway starts) and the gateway, all bound to 127.0.0.1.
``embedfleet up`` runs it until Ctrl-C; the test suite uses the same class.

Milvus Lite locks its data directory to one process, so it runs as a server that workers and the
gateway reach by URI, exactly as they reach a remote Milvus in a cluster.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from embedfleet.jobstore import JobStore

if TYPE_CHECKING:
    from embedfleet.gateway.server import RunningGateway
    from embedfleet.milvus_server import MilvusServerProcess

log = logging.getLogger(__name__)

SUPERVISE_INTERVAL_S = 0.5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The first program a spawned child runs on Linux: it asks the kernel for SIGTERM when its parent dies
# (prctl(2) PR_SET_PDEATHSIG, which execve keeps), then becomes the real program (same pid). Without it a
# test run or an ``embedfleet up`` killed with SIGKILL (CI's timeout, an OOM kill) leaves its Milvus, workers
# and their ports behind, and the next run collides with them. It is a separate program, not a
# ``preexec_fn``: Python code between fork and exec in a process with threads (the supervisor, gRPC's) is
# unsafe, and a child once aborted there. The signal follows the *thread* that spawned the child: children
# are spawned by the main thread or the supervisor thread, both of which live as long as the cluster. A
# parent that died before the launcher ran has left the child to a reaper already: then it ends at once.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    os._exit(1)
os.execvp(sys.argv[2], sys.argv[2:])
"""


def _with_parent_death_signal(args: list[str]) -> list[str]:
    if sys.platform != "linux":
        return args
    return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout_s:.0f} s")


@dataclass
class LocalCluster:
    """Start with ``with LocalCluster(...) as cluster:``; ``cluster.gateway_address`` is where to connect."""

    data_dir: Path
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "embedfleet:"
    backend: str = "celery"
    workers: int = 1
    gateway_port: int = 50051
    milvus_port: int = 19530
    # "lite": a Milvus Lite server; "server": the real Milvus 2.3 engine (embedfleet.milvus_server).
    milvus: Literal["lite", "server"] = "lite"
    extra_env: dict[str, str] = field(default_factory=dict)
    # Directories whose corpus files the gateway may read by path; none given leaves the gateway's
    # setting (EMBEDFLEET_ALLOWED_CORPUS_DIRS, empty by default: no server-side paths).
    corpus_dirs: tuple[Path, ...] = ()
    log_dir: Path | None = None
    # Serve Prometheus metrics on free loopback ports: the gateway's on gateway_metrics_port, worker i's
    # (all of its processes) on worker_metrics_ports[i].
    metrics: bool = False
    gateway_metrics_port: int = 0
    worker_metrics_ports: dict[int, int] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Worker processes started again after they died (SIGKILL, out of memory), by the supervisor.
    restarts: int = 0
    _gateway: RunningGateway | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _supervisor: threading.Thread | None = None
    _milvus_server: MilvusServerProcess | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "EMBEDFLEET_REDIS_URL": self.redis_url,
                "EMBEDFLEET_KEY_PREFIX": self.key_prefix,
                "EMBEDFLEET_BACKEND": self.backend,
                "EMBEDFLEET_MILVUS_URI": self.milvus_uri,
                "EMBEDFLEET_MODEL_STORE_DIR": str(self.data_dir / "models"),
                "EMBEDFLEET_DATA_URI": str(self.data_dir / "data"),
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            }
        )
        env.update(self.extra_env)
        return env

    @property
    def milvus_uri(self) -> str:
        return f"http://127.0.0.1:{self.milvus_port}"

    @property
    def gateway(self) -> RunningGateway:
        """The in-process gateway (its core, dispatcher and store), once started."""
        if self._gateway is None:
            raise RuntimeError("the cluster is not started")
        return self._gateway

    @property
    def gateway_address(self) -> str:
        return f"127.0.0.1:{self.gateway_port}"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            _with_parent_death_signal(args),
            env={**self.env(), **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        self.processes[name] = process
        return process

    def start_milvus(self) -> None:
        if self.milvus == "server":
            from embedfleet.milvus_server import MilvusServerProcess

            self._milvus_server = MilvusServerProcess(self.data_dir / "milvus-server", port=self.milvus_port)
            self.milvus_port = self._milvus_server.start().port
            return
        if self.milvus_port == 0:
            self.milvus_port = free_port()
        # The milvus-lite installed with this interpreter, not whichever one is first on PATH.
        sibling = Path(sys.executable).with_name("milvus-lite")
        milvus_bin = str(sibling) if sibling.exists() else shutil.which("milvus-lite") or "milvus-lite"
        process = self._spawn(
            "milvus",
            [
                milvus_bin,
                "server",
                "--data-dir",
                str(self.data_dir / "milvus"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.milvus_port),
            ],
        )
        wait_for_port(self.milvus_port, 60, process)

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        env_id = f"local-{index}-{os.getpid()}"
        env = {}
        if self.metrics:
            port = self.worker_metrics_ports.setdefault(index, free_port())
            env = {"EMBEDFLEET_METRICS_HOST": "127.0.0.1", "EMBEDFLEET_METRICS_PORT": str(port)}
        return self._spawn(
            f"worker-{index}",
            [sys.executable, "-m", "embedfleet.client.cli", "worker", "--worker-id", env_id],
            env,
        )

    def wait_for_workers(self, store: JobStore, timeout_s: float = 180) -> None:
        """Block until every worker process has loaded its models and sent a heartbeat."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            dead = [p for p in self.processes.values() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a process exited early (code {dead[0].returncode}); see its log")
            if len([w for w in store.live_workers() if w.get("models")]) >= self.workers:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.workers} worker(s) did not report ready within {timeout_s:.0f} s")

    def _supervise(self) -> None:
        """Start again every Celery worker process that died, as a container runtime would: the part
        it was running is queued again by the gateway once its lease lapses, and needs a worker."""
        while not self._stopping.wait(SUPERVISE_INTERVAL_S):
            for i in range(self.workers):
                process = self.processes.get(f"worker-{i}")
                if process is not None and process.poll() is not None and not self._stopping.is_set():
                    log.warning("worker %d exited with code %s; starting it again", i, process.returncode)
                    self.start_worker(i)
                    self.restarts += 1

    def start(self) -> LocalCluster:
        from embedfleet.gateway.server import start_gateway
        from embedfleet.gateway.settings import GatewaySettings

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_milvus()
        if self.backend == "celery":
            for i in range(self.workers):
                self.start_worker(i)
        overrides: dict[str, Any] = {
            k.removeprefix("EMBEDFLEET_").lower(): v for k, v in self.extra_env.items() if k.startswith("EMBEDFLEET_")
        }
        if self.metrics:
            self.gateway_metrics_port = self.gateway_metrics_port or free_port()
            overrides.update(metrics_host="127.0.0.1", metrics_port=self.gateway_metrics_port)
        if self.corpus_dirs:
            overrides["allowed_corpus_dirs"] = self.corpus_dirs
        if self.backend == "ray":
            # The gateway's RayDispatcher starts the workers as actors: ``workers`` sizes the pool
            # unless EMBEDFLEET_RAY_POOL_SIZE is given explicitly.
            overrides.setdefault("ray_pool_size", self.workers)
        settings = GatewaySettings(
            **{
                "redis_url": self.redis_url,
                "key_prefix": self.key_prefix,
                "backend": self.backend,
                "milvus_uri": self.milvus_uri,
                "model_store_dir": self.data_dir / "models",
                "data_uri": str(self.data_dir / "data"),
                "port": self.gateway_port,
                # A local cluster is one user on loopback: no API keys (EMBEDFLEET_AUTH in extra_env wins).
                "auth": False,
                **overrides,
            }
        )
        self.workers = settings.ray_pool_size if self.backend == "ray" else self.workers
        gateway = start_gateway(settings)
        self._gateway = gateway
        self.gateway_port = gateway.port
        self.wait_for_workers(gateway.ctx.store)
        if self.backend == "celery":  # Ray replaces its actors itself
            self._supervisor = threading.Thread(target=self._supervise, name="embedfleet-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def clear_redis(self) -> int:
        """Delete every Redis key under this cluster's prefix (and nothing else)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        keys = list(client.scan_iter(match=f"{self.key_prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)

    def stop(self) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join()
            self._supervisor = None
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.processes.values()):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self._milvus_server is not None:
            self._milvus_server.stop()
            self._milvus_server = None

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
