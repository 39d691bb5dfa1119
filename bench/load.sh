#!/usr/bin/env bash
# End-to-end load: `payhook dev` (verify, claim, enqueue, process, all durable
# in SQLite) against the Express + stripe-node handler most merchants write
# (express.raw + stripe.webhooks.constructEvent, nothing persisted), with the
# same wrk load of distinct signed 3 KB events, in the same run.
#
# Prints requests/s and latency for both, then payhook's end-to-end rate
# (events accepted, persisted and processed per second) and the in = out count.
# Usage: bench/load.sh [--effects] [duration_s] [connections] [events]
# PAYHOOK_DEV_FLAGS passes extra flags to payhook dev (e.g. "--batch-size 64").
#
# --effects: payhook dev delivers every effect (one `fulfil` per event) as a
# signed POST to a local endpoint (bench/load/effects_sink.js) instead of a
# log line; prints effects delivered per second and the end-to-end rate with
# that target on (the Express run is skipped: compare with a plain run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
effects=""
if [ "${1:-}" = "--effects" ]; then effects=1; shift; fi
duration="${1:-15}"
connections="${2:-64}"
events="${3:-400000}"
secret="whsec_payhook_load_benchmark"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Tools: wrk from Debian's packages, the Node peer's packages, a release build.
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; else sudo apt-get install -y -qq wrk >/dev/null; fi
fi
(cd bench/peers && [ -d node_modules/express ] && [ -d node_modules/stripe ] || npm ci --ignore-scripts --no-audit --no-fund >/dev/null)
cargo build --profile local -q -p payhook --bin payhook --example load_payloads

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
run_wrk() { # url payloads
  PAYLOADS="$2" wrk -t2 -c"$connections" -d"${duration}s" --timeout 10s -s bench/load/wrk.lua "$1" | grep '^RESULT'
}
field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$2"; }

echo "generating $events signed events..." >&2
for server in express payhook; do
  # One file of ready requests per wrk thread (see bench/load/wrk.lua).
  target/local/examples/load_payloads "$work/$server.req" "$events" "$secret" 3072 2
done
# Write those files out now: otherwise the kernel flushes them to disk during
# the run, and payhook's checkpoints (which fsync) queue behind that flush.
sync

# 1. Express + stripe-node (not with --effects).
express=""
if [ -z "$effects" ]; then
  port="$(free_port)"
  STRIPE_WEBHOOK_SECRET="$secret" PORT="$port" node bench/peers/express_server.js >"$work/express.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$port/healthz"
  express="$(run_wrk "http://127.0.0.1:$port" "$work/express.req")"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
fi

# With --effects, the merchant's endpoint.
effects_flags=()
sink=""
if [ -n "$effects" ]; then
  sink_port="$(free_port)"
  effects_secret="whsec_cGF5aG9va19sb2FkX2VmZmVjdHNfc2VjcmV0"
  EFFECTS_SIGNING_SECRET="$effects_secret" PORT="$sink_port" node bench/load/effects_sink.js >"$work/sink.log" 2>&1 &
  pids+=($!)
  sink="http://127.0.0.1:$sink_port"
  wait_http "$sink/count"
  effects_flags=(--effects "$sink/effects")
fi

# 2. payhook dev: every request a durable, processed event.
port="$(free_port)"
EFFECTS_SIGNING_SECRET="${effects_secret:-}" STRIPE_WEBHOOK_SECRET="$secret" RUST_LOG=warn \
  target/local/payhook dev --port "$port" --db "$work/load.db" "${effects_flags[@]}" ${PAYHOOK_DEV_FLAGS:-} >"$work/payhook.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$port/healthz"
payhook="$(run_wrk "http://127.0.0.1:$port" "$work/payhook.req")"
# Wait until every accepted event has been processed (queues drained).
stats=""
for _ in $(seq 1 600); do
  stats="$(curl -s "http://127.0.0.1:$port/api/stats")"
  pending="$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(sum(q["ready"]+q["in_flight"] for q in s["queues"]))' "$stats")"
  [ "$pending" = 0 ] && break
  sleep 0.2
done
# With --effects, until every effect is delivered too.
delivered="{}"
if [ -n "$effects" ]; then
  for _ in $(seq 1 600); do
    left="$(curl -s "http://127.0.0.1:$port/api/effects?status=pending&limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')"
    [ "$left" = 0 ] && break
    sleep 0.2
  done
  delivered="$(curl -s "$sink/count")"
fi
# The end-to-end window, from the database itself: from the first event
# accepted to the last one applied (wrk's start-up, which loads the payload
# file, and the polling above are outside it).
window="$(python3 - "$work/load.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
first = db.execute("SELECT MIN(received_at_millis) FROM ledger").fetchone()[0]
last = db.execute("SELECT MAX(at_millis) FROM markers").fetchone()[0]
print(first, last)
PY
)"

python3 - "$express" "$payhook" "$stats" $window "$connections" "$delivered" <<'PY'
import json, re, sys
def parse(line):
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
e, p, stats = parse(sys.argv[1]), parse(sys.argv[2]), json.loads(sys.argv[3])
start, end = int(sys.argv[4]) / 1000, int(sys.argv[5]) / 1000
sink = json.loads(sys.argv[7])
accepted = int(p["requests"] - p["non2xx"] - p["errors"])
enqueued = stats["ledger"].get("ENQUEUED", 0)
processed = sum(stats["processed"].values())
dead = sum(q["dead"] for q in stats["queues"])
print()
print(f"{'handler':<28}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'errors':>8}")
rows = (("express + stripe-node", e),) if e else ()
rows += (("payhook dev (end to end)", p),)
for name, r in rows:
    print(f"{name:<28}{r['rps']:>10.0f}{r['p50_us']/1000:>9.2f}{r['p99_us']/1000:>9.2f}{int(r['non2xx']):>9}{int(r['errors']):>8}")
print()
if e:
    print(f"payhook / express: {p['rps']/e['rps']:.2f}x requests/s, p99 {p['p99_us']/e['p99_us']:.2f}x")
# wrk stops with up to one request in flight per connection: those were
# accepted and processed, but wrk never counted their answers.
unanswered = enqueued - accepted
print(f"payhook in = out: answered 2xx {accepted} (+{unanswered} in flight when wrk stopped), ledger ENQUEUED {enqueued}, processed {processed}, dead-lettered {dead}, payloads reused {int(p['reused'])}")
print(f"payhook end-to-end: {processed/(end-start):.0f} events/s processed (first accepted to last applied: {end-start:.1f} s; wrk ran {p['duration_us']/1e6:.1f} s)")
if sink:
    span = max(sink["last_ms"] - sink["first_ms"], 1) / 1000
    print(f"effects delivered: {sink['distinct']} distinct ({sink['count']} POSTs, {sink['bad']} badly signed), "
          f"{sink['count']/span:.0f} effects/s (first to last POST: {span:.1f} s)")
connections = int(sys.argv[6])
if not (enqueued == processed and 0 <= unanswered <= connections and dead == 0 and p["reused"] == 0):
    print("MISMATCH: accepted, enqueued and processed differ", file=sys.stderr)
    sys.exit(1)
if sink and (sink["distinct"] != processed or sink["bad"]):
    print("MISMATCH: effects delivered differ from events processed, or were badly signed", file=sys.stderr)
    sys.exit(1)
PY
