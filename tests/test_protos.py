"""The committed stubs must be exactly what scripts/gen_protos.sh generates from protos/."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_stubs_match_protos(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHON=sys.executable)  # the interpreter running the tests has grpcio-tools
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)], check=True, env=env)
    generated = sorted(p.relative_to(tmp_path) for p in (tmp_path / "embedfleet" / "v1").glob("*_pb2*.py*"))
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "embedfleet" / "v1").glob("*_pb2*.py*"))
    assert generated == committed, "stubs added or removed: run scripts/gen_protos.sh"
    for rel in generated:
        assert (tmp_path / rel).read_bytes() == (ROOT / rel).read_bytes(), f"{rel} drifted: run scripts/gen_protos.sh"


def test_enum_zero_values_are_unspecified() -> None:
    from embedfleet.v1 import common_pb2, jobs_pb2, models_pb2

    for module in (common_pb2, jobs_pb2, models_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.full_name


def test_every_field_and_rpc_is_documented() -> None:
    """Each field, enum value (but the zero value) and rpc has a comment on the line above it."""
    pattern = re.compile(r"^\s*(rpc |(repeated |optional )?[\w.]+ \w+ = \d+;|[A-Z_]+ = [1-9]\d*;)")
    missing = []
    for proto in sorted((ROOT / "protos" / "embedfleet" / "v1").glob("*.proto")):
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if pattern.match(line) and not lines[i - 1].strip().startswith("//"):
                missing.append(f"{proto.name}:{i + 1}: {line.strip()}")
    assert not missing, "undocumented:\n" + "\n".join(missing)
