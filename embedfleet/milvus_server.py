"""A real Milvus 2.3 standalone server (the C++ engine from the PyPI ``milvus`` package), run offline
on one machine with every component on loopback.

Milvus Lite 3.2 is a pure-Python rewrite; code that only ever met it has not met the real engine, so
the tests run the index and search paths against this server too. The package's config template
leaves each component's ``ip:`` empty, and the components then register and talk over the machine's
first external address; this launcher writes a template with ``ip: 127.0.0.1`` everywhere and an
embedded-etcd config bound to 127.0.0.1, so all traffic stays on loopback. The server's gRPC ports
still *listen* on all interfaces (Milvus 2.3 has no listen-address setting): run it only on a machine
whose external interfaces are firewalled, as in CI.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import milvus as milvus_pkg

from embedfleet.local import free_port

_IP_LINE = re.compile(r"(?m)^(\s+)ip:.*$")
_ETCD_SECTION = "etcd:\n"


def loopback_template(template: str, etcd_config: Path) -> str:
    """The package's config template with every component on 127.0.0.1 and etcd configured by file."""
    text, replaced = _IP_LINE.subn(r"\1ip: 127.0.0.1", template)
    if not replaced or _ETCD_SECTION not in text:
        raise RuntimeError("the milvus package's config template has changed: no 'ip:' lines or no etcd section")
    return text.replace(_ETCD_SECTION, f"{_ETCD_SECTION}  config:\n    path: {etcd_config}\n", 1)


def etcd_config(client_port: int, peer_port: int) -> str:
    """Embedded etcd on loopback (its defaults would bind fixed ports 2379/2380 shared by every server)."""
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return (
        f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
        f"initial-cluster: default={peer}\n"
    )


@dataclass
class MilvusServerProcess:
    """``start()`` returns once the server answers its health check; ``uri`` is where to connect.

    ``stop_grace_s`` bounds the wait for a clean SIGTERM shutdown (it takes more than 15 s) before
    the process is killed; a test's throwaway server can use a short one.
    """

    data_dir: Path
    stop_grace_s: float = 30.0
    port: int = 0
    _server: milvus_pkg.MilvusServer | None = field(default=None, init=False)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._server.server_proc if self._server is not None else None

    def start(self) -> MilvusServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        package_data = Path(milvus_pkg.__file__).with_name("data")
        etcd_port = free_port()
        etcd_file = self.data_dir / "embed-etcd.yaml"
        etcd_file.write_text(etcd_config(etcd_port, free_port()))
        template = self.data_dir / "milvus.yaml.template"
        template.write_text(loopback_template((package_data / "config.yaml.template").read_text(), etcd_file))
        config = milvus_pkg.MilvusServerConfig(
            template=str(template),
            data_dir=str(self.data_dir),
            etcd_port=etcd_port,
            proxy_port=self.port or free_port(),
        )
        # The package only sets this when it uses its own template.
        config.glog_conf_file = str(package_data / "glog.conf")
        server = milvus_pkg.MilvusServer(config)
        self._server = server
        server.start()  # blocks until /healthz answers OK
        self.port = server.listen_port
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None or server.server_proc is None:
            return
        process = server.server_proc
        process.terminate()
        try:
            process.wait(timeout=self.stop_grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.stop()  # closes its log files; the process is gone already
