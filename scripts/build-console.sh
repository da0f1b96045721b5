#!/usr/bin/env bash
# Builds the browser console (clients/typescript/console, with the
# TypeScript client) into src/pages/console/console.{js,css}, which the
# binary embeds: type-checks it with tsc, bundles it with the pinned
# esbuild. With --check it writes nothing and fails when the committed
# bundle differs from a fresh build (CI runs this: the bundle is
# reproducible from the repository).
set -euo pipefail
cd "$(dirname "$0")/.."

ts=clients/typescript
if [ ! -x "$ts/node_modules/.bin/esbuild" ]; then
  (cd "$ts" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
(cd "$ts" && node_modules/.bin/tsc -p console/tsconfig.json)

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd "$ts" && node_modules/.bin/esbuild console/main.ts --bundle --format=esm --target=es2022 \
  --minify --legal-comments=none --log-level=warning --outfile="$out/console.js")

if [ "${1:-}" = "--check" ]; then
  for file in console.js console.css; do
    if ! cmp -s "$out/$file" "src/pages/console/$file"; then
      echo "build-console: src/pages/console/$file differs from a fresh build; run scripts/build-console.sh and commit it" >&2
      exit 1
    fi
  done
  exit 0
fi
cp "$out/console.js" "$out/console.css" src/pages/console/
echo "build-console: wrote src/pages/console/console.js and console.css"
