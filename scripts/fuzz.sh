#!/usr/bin/env bash
# `make fuzz`: runs each cargo-fuzz target of fuzz/ for FUZZ_SECONDS, one at a
# time, seeded from the fixtures, and prints the executions of each.
#
#   FUZZ_SECONDS=60 scripts/fuzz.sh                   # every target
#   scripts/fuzz.sh envelope_differential sqs_record  # some of them
#
# Needs the nightly toolchain (cargo-fuzz is installed into it if missing).
# A crash stops the run; its input is in fuzz/artifacts/<target>/. Turn it
# into a regression test (see README, "Fuzzing") before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."

# The slowest target (standard_headers) ran 17,300 exec/s on the 2-core
# machine with AddressSanitizer: 900 s leaves a margin over 10 million.
seconds=${FUZZ_SECONDS:-900}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(stripe_header standard_headers envelope_differential sqs_record)

if ! rustup run nightly cargo --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is required (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz into the nightly toolchain" >&2
  cargo +nightly install cargo-fuzz --locked
fi

# Seeds: the sample events built on Stripe's fixtures, signed at the
# targets' clock, plus the SQS events in events/. Existing corpora are kept
# (libFuzzer adds what it finds to them).
seeds=fuzz/seeds
rm -rf "$seeds"
cargo run -q -p payhook-shared --features samples --example fuzz_seeds -- "$seeds"
cp events/*-sqs.json "$seeds/sqs_record/"

# The fuzz crate keeps its own target dir (nightly, instrumented); a
# CARGO_TARGET_DIR set for the workspace applies to the seed generator only.
fuzz() { env -u CARGO_TARGET_DIR cargo +nightly fuzz "$@"; }
fuzz build -O
summary=()
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  log=fuzz/artifacts/$target/last-run.log
  dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
  echo "fuzz: $target for ${seconds}s" >&2
  status=0
  fuzz run -O "$target" "$corpus" "$seeds/$target" -- \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -print_final_stats=1 \
    "${dict[@]}" >"$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec:/ {print $2}' "$log" | tail -1)
  summary+=("$(printf '%-22s %12s executions %8s exec/s' "$target" "${execs:-?}" "${rate:-?}")")
  if [ "$status" -ne 0 ]; then
    tail -40 "$log" >&2
    echo "fuzz: $target failed (exit $status); log: $log, input: fuzz/artifacts/$target/" >&2
    printf '%s\n' "${summary[@]}"
    exit "$status"
  fi
done
printf '%s\n' "${summary[@]}"
