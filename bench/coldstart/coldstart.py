#!/usr/bin/env python3
"""Cold start of each Lambda function, measured locally: binary size, init time
and peak RSS. Run by bench/coldstart.sh (under moto, after a release build).

Each function binary is started with its real configuration (tables and queues
on moto, fake credentials, an inline webhook secret) and AWS_LAMBDA_RUNTIME_API
pointing at a tiny fake Lambda Runtime API in this process, which:

- timestamps the first `GET /2018-06-01/runtime/invocation/next`: init time is
  process start to that request (configuration, SDK clients, runtime set-up);
- answers it with a real event (a signed delivery for receive, an SQS batch for
  a processor; from events/) and times the first invocation to its response;
- on the next `next`, reads the process's peak RSS (VmHWM) and stops it.
"""

import argparse
import hashlib
import hmac
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ["receive", "fulfill", "subscription", "dispute", "payout"]
SECRET = "whsec_coldstart_" + os.urandom(8).hex()
TARGETS = {"init_ms": 20.0, "rss_mb": 32.0, "size_mb": 8.0}
NEXT = "/2018-06-01/runtime/invocation/next"


class Run:
    """One cold start: what the fake Runtime API saw."""

    def __init__(self, event):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.first_next = None
        self.response_at = None
        self.response = None
        self.error = None
        self.second_next = threading.Event()
        self.done = threading.Event()


class RuntimeApi(BaseHTTPRequestHandler):
    """The Lambda Runtime API, just enough for one invocation."""

    protocol_version = "HTTP/1.1"
    run = None  # set per server

    def log_message(self, *args):
        pass

    def do_GET(self):
        run = self.server.run
        if self.path != NEXT:
            return self.reply(404, b"{}")
        if run.first_next is None:
            run.first_next = time.perf_counter()
            body = json.dumps(run.event).encode()
            self.reply(200, body, {
                "Lambda-Runtime-Aws-Request-Id": run.request_id,
                "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 30_000),
                "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:coldstart",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            })
        else:
            run.second_next.set()
            run.done.wait(timeout=30)  # the long poll; the process is stopped meanwhile

    def do_POST(self):
        run = self.server.run
        body = self.read_body()
        if self.path.endswith("/response"):
            run.response_at, run.response = time.perf_counter(), body
        elif self.path.endswith("/error"):
            run.response_at, run.error = time.perf_counter(), body
        self.reply(202, b"{}")
        if self.path.endswith("/init/error"):
            run.error = body
            run.second_next.set()

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def reply(self, status, body, headers=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def peak_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def cold_start(binary, function, env, event):
    """Starts `binary` once; returns (init ms, first invocation ms, peak RSS KiB, ok)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), RuntimeApi)
    server.daemon_threads = True
    server.run = run = Run(event)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **env,
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "coldstart",
    }
    started = time.perf_counter()
    process = subprocess.Popen([str(binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not run.second_next.wait(timeout=30):
            raise RuntimeError(f"{function}: no second `next` within 30 s")
        rss = peak_rss_kib(process.pid)
    finally:
        run.done.set()
        process.kill()
        _, stderr = process.communicate()
        server.shutdown()
        server.server_close()
    if run.first_next is None:
        raise RuntimeError(f"{function} never asked for an invocation:\n{stderr.decode(errors='replace')[-2000:]}")
    ok = run.error is None and run.response is not None and invocation_ok(function, run.response)
    if not ok:
        print(f"  {function}: invocation failed: {run.error or run.response!r}\n"
              f"{stderr.decode(errors='replace')[-1500:]}", file=sys.stderr)
    init_ms = (run.first_next - started) * 1000
    invoke_ms = ((run.response_at or run.first_next) - run.first_next) * 1000
    return init_ms, invoke_ms, rss, ok


def invocation_ok(function, response):
    answer = json.loads(response or b"null")
    if function == "receive":
        return answer.get("statusCode") == 200
    return answer.get("batchItemFailures") == []


def sample_event(function, n):
    """A fresh event for the n-th cold start (new event ids, so none is a duplicate)."""
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
