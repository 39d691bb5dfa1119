#!/usr/bin/env python3
"""Per accepted event: AWS calls, DynamoDB capacity units, SQS requests,
Lambda milliseconds and log bytes, measured on the real `receive` and
`fulfill` release binaries against moto. Run by bench/scaling.sh.

1. Builds N signed deliveries: Stripe's natural sequence of a Checkout
   payment (payment_intent.created, charge.succeeded,
   payment_intent.succeeded, checkout.session.completed, from
   events/fulfill-sqs.json) with fresh ids per order, each as the API
   Gateway HTTP API (payload 2.0) request `receive` gets.
2. Timed pass (straight to moto): runs `receive` under the fake Runtime API
   (bench/fake_runtime.py) with its template memory size, invokes it once per
   delivery, then drains the fulfill queue in batches of BATCH (ReceiveMessage,
   DeleteMessageBatch: what Lambda's SQS poller does) into `fulfill`
   invocations. Records each invocation's duration (event handed out to
   answer: what Lambda bills), receive's EMF `Latency`, the processes' CPU
   time, and the bytes they wrote to stdout/stderr (what CloudWatch Logs
   ingests).
3. Metered pass (fresh ids, through bench/scaling/aws_proxy.py): the same
   again, counting every call by function and operation, with its DynamoDB
   write and read units and SQS requests.
4. Node comparison: bench/peers/lambda_handler.js (the Express peer's
   stripe.webhooks.constructEvent check) under the same fake Runtime API
   with a minimal runtime loop: init (cold starts) and per-invocation time,
   next to `receive`'s.

Prints the tables, and writes them as JSON (--json).
"""

import argparse
import hashlib
import hmac
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_runtime import FakeRuntime  # noqa: E402
from aws_proxy import Index, Proxy  # noqa: E402

