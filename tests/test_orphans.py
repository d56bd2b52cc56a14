"""A process the local cluster spawns dies with it: a test run or ``embedfleet up`` killed with SIGKILL
leaves no Milvus, worker or gateway behind to collide with the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SPAWNER = """
import sys, time
from pathlib import Path
from embedfleet.local import LocalCluster
child = LocalCluster(data_dir=Path(sys.argv[1]))._spawn("sleeper", ["sleep", "120"])
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def test_a_spawned_child_dies_with_its_killed_parent(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", SPAWNER, str(tmp_path)], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(child):
            assert time.monotonic() < deadline, "the spawned child outlived its SIGKILLed parent"
            time.sleep(0.05)
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
