#!/usr/bin/env bash
# Cold-start benchmark of the six Lambda functions: binary size, init time
# (process start to its first Runtime API request) and peak RSS, each binary
# run with its real configuration against moto. See bench/coldstart/coldstart.py.
#
#   bench/coldstart.sh [--runs N] [function...]
#
# Measures native x86_64 release binaries (same profile as the arm64 artifacts);
# the arm64 sizes are reported too when scripts/build.sh has built them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/.requirements.stamp ] || scripts/tools.sh

bins=()
for dir in functions/*/; do bins+=(--bin "$(basename "$dir")"); done
cargo build --release "${bins[@]}"

exec scripts/moto.sh -- .venv/bin/python bench/coldstart/coldstart.py "$@"
