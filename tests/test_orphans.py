"""A process the local cluster spawns dies with it: a test run or ``embedfleet up`` killed with SIGKILL
leaves no Milvus, worker or gateway behind to collide with the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from embedfleet.local import _with_parent_death_signal

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


def test_the_launcher_sets_the_signal_and_becomes_the_program() -> None:
    """The parent-death signal is set by a launcher that then execs the program (same pid): no Python runs
    between fork and exec in the spawning process, which has threads."""
    probe = (
        "import ctypes, os; v = ctypes.c_int(); ctypes.CDLL(None).prctl(2, ctypes.byref(v)); "
        "print(os.getpid(), v.value)"
    )
    process = subprocess.Popen(_with_parent_death_signal([sys.executable, "-c", probe]), stdout=subprocess.PIPE)
    out, _ = process.communicate(timeout=60)
    pid, signum = map(int, out.split())
    assert (pid, signum) == (process.pid, signal.SIGTERM)
