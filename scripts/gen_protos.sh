#!/usr/bin/env bash
# Regenerates the committed Python stubs from protos/ (tests/test_protos.py fails when they drift).
# The include root is protos/, so `embedfleet/v1/x.proto` becomes the module `embedfleet.v1.x_pb2`.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
python -m grpc_tools.protoc -Iprotos --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  protos/embedfleet/v1/*.proto
