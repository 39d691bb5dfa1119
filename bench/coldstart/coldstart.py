#!/usr/bin/env python3
"""Cold start of each Lambda function, measured locally: binary size, init time
and peak RSS. Run by bench/coldstart.sh (under moto, after a release build).

Each function binary is started with its real configuration (tables and queues
on moto, fake credentials, an inline webhook secret) and AWS_LAMBDA_RUNTIME_API
pointing at a tiny fake Lambda Runtime API in this process (bench/fake_runtime.py),
which:

- timestamps the first `GET /2018-06-01/runtime/invocation/next`: init time is
  process start to that request (configuration, SDK clients, runtime set-up);
- answers it with a real event (a signed delivery for receive, an SQS batch for
  a processor; from events/; `{"reconcile": {}}` for reconcile, whose Stripe
  Events API is a fake here listing one fresh event) and times the first
  invocation to its response;
- on the next `next`, reads the process's peak RSS (VmHWM) and stops it.
"""

import argparse
import hashlib
import hmac
import importlib.util
import json
import os
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from fake_runtime import FakeRuntime  # noqa: E402

FUNCTIONS = ["receive", "fulfill", "subscription", "dispute", "payout", "reconcile"]
SECRET = "whsec_coldstart_" + os.urandom(8).hex()
TARGETS = {"init_ms": 20.0, "rss_mb": 32.0, "size_mb": 8.0}


def cold_start(binary, function, env, event):
    """Starts `binary` once; returns (init ms, first invocation ms, peak RSS KiB, ok)."""
    runtime = FakeRuntime(function, [binary], env, memory_mb=128)
    runtime.start()
    stderr = ""
    try:
        init_ms = runtime.wait_ready()
        invocation = runtime.invoke(event)
        if not runtime.wait_idle():
            raise RuntimeError(f"{function}: no second `next` within 30 s")
        rss = runtime.peak_rss_kib()
    finally:
        stderr = runtime.stop()
    ok = invocation.error is None and invocation.response is not None and invocation_ok(function, invocation.response)
    if not ok:
        print(f"  {function}: invocation failed: {invocation.error or invocation.response!r}\n"
              f"{stderr[-1500:]}", file=sys.stderr)
    return init_ms, invocation.ms, rss, ok


def invocation_ok(function, response):
    answer = json.loads(response or b"null")
    if function == "reconcile":
        return True  # any answer that is not an invocation error
    if function == "receive":
        return answer.get("statusCode") == 200
    return answer.get("batchItemFailures") == []


def sample_event(function, n):
    """A fresh event for the n-th cold start (new event ids, so none is a duplicate)."""
    if function == "reconcile":
        return {"reconcile": {}}
    if function == "receive":
        event = json.loads((ROOT / "events/receive-payment-intent-succeeded.json").read_text())
        body = json.loads(event["body"])
        body["id"] = f"{body['id']}cs{n}"
        event["body"] = json.dumps(body)
        t = int(time.time())
        mac = hmac.new(SECRET.encode(), f"{t}.{event['body']}".encode(), hashlib.sha256).hexdigest()
        event["headers"]["stripe-signature"] = f"t={t},v1={mac}"
        event["headers"].pop("content-length", None)
        return event
    event = json.loads((ROOT / f"events/{function}-sqs.json").read_text())
    for record in event["Records"]:
        body = json.loads(record["body"])
        body["id"] = f"{body['id']}cs{n}"
        record["body"] = json.dumps(body)
        record["messageAttributes"]["event_id"]["stringValue"] = body["id"]
    return event


class FakeStripeEvents:
    """`GET /v1/events` for reconcile: each request lists one fresh
    payment_intent.succeeded (so a run claims and enqueues one event), no more pages."""

    def __init__(self):
        detail = json.loads(json.loads((ROOT / "events/receive-payment-intent-succeeded.json").read_text())["body"])
        served = iter(range(1 << 30))

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.startswith("/v1/events"):
                    self.send_error(404)
                    return
                event = {**detail, "id": f"{detail['id']}rc{next(served)}", "created": int(time.time()) - 60}
                body = json.dumps({"object": "list", "url": "/v1/events", "has_more": False, "data": [event]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


def size_mb(path):
    return path.stat().st_size / 1e6 if path.exists() else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold starts per function (default 5)")
    parser.add_argument("--bin-dir", default=str(ROOT / "target/release"), help="where the native release binaries are")
    parser.add_argument("functions", nargs="*", default=FUNCTIONS)
    args = parser.parse_args()
    if not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("coldstart.py: AWS_ENDPOINT_URL is not set; run bench/coldstart.sh (moto)")

    spec = importlib.util.spec_from_file_location("local_aws", ROOT / "scripts/local_aws.py")
    local_aws = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(local_aws)
    exports = local_aws.create_all("coldstart", os.environ.get("AWS_REGION", "us-east-1"), os.environ["AWS_ENDPOINT_URL"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_LAMBDA_")},
        **{k: v for k, v in exports.items() if not k.endswith("_DLQ_URL")},
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "RUST_LOG": "warn",
    }
    if "reconcile" in args.functions:
        # An inline key, as the webhook secret is; the API is the fake above.
        env.update({"STRIPE_API_KEY": "rk_test_coldstart", "STRIPE_API_BASE": FakeStripeEvents().base})

    rows = []
    for function in args.functions:
        binary = Path(args.bin_dir) / function
        results = [cold_start(binary, function, env, sample_event(function, n)) for n in range(args.runs)]
        inits = [r[0] for r in results]
        rows.append({
            "function": function,
            "size_mb": size_mb(binary),
            "arm64_mb": size_mb(ROOT / f"target/lambda/{function}/bootstrap"),
            "init_ms": statistics.median(inits),
            "init_max_ms": max(inits),
            "invoke_ms": statistics.median(r[1] for r in results),
            "rss_mb": max(r[2] for r in results) / 1024,
            "ok": all(r[3] for r in results),
        })
    print_table(rows, args.runs)
    return 0 if all(r["ok"] for r in rows) else 1


def print_table(rows, runs):
    def mark(value, target):
        return " " if value is None else ("✓" if value <= target else "✗")

    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    print(f"\nCold start, {runs} runs per function (native x86_64 release build; init = process start to the first")
    print("Runtime API `next`; 1st invoke = that event to its response, against moto):\n")
    print(f"{'function':<13} {'x86_64 MB':>10} {'arm64 MB':>10} {'init ms (median/max)':>22} "
          f"{'1st invoke ms':>14} {'peak RSS MB':>12}  invoke")
    for r in rows:
        size = r["arm64_mb"] if r["arm64_mb"] is not None else r["size_mb"]
        print(f"{r['function']:<13} {num(r['size_mb'], '.2f'):>10} {num(r['arm64_mb'], '.2f'):>9}{mark(size, TARGETS['size_mb'])}"
              f" {r['init_ms']:>13.1f} / {r['init_max_ms']:>5.1f}{mark(r['init_ms'], TARGETS['init_ms'])}"
              f" {r['invoke_ms']:>14.1f} {r['rss_mb']:>11.1f}{mark(r['rss_mb'], TARGETS['rss_mb'])}"
              f"  {'ok' if r['ok'] else 'FAILED'}")
    print(f"\ntargets: init <= {TARGETS['init_ms']:.0f} ms, peak RSS <= {TARGETS['rss_mb']:.0f} MB, "
          f"binary <= {TARGETS['size_mb']:.0f} MB (the arm64 artifact when built, else x86_64)")


if __name__ == "__main__":
    sys.exit(main())
