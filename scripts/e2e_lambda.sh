#!/usr/bin/env bash
# End to end: the six real Lambda binaries under cargo-lambda's runtime emulator
# (`cargo lambda watch`) against moto server. See tests/e2e/test_lambda_e2e.py.
#
# scripts/moto.sh starts moto and stops it on exit; the test stops the emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/.requirements.stamp ] || scripts/tools.sh
export PATH="$PWD/.venv/bin:$PATH"

# Compile the functions up front: the emulator otherwise compiles each one on
# its first invocation, which then waits on the build.
bins=()
for dir in functions/*/; do bins+=(--bin "$(basename "$dir")"); done
# …and the CLI, whose `payhook trigger` builds the event sequences the test sends.
cargo build "${bins[@]}" --bin payhook

exec scripts/moto.sh -- .venv/bin/python tests/e2e/test_lambda_e2e.py
