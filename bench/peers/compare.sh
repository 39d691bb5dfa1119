#!/usr/bin/env bash
# Rust receive path (verify + parse + route) vs Stripe's Node constructEvent on
# the same signed payloads. Runs the Rust bench's summary (no criterion
# groups), then the Node peer, then prints one line per size.
# Usage: bench/peers/compare.sh   (from anywhere in the repo)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${CARGO_TARGET_DIR:-$root/target}/bench-payloads"

(cd "$root" && PAYHOOK_BENCH_SUMMARY_ONLY=1 cargo bench -p payhook-shared --all-features --bench receive_path)
"$here/run.sh" "$dir"

echo
echo "Rust verify+parse+route vs stripe-node constructEvent (median ns per delivery)"
awk -F'\t' '
  FNR == 1 { next }
  FILENAME ~ /rust.tsv$/ { bytes[$1] = $2; hmac[$1] = $3; full[$1] = $7; order[++n] = $1; next }
  { node[$1] = $3 }
  END {
    printf "%5s %7s %9s %9s %6s %12s %8s\n", "size", "bytes", "hmac_ns", "rust_ns", "ratio", "construct_ns", "speedup"
    for (i = 1; i <= n; i++) {
      l = order[i]
      printf "%5s %7d %9d %9d %6.2f %12d %7.1fx\n", l, bytes[l], hmac[l], full[l], full[l] / hmac[l], node[l], node[l] / full[l]
    }
  }' "$dir/rust.tsv" "$dir/node.tsv"
