#!/usr/bin/env bash
# Regenerates the committed Python stubs from protos/ (tests/test_protos.py fails when they drift).
# The include root is protos/, so `embedfleet/v1/x.proto` becomes the module `embedfleet.v1.x_pb2`.
# Uses grpcio-tools from $PYTHON, else the project's .venv, else python3 (grpcio-tools 1.85 is in the dev extra).
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
"$python" -m grpc_tools.protoc -Iprotos --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/embedfleet/v1/*.proto
