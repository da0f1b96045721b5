#!/usr/bin/env bash
# Regenerates the clients under clients/ from proto/ with buf.gen.yaml:
# the Python stubs (clients/python/src/posthorn/v1) and the Connect-ES
# code (clients/typescript/src/gen). Installs the plugins first, once:
# grpcio-tools into target/gen-venv, protoc-gen-es with the TypeScript
# package's own dependencies.
#
# With --check it writes nothing and fails, listing the files, when the
# committed clients differ from a fresh generation (CI runs this).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/gen-venv
if ! "$venv/bin/python" -c 'import grpc_tools' >/dev/null 2>&1; then
  echo "gen-clients: installing grpcio-tools into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check grpcio-tools==1.85.1 protobuf==7.36.2
fi
if [ ! -x clients/typescript/node_modules/.bin/protoc-gen-es ]; then
  echo "gen-clients: installing the TypeScript package's dependencies"
  (cd clients/typescript && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi

# What each package ships of the generation: the Python package takes the
# google.api and google.rpc modules from googleapis-common-protos.
generated=(clients/python/src/posthorn/v1 clients/typescript/src/gen)
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
scripts/buf.sh generate -o "$fresh" 2>&1 | { grep -v '^npm warn' || true; } >&2
rm -rf "$fresh/clients/python/src/google"

if [ "${1:-}" = "--check" ]; then
  status=0
  for dir in "${generated[@]}"; do
    if ! diff -r -x __pycache__ "$fresh/$dir" "$dir" >/dev/null 2>&1; then
      echo "gen-clients: $dir differs from a fresh generation:" >&2
      diff -rq -x __pycache__ "$fresh/$dir" "$dir" >&2 || true
      status=1
    fi
  done
  if [ "$status" -ne 0 ]; then
    echo "gen-clients: run scripts/gen-clients.sh and commit the result" >&2
  fi
  exit "$status"
fi

for dir in "${generated[@]}"; do
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  cp -r "$fresh/$dir" "$dir"
done
echo "gen-clients: regenerated ${generated[*]}"
