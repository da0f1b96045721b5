#!/usr/bin/env bash
# Installs the Python tools the tests use into target/tools-venv, once:
# aiosmtpd (an independent SMTP server for the delivery tests),
# schemathesis and openapi-spec-validator (scripts/rest-check.sh). Does
# nothing when they are already there.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/tools-venv
if ! "$venv/bin/python" -c 'import aiosmtpd, schemathesis, openapi_spec_validator' >/dev/null 2>&1; then
  echo "test-tools: installing aiosmtpd, schemathesis and openapi-spec-validator into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    aiosmtpd==1.4.6 schemathesis==4.32.5 openapi-spec-validator==0.9.0
fi
