"""The Milvus server launcher's config keeps every component on loopback: each ``ip:`` of the package's
real template is 127.0.0.1 and embedded etcd reads a config bound to 127.0.0.1 (the server itself is
started and used in tests/e2e/test_milvus_server.py)."""

from __future__ import annotations

import re
from pathlib import Path

import milvus as milvus_pkg

from embedfleet.milvus_server import etcd_config, loopback_template


def test_every_component_and_etcd_are_on_loopback() -> None:
    template = (Path(milvus_pkg.__file__).with_name("data") / "config.yaml.template").read_text()
    assert re.findall(r"(?m)^\s+ip:\s*(#.*)?$", template)  # the package leaves them empty
    text = loopback_template(template, Path("/x/etcd.yaml"))
    ips = re.findall(r"(?m)^\s+ip:(.*)$", text)
    assert len(ips) >= 7 and {ip.strip() for ip in ips} == {"127.0.0.1"}
    assert "etcd:\n  config:\n    path: /x/etcd.yaml\n" in text
    urls = re.findall(r"https?://([^:/\s]+)", etcd_config(23790, 23800))
    assert len(urls) == 5 and set(urls) == {"127.0.0.1"}
