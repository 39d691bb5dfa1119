#!/usr/bin/env bash
# Installs every tool the tests and workflows need into ./.venv, idempotently:
# moto server (local DynamoDB/SQS API), cfn-lint, the SAM CLI, cargo-lambda (with zig).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
stamp=$venv/.requirements.stamp
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || ! cmp -s scripts/requirements.txt "$stamp"; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
  cp scripts/requirements.txt "$stamp"
fi
