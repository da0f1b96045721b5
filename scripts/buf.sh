#!/usr/bin/env bash
# Runs the pinned buf CLI (from the npm registry) with the given arguments,
# for example `scripts/buf.sh lint`.
set -euo pipefail
cd "$(dirname "$0")/.."
BUF_VERSION=1.75.0
exec npx --yes "@bufbuild/buf@${BUF_VERSION}" "$@"
