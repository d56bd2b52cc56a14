#!/usr/bin/env bash
# Regenerates the committed Python stubs from protos/ (tests/test_protos.py fails when they drift).
# The include root is protos/, so `embedfleet/v1/x.proto` becomes the module `embedfleet.v1.x_pb2`.
# Uses grpcio-tools and mypy-protobuf from $PYTHON, else the project's .venv, else python3 (both pinned in the
# dev extra). Outputs:
#   x_pb2.py, x_pb2_grpc.py    grpcio-tools (protoc's Python generator and the gRPC plugin)
#   x_pb2.pyi, x_pb2_grpc.pyi  mypy-protobuf (protoc-gen-mypy, protoc-gen-mypy_grpc): typed messages, enums
#                              and stubs/servicers; it replaces grpcio-tools' --pyi_out, whose message stubs
#                              carry no enum or HasField typing and which has no _grpc stubs at all.
# The output is byte-for-byte reproducible: no timestamps or paths are written.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
if [ -n "${PYTHON:-}" ]; then
  python="$PYTHON"
elif [ -x .venv/bin/python ]; then
  python=.venv/bin/python
else
  python=python3
fi
bin="$(dirname "$("$python" -c 'import sys; print(sys.executable)')")"
for plugin in protoc-gen-mypy protoc-gen-mypy_grpc; do
  [ -x "$bin/$plugin" ] || { echo "gen_protos.sh: $bin/$plugin missing (pip install -e '.[dev]')" >&2; exit 1; }
done
"$python" -m grpc_tools.protoc -Iprotos \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
  --python_out="$out" --grpc_python_out="$out" --mypy_out=quiet:"$out" --mypy_grpc_out=quiet:"$out" \
  protos/embedfleet/v1/*.proto