SECRET = "whsec_scaling_" + os.urandom(8).hex()
# template.yaml: receive MemorySize 256; the processors take the Globals' 128.
MEMORY_MB = {"receive": 256, "fulfill": 128}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def load_local_aws():
    spec = importlib.util.spec_from_file_location("local_aws", ROOT / "scripts/local_aws.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def cpu_ms(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK  # utime + stime


# -- deliveries ------------------------------------------------------------------


def order_sequence():
    """The four event bodies of one Checkout payment, and the ids to renew per order."""
    records = json.loads((ROOT / "events/fulfill-sqs.json").read_text())["Records"]
    bodies = [r["body"] for r in records]
    ids = set()
    for body in bodies:
        event = json.loads(body)
        ids.add(event["id"])
        obj = event["data"]["object"]
        ids.add(obj["id"])
    return bodies, sorted(ids, key=len, reverse=True)


def deliveries(n, tag):
    """n signed API Gateway requests: n/4 orders of four events, fresh ids each."""
    template = json.loads((ROOT / "events/receive-payment-intent-succeeded.json").read_text())
    bodies, ids = order_sequence()
    out = []
    order = 0
    while len(out) < n:
        suffix = f"{tag}{order:05d}"
        for body in bodies:
            if len(out) == n:
                break
            for old in ids:
                body = body.replace(old, old[: len(old) - len(suffix)] + suffix)
            event = json.loads(json.dumps(template))
            t = int(time.time())
            mac = hmac.new(SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
            event["body"] = body
            event["headers"]["stripe-signature"] = f"t={t},v1={mac}"
            event["headers"]["content-length"] = str(len(body.encode()))
            event["requestContext"]["requestId"] = uuid.uuid4().hex[:16]
            event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
            out.append(event)
        order += 1
    return out


def sqs_record(message, queue_arn, region):
    """A received SQS message as the Lambda event source hands it over."""
    attributes = {
        name: {
            "stringValue": value.get("StringValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value.get("DataType", "String"),
        }
        for name, value in message.get("MessageAttributes", {}).items()
    }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "md5OfMessageAttributes": message.get("MD5OfMessageAttributes", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


# -- one pass ----------------------------------------------------------------------


def emf_lines(path):
    docs = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{") and '"_aws"' in line:
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return docs


def run_pass(args, endpoint, exports, events, work, label, proxy=None):
    """Receive every event, then process the fulfill queue. Returns the measurements."""
    import boto3

    region = os.environ.get("AWS_REGION", "us-east-1")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_LAMBDA_")},
        **{k: v for k, v in exports.items() if not k.endswith("_DLQ_URL")},
        "AWS_ENDPOINT_URL": endpoint,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_LIVEMODE": "any",  # the fixtures are test mode
        "RUST_LOG": args.log_level,
    }
    logs = work / label
    logs.mkdir()
    result = {"events": len(events)}

    # receive
    if proxy:
        proxy.phase = "receive"
    with FakeRuntime("receive", [Path(args.bin_dir) / "receive"], env, MEMORY_MB["receive"], log_dir=logs) as rt:
        result["receive_init_ms"] = rt.wait_ready()
        cpu_start = cpu_ms(rt.process.pid)
        durations = []
        for event in events:
            inv = rt.invoke(event)
            answer = inv.json() or {}
            outcome = json.loads(answer.get("body") or "{}").get("outcome")
            if inv.error or answer.get("statusCode") != 200 or outcome != "enqueued":
                raise RuntimeError(f"receive: {inv.error or answer!r}\n{rt.stderr_tail()}")
            durations.append(inv.ms)
        rt.wait_idle()
        result["receive_cpu_ms"] = (cpu_ms(rt.process.pid) - cpu_start) / len(events)
    latency = [d["Latency"] for d in emf_lines(rt.stdout_path) if "Latency" in d]
    result["receive_ms"] = durations
    result["receive_latency_emf"] = latency
    result["receive_log_bytes"] = rt.stdout_path.stat().st_size + rt.stderr_path.stat().st_size

    # fulfill, fed as the event source mapping would
    if proxy:
        proxy.phase = "setup"
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=region)
    queue_url = exports["FULFILL_QUEUE_URL"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    if proxy:
        proxy.phase = "fulfill"
    batches, failed, done = [], 0, 0
    with FakeRuntime("fulfill", [Path(args.bin_dir) / "fulfill"], env, MEMORY_MB["fulfill"], log_dir=logs) as rt:
        result["fulfill_init_ms"] = rt.wait_ready()
        cpu_start = cpu_ms(rt.process.pid)
        empty_since = None
        while done < len(events):
            got = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=args.batch, WaitTimeSeconds=0,
                MessageAttributeNames=["All"], AttributeNames=["All"],
            ).get("Messages", [])
            if not got:
                empty_since = empty_since or time.monotonic()
                if time.monotonic() - empty_since > 20:
                    raise RuntimeError(f"fulfill queue empty after {done} of {len(events)} events")
                time.sleep(0.05)
                continue
            empty_since = None
            inv = rt.invoke({"Records": [sqs_record(m, queue_arn, region) for m in got]})
            if inv.error:
                raise RuntimeError(f"fulfill: {inv.error!r}\n{rt.stderr_tail()}")
            failures = {f["itemIdentifier"] for f in (inv.json() or {}).get("batchItemFailures", [])}
            ok = [m for m in got if m["MessageId"] not in failures]
            if ok:
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(ok)])
            for m in got:
                if m["MessageId"] in failures:  # back at once (Lambda would wait out the visibility timeout)
                    sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
            failed += len(failures)
            done += len(ok)
            batches.append((inv.ms, len(got)))
        rt.wait_idle()
        result["fulfill_cpu_ms_per_event"] = (cpu_ms(rt.process.pid) - cpu_start) / len(events)
    emf = emf_lines(rt.stdout_path)
    result["fulfill_batches"] = batches
    result["fulfill_failed_records"] = failed
    result["fulfill_emf"] = dict(Counter(
        m["Name"] for d in emf for spec in d["_aws"]["CloudWatchMetrics"] for m in spec["Metrics"]))
    result["fulfill_log_bytes"] = rt.stdout_path.stat().st_size + rt.stderr_path.stat().st_size
    return result


# -- cold starts and the Node peer ---------------------------------------------------


def cold_starts(function, argv, env, memory_mb, event_for, runs, warm, work, cwd=None):
    """`runs` cold starts (init ms, first invocation ms) and `warm` invocations of one process."""
    inits, firsts, warm_ms, cpu, rss = [], [], [], None, 0
    for run in range(runs):
        with FakeRuntime(function, argv, env, memory_mb, log_dir=work, cwd=cwd) as rt:
            inits.append(rt.wait_ready())
            inv = rt.invoke(event_for(run, 0))
            check(function, inv, rt)
            firsts.append(inv.ms)
            if run == 0 and warm:
                rt.wait_idle()
                cpu_start = cpu_ms(rt.process.pid)
                for i in range(warm):
                    inv = rt.invoke(event_for(run, i + 1))
                    check(function, inv, rt)
                    warm_ms.append(inv.ms)
                rt.wait_idle()
                cpu = (cpu_ms(rt.process.pid) - cpu_start) / warm
                rss = rt.peak_rss_kib()
    return {"init_ms": inits, "first_ms": firsts, "warm_ms": warm_ms, "cpu_ms": cpu, "rss_mb": rss / 1024}


def check(function, inv, rt):
    answer = inv.json() or {}
    if inv.error or answer.get("statusCode") != 200:
        raise RuntimeError(f"{function}: {inv.error or answer!r}\n{rt.stderr_tail()}")


def node_comparison(args, exports, work):
    node = shutil.which("node")
    if not node:
        print("node not found: skipping the Node comparison", file=sys.stderr)
        return None
    version = os.popen(f"{node} --version").read().strip()
    env_common = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_LAMBDA_")},
        "STRIPE_WEBHOOK_SECRET": SECRET,
    }
    rust_env = {**env_common, **{k: v for k, v in exports.items() if not k.endswith("_DLQ_URL")},
                "WEBHOOK_LIVEMODE": "any", "RUST_LOG": args.log_level}
    pool = deliveries(args.node_runs * (args.node_warm + 1) + 8, "nd")
    it = iter(pool)
    rust_pool = deliveries(args.node_runs * (args.node_warm + 1) + 8, "rc")
    rit = iter(rust_pool)
    peers = ROOT / "bench/peers"
    out = {"node_version": version}
    (work / "node").mkdir()
    (work / "rust").mkdir()
    out["node"] = cold_starts("node-peer", [node, peers / "lambda_runtime.js", peers / "lambda_handler.js"],
                              env_common, 256, lambda run, i: next(it), args.node_runs, args.node_warm,
                              work / "node", cwd=peers)
    out["rust"] = cold_starts("receive", [Path(args.bin_dir) / "receive"], rust_env, 256,
                              lambda run, i: next(rit), args.node_runs, args.node_warm, work / "rust")
    return out


