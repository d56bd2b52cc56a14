"""`embedfleet up` starts the whole system on loopback and Ctrl-C stops every part of it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import grpc
import pytest
import redis

from embedfleet.client.sdk import EmbedfleetClient
from embedfleet.local import free_port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _descendants(pid: int) -> list[int]:
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        found += [int(child), *_descendants(int(child))]
    return found


@pytest.mark.parametrize("backend", ["celery", "ray"])
def test_up_serves_and_ctrl_c_stops_everything(tmp_path: Path, backend: str, redis_client: redis.Redis) -> None:
    prefix = f"eftest-up-{uuid.uuid4().hex[:8]}:"
    env = dict(os.environ, EMBEDFLEET_KEY_PREFIX=prefix, HF_HUB_OFFLINE="1")
    args = ["--port", "0", "--milvus-port", str(free_port()), "--data-dir", str(tmp_path), "--backend", backend]
    process = subprocess.Popen(
        [sys.executable, "-m", "embedfleet.client.cli", "up", *args], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        address = None
        deadline = time.monotonic() + 180
        assert process.stderr is not None
        while address is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line, f"embedfleet up exited early with {process.poll()}"
            match = re.search(r"gateway (127\.0\.0\.1:\d+)", line)
            address = match.group(1) if match else None
        assert address is not None
        children = _descendants(process.pid)
        assert len(children) >= 2  # Milvus Lite and a Celery worker with its pool, or Ray's processes
        with EmbedfleetClient(address) as client:
            assert client.list_models()[0].workers == 1
            assert client.embed(["hello"]).vectors.shape == (1, 384)
            # No corpus dirs were given: not even a file under the working directory is read by path.
            with pytest.raises(grpc.RpcError) as refused:
                client.submit_embed(None, server_path=str(Path.cwd() / "corpus.jsonl"))
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "does not read server-side corpus files" in str(refused.value.details())
        heartbeats = list(redis_client.scan_iter(match=f"{prefix}workers:*"))
        assert heartbeats, "embedfleet up did not use EMBEDFLEET_KEY_PREFIX"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        time.sleep(0.5)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if process.poll() is None:
            process.kill()
        for key in redis_client.scan_iter(match=f"{prefix}*"):
            redis_client.delete(key)
