#!/usr/bin/env bash
# Checks template.yaml: cfn-lint, `sam validate --lint`, and our own wiring test
# (tests/template/). Works offline: no AWS account or credentials are used.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/.requirements.stamp ] || scripts/tools.sh
export SAM_CLI_TELEMETRY=0
# sam validate needs a region; fake credentials keep a developer's own out of it.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

echo "== cfn-lint"
.venv/bin/cfn-lint template.yaml
echo "== sam validate --lint"
.venv/bin/sam validate --lint --region us-east-1 --template-file template.yaml
echo "== wiring test"
.venv/bin/python -m unittest discover -s tests/template -t tests/template