# -- report ----------------------------------------------------------------------------


def summarise(timed, metered, calls, units, sizes, n):
    s = {}
    r = timed["receive_ms"]
    s["receive_ms_median"] = statistics.median(r[1:])
    s["receive_ms_p95"] = percentile(r[1:], 95)
    s["receive_ms_first"] = r[0]
    s["receive_emf_latency_median"] = statistics.median(timed["receive_latency_emf"][1:])
    s["receive_emf_latency_p95"] = percentile(timed["receive_latency_emf"][1:], 95)
    s["receive_cpu_ms"] = timed["receive_cpu_ms"]
    s["receive_billed_ms_per_event"] = sum(max(1, -(-ms // 1)) for ms in r[1:]) / len(r[1:])
    b = timed["fulfill_batches"]
    batch_ms = [ms for ms, _ in b[1:]] or [b[0][0]]
    full = [ms for ms, size in b[1:] if size == max(sz for _, sz in b)]
    s["fulfill_batches"] = len(b)
    s["fulfill_batch_size_mean"] = sum(sz for _, sz in b) / len(b)
    s["fulfill_batch_ms_median"] = statistics.median(batch_ms)
    s["fulfill_batch_ms_p95"] = percentile(batch_ms, 95)
    s["fulfill_full_batch_ms_median"] = statistics.median(full) if full else float("nan")
    s["fulfill_ms_per_event"] = sum(ms for ms, _ in b) / n
    s["fulfill_billed_ms_per_event"] = sum(max(1, -(-ms // 1)) for ms, _ in b) / n
    s["fulfill_invocations_per_event"] = len(b) / n
    s["fulfill_cpu_ms_per_event"] = timed["fulfill_cpu_ms_per_event"]
    s["log_bytes_per_event"] = {
        "receive": timed["receive_log_bytes"] / n,
        "fulfill": timed["fulfill_log_bytes"] / n,
    }
    s["calls_per_event"] = {f"{c} {op}": k / n for (c, op), k in sorted(calls.items())}
    s["units_per_event"] = {f"{c} {kind}": u / n for (c, kind), u in sorted(units.items())}
    s["sizes"] = {what: {"mean": statistics.mean(v), "max": max(v), "n": len(v)} for what, v in sorted(sizes.items())}
    s["fulfill_failed_records"] = timed["fulfill_failed_records"] + metered["fulfill_failed_records"]
    s["fulfill_emf_per_event"] = {k: v / n for k, v in timed["fulfill_emf"].items()}
    return s


def print_report(s, node, n, batch):
    print(f"\nPer accepted event, {n} events (orders of 4: payment_intent.created, charge.succeeded,")
    print(f"payment_intent.succeeded, checkout.session.completed), fulfill fed batches of up to {batch}:\n")
    print("Lambda time (fake Runtime API: event handed out -> answer; against moto on this machine)")
    print(f"  receive  per invocation   median {s['receive_ms_median']:7.2f} ms  p95 {s['receive_ms_p95']:7.2f} ms"
          f"  (first, cold: {s['receive_ms_first']:.1f} ms)")
    print(f"           EMF Latency      median {s['receive_emf_latency_median']:7.2f} ms  p95 {s['receive_emf_latency_p95']:7.2f} ms")
    print(f"           CPU per event           {s['receive_cpu_ms']:7.2f} ms   billed (1 ms rounding) {s['receive_billed_ms_per_event']:.2f} ms")
    print(f"  fulfill  per batch        median {s['fulfill_batch_ms_median']:7.2f} ms  p95 {s['fulfill_batch_ms_p95']:7.2f} ms"
          f"  ({s['fulfill_batches']} batches, mean {s['fulfill_batch_size_mean']:.1f} records;"
          f" full batches median {s['fulfill_full_batch_ms_median']:.2f} ms)")
    print(f"           per event               {s['fulfill_ms_per_event']:7.2f} ms   billed {s['fulfill_billed_ms_per_event']:.2f} ms"
          f"   CPU {s['fulfill_cpu_ms_per_event']:.2f} ms   invocations {s['fulfill_invocations_per_event']:.3f}")
    print(f"  log bytes per event: receive {s['log_bytes_per_event']['receive']:.0f}, fulfill {s['log_bytes_per_event']['fulfill']:.0f}")
    print(f"  fulfill EMF lines per event: {s['fulfill_emf_per_event']}; failed records: {s['fulfill_failed_records']}")
    print("\nAWS calls per event (caller: rust = the function, harness = the SQS poller's part)")
    for k, v in s["calls_per_event"].items():
        print(f"  {k:<45} {v:6.3f}")
    print("\nCapacity per event (DynamoDB WRU/RRU by table; SQS billed requests)")
    for k, v in s["units_per_event"].items():
        print(f"  {k:<45} {v:6.3f}")
    print("\nItem and message sizes (bytes, DynamoDB's item size)")
    for k, v in s["sizes"].items():
        print(f"  {k:<45} mean {v['mean']:7.0f}  max {v['max']:6d}  ({v['n']} writes/reads)")
    if node:
        print(f"\nNode comparison (node {node['node_version']}; same fake Runtime API; 256 MB setting, not enforced locally)")
        for name, r in (("receive (Rust)", node["rust"]), ("Node + stripe", node["node"])):
            print(f"  {name:<15} init median {statistics.median(r['init_ms']):7.1f} ms (max {max(r['init_ms']):.1f}, "
                  f"{len(r['init_ms'])} runs)  1st invoke {statistics.median(r['first_ms']):6.2f} ms  "
                  f"warm median {statistics.median(r['warm_ms']):5.2f} ms p95 {percentile(r['warm_ms'], 95):5.2f} ms  "
                  f"CPU/inv {r['cpu_ms']:.2f} ms  peak RSS {r['rss_mb']:.1f} MB")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500, help="accepted events per pass (default 500)")
    parser.add_argument("--batch", type=int, default=10, help="records per fulfill invocation (default 10)")
    parser.add_argument("--bin-dir", default=str(ROOT / "target/release"))
    parser.add_argument("--log-level", default="info", help="RUST_LOG, as the template's LogLevel (default info)")
    parser.add_argument("--node-runs", type=int, default=5, help="cold starts each for the Node comparison")
    parser.add_argument("--node-warm", type=int, default=200, help="warm invocations for the Node comparison")
    parser.add_argument("--no-node", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    moto = os.environ.get("AWS_ENDPOINT_URL")
    if not moto:
        sys.exit("scaling.py: AWS_ENDPOINT_URL is not set; run bench/scaling.sh (moto)")

    local_aws = load_local_aws()
    region = os.environ.get("AWS_REGION", "us-east-1")
    work = Path(tempfile.mkdtemp(prefix="payhook-scaling-"))
    try:
        # Timed pass: straight to moto.
        exports = local_aws.create_all("timed", region, moto)
        timed = run_pass(args, moto, exports, deliveries(args.events, "tm"), work, "timed")

        # Metered pass: through the counting proxy, on fresh tables.
        exports = local_aws.create_all("metered", region, moto)
        state = local_aws.RESOURCES["tables"]["StateTable"]
        indexes = {exports["STATE_TABLE"]: [
            Index("pk", [k["AttributeName"] for k in ix["KeySchema"]], ix["Projection"].get("NonKeyAttributes", []))
            for ix in state["indexes"]]}
        proxy = Proxy(moto, indexes).start()
        try:
            metered = run_pass(args, proxy.url, exports, deliveries(args.events, "mt"), work, "metered", proxy)
            calls, units, sizes = proxy.meter.snapshot()
        finally:
            proxy.stop()

        node = None if args.no_node else node_comparison(args, local_aws.create_all("node", region, moto), work)
        summary = summarise(timed, metered, calls, units, sizes, args.events)
        print_report(summary, node, args.events, args.batch)
        if args.json:
            Path(args.json).write_text(json.dumps({"summary": summary, "node": node}, indent=2, default=str))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
