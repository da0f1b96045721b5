#!/usr/bin/env bash
# Checks the REST door of a real Posthorn as an outside client would:
# GET /openapi.json must validate as OpenAPI 3.1 (openapi-spec-validator),
# and schemathesis, with a fixed example budget and seed, must find no 5xx
# (501 NOT_IMPLEMENTED aside: RPCs whose work has not landed say so) and no
# response that breaks the document's schemas, status codes or content types.
#
# Its Python tools come from scripts/test-tools.sh (target/tools-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/tools-venv
scripts/test-tools.sh

cargo build --locked --quiet --bin posthorn

work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

POSTHORN_LISTEN=127.0.0.1:0 POSTHORN_DATABASE_URL="sqlite://$work/posthorn.db" POSTHORN_LOG=warn \
  target/debug/posthorn >"$work/stdout" 2>"$work/stderr" &
server=$!

# Wait for the banner: it names the address and prints the first key.
for _ in $(seq 1 300); do
  if grep -q 'ph_live_' "$work/stdout" 2>/dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/stderr" >&2; echo "rest-check: posthorn exited" >&2; exit 1; fi
  sleep 0.1
done
base=$(grep -o 'listening on http://[0-9.:]*' "$work/stdout" | head -n 1 | sed 's/listening on //')
key=$(grep -o 'ph_live_[A-Za-z0-9]*' "$work/stdout" | head -n 1)
if [ -z "$base" ] || [ -z "$key" ]; then cat "$work/stdout" "$work/stderr" >&2; echo "rest-check: no address or key in the banner" >&2; exit 1; fi

echo "== OpenAPI document ($base/openapi.json)"
curl -fsS "$base/openapi.json" -o "$work/openapi.json"
"$venv/bin/openapi-spec-validator" "$work/openapi.json"

echo "== schemathesis against $base"
(cd scripts/rest_check && SCHEMATHESIS_HOOKS=hooks "../../$venv/bin/st" run "$base/openapi.json" \
  --header "X-API-Key: $key" \
  --exclude-path '/v1/messages:watch' \
  --checks no_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples 20 --seed 1 --no-color --report-dir "$work/report" \
  --warnings off)
