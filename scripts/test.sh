#!/usr/bin/env bash
# Runs Posthorn's test suite: unit tests and the integration tests against
# the real server, then scripts/rest-check.sh (OpenAPI validation and
# schemathesis against a running server). Storage tests run on SQLite always, and on PostgreSQL too
# when POSTHORN_TEST_DATABASE_URL is set (postgres://USER@HOST:PORT/DB; each
# test creates and drops its own database there).
#
# Safe to run on a fresh machine: it installs what the tests need, and does
# nothing for what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "scripts/test.sh: cargo is required (https://rustup.rs)" >&2
  exit 1
fi

# What the tests drive besides Posthorn (Python tools, the client packages,
# Chromium), installed once.
scripts/test-tools.sh

cargo test --workspace --locked "$@"

# With no filter, also check the REST door from outside: the OpenAPI
# document validates and schemathesis finds no server error.
if [ "$#" -eq 0 ]; then
  scripts/rest-check.sh
fi
