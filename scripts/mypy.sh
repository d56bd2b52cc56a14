#!/usr/bin/env bash
# Type-checks the hand-written code with the [tool.mypy] settings of pyproject.toml (strict).
# gateway/, worker/ and client/ import as embedfleet.gateway, embedfleet.worker and embedfleet.client through
# setuptools' package-dir mapping, which mypy cannot follow. So mypy runs in a temporary view of the tree in
# which embedfleet/ holds links to every real module plus those three folders, and the paths it prints are
# mapped back to the real files. Extra arguments go to mypy.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
view="$(mktemp -d)"
trap 'rm -rf "$view"' EXIT
mkdir "$view/embedfleet"
for entry in "$root"/embedfleet/*; do
  case "$(basename "$entry")" in __pycache__) continue ;; esac
  ln -s "$entry" "$view/embedfleet/$(basename "$entry")"
done
for sub in gateway worker client; do ln -s "$root/$sub" "$view/embedfleet/$sub"; done
for top in bench scripts tests helm; do ln -s "$root/$top" "$view/$top"; done
cd "$view"
set +e
"$python" -m mypy --config-file "$root/pyproject.toml" --cache-dir "$root/.mypy_cache" "$@" \
  embedfleet bench scripts tests/helm tests/test_static.py helm/embedfleet/files \
  | sed -E 's#^embedfleet/(gateway|worker|client)/#\1/#'
status="${PIPESTATUS[0]}"
exit "$status"
