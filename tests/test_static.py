"""Static checks of the hand-written code: ruff's lint rules and formatting, and strict mypy.

Each runs as a subprocess with the project's configuration (pyproject.toml) and the test fails with the
tool's own output, so a failure reads exactly as it would on the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _check(*command: str | Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable)  # scripts/mypy.sh runs mypy with the test interpreter
    result = subprocess.run(
        [str(c) for c in command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", ".")], ids=["lint", "format"])
def test_ruff(args: tuple[str, ...]) -> None:
    _check(BIN / "ruff", *args)


def test_mypy_strict() -> None:
    # scripts/mypy.sh maps gateway/, worker/ and client/ to their import names (embedfleet.*) for mypy.
    _check("bash", ROOT / "scripts" / "mypy.sh")
