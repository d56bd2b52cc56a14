#!/usr/bin/env bash
# Installs embedfleet and everything it needs into ./.venv (idempotent).
# torch is installed first and pinned: on these machines pip finds a local CPU wheel, while any looser
# requirement resolved later would pull several GB of CUDA packages. GPU users set TORCH_SPEC
# (e.g. TORCH_SPEC="torch==2.13.0 --index-url <their CUDA index>").
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
# shellcheck disable=SC2086
"${pip[@]}" ${TORCH_SPEC:-torch==2.13.0}
"${pip[@]}" -e ".[worker,dev]"
.venv/bin/python -c "import embedfleet.worker.encoders, embedfleet.gateway.server, embedfleet.client" \
  || { echo "install.sh: embedfleet does not import after install" >&2; exit 1; }
