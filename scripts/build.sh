#!/usr/bin/env bash
# Builds the Lambda functions (every crate under functions/) for arm64 with
# cargo-lambda: target/lambda/<name>/bootstrap, the artifacts SAM deploys.
#
#   scripts/build.sh                 all six
#   scripts/build.sh receive payout  some of them
#
# The release profile (LTO, one codegen unit, stripped, panic = "unwind") comes
# from the workspace Cargo.toml; cargo-lambda keeps whatever the profile sets.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .venv/.requirements.stamp ] || scripts/tools.sh
# cargo-lambda and the zig it cross-links with live in the venv.
export PATH="$PWD/.venv/bin:$PATH"

target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi

if [ "$#" -gt 0 ]; then
  functions=("$@")
else
  functions=()
  for dir in functions/*/; do functions+=("$(basename "$dir")"); done
fi
bins=()
for fn in "${functions[@]}"; do
  [ -f "functions/$fn/Cargo.toml" ] || { echo "build.sh: no function $fn (functions/$fn)" >&2; exit 2; }
  bins+=(--bin "$fn")
done

cargo lambda build --release --arm64 "${bins[@]}"
for fn in "${functions[@]}"; do
  artifact="target/lambda/$fn/bootstrap"
  printf '%-14s %8s bytes  %s\n' "$fn" "$(stat -c %s "$artifact")" "$artifact"
done
