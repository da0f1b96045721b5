#!/usr/bin/env bash
# Installs the Python tools the tests use into target/tools-venv, once:
# aiosmtpd (an independent SMTP server for the delivery tests),
# standardwebhooks (the reference verifier of webhook signatures),
# schemathesis and openapi-spec-validator (scripts/rest-check.sh), and
# mcp (the official MCP SDK, the client of the MCP tests). Does
# nothing when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/tools-venv
if ! "$venv/bin/python" -c 'import aiosmtpd, schemathesis, openapi_spec_validator, standardwebhooks, mcp' >/dev/null 2>&1; then
  echo "test-tools: installing aiosmtpd, standardwebhooks, schemathesis, openapi-spec-validator and mcp into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    aiosmtpd==1.4.6 standardwebhooks==1.3.0 schemathesis==4.32.5 openapi-spec-validator==0.9.0 mcp==2.3.0
fi
