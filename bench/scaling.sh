#!/usr/bin/env bash
# Scale and cost model inputs (docs/SCALING.md): per accepted event, the AWS
# calls, DynamoDB capacity units, SQS requests, Lambda milliseconds and log
# bytes of the real `receive` and `fulfill` release binaries, run under a fake
# Lambda Runtime API against moto; and the Node 20 + stripe peer as a Lambda
# handler under the same Runtime API (init and per-invocation time).
#
#   bench/scaling.sh [--events N] [--batch 10] [--json FILE] [--no-node]
#
# See bench/scaling/scaling.py. The milliseconds are this machine's, against a
# local moto: compare ratios, not absolute values.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/.requirements.stamp ] || scripts/tools.sh

cargo build --release -p receive -p fulfill

if command -v node >/dev/null && [[ " $* " != *" --no-node "* ]]; then
  (cd bench/peers && { [ -d node_modules/stripe ] || npm ci --ignore-scripts --no-audit --no-fund >&2; })
fi

exec scripts/moto.sh -- .venv/bin/python bench/scaling/scaling.py "$@"
