"""The six real Lambda binaries, end to end, under cargo-lambda's runtime
emulator (`cargo lambda watch`) against moto server.

    scripts/e2e_lambda.sh      (starts moto through scripts/moto.sh, then this)

First it checks that the tables and queues scripts/local_aws.py created on moto
are the ones template.yaml defines. Then, with the deployment's environment
(tables, queue URLs, an inline signing secret) and the sample deliveries in
events/ re-signed now, it proves:

1. receive answers signed Stripe deliveries through the emulated function URL
   (and an API Gateway HTTP API event through `cargo lambda invoke`), and each
   routed event lands, once, on its processor's SQS queue; an unknown type is
   acknowledged and enqueued nowhere; a bad signature is refused;
2. each processor, invoked with the queue's messages as an SQS event, reports no
   failure and leaves the business state and the per-event marker in the
   state table;
3. a duplicate delivery is answered 200 `duplicate` and enqueues nothing; the
   same SQS record applied again changes nothing;
4. a body too large for SQS travels by reference (ledger) and is still applied;
5. a poison record is named in `batchItemFailures` (the rest of the batch
   applied), and through the real queue's redrive policy it reaches the
   dead-letter queue after maxReceiveCount receives;
6. per processor, a `payhook trigger` sequence in Stripe's order, with
   `EFFECTS_TARGET` a loopback HTTP server that verifies each Standard
   Webhooks signature: the exact effects per object (FLOWS), `seq` 1..n, none
   repeated by a duplicate delivery or a replayed record;
7. with `EFFECTS_TARGET=eventbridge:<bus>`, the effects reach a rule's SQS
   target with Source `payhook`, DetailType `<processor>.<effect>`, Detail
   `id`/`seq`;
8. under faults: 93 events (duplicates included) through receive and the
   processors with every AWS call through a seeded fault proxy
   (tests/e2e/servers.py: 500s, answers dropped after the call happened,
   stalls past the SDK's attempt timeout before and after forwarding) and the
   HTTP target failing some first attempts; deliveries re-sent until 2xx,
   queues re-driven until empty, then each processor's sweep: every event in
   the ledger and applied, every effect delivered once (by `webhook-id`) in
   `seq` order, no queue or dead-letter queue holding anything and no
   outbox left pending. E2E_FAULT_SEED picks another fault sequence.

Every server it starts (emulators, HTTP sinks, the proxy) is stopped on the way out.
"""

import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import EffectSink, FaultProxy, Recorder  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "target" / "e2e-lambda"
CARGO_LAMBDA = ROOT / ".venv" / "bin" / "cargo-lambda"
SECRET = "whsec_e2e_" + os.urandom(12).hex()
EFFECTS_SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
FAULT_SEED = int(os.environ.get("E2E_FAULT_SEED", "13"))
PAYHOOK = ROOT / "target" / "debug" / "payhook"
FIRST_BUILD_TIMEOUT = 900  # the emulator compiles a function on its first invocation

# Sample deliveries (events/) and the processor each one is routed to.
DELIVERIES = {
    "receive-payment-intent-succeeded.json": "fulfill",
    "receive-subscription-updated.json": "subscription",
    "receive-dispute-created.json": "dispute",
    "receive-payout-failed.json": "payout",
}
PROCESSORS = ["fulfill", "subscription", "dispute", "payout"]


def step(message):
    print(f"--- {message}", flush=True)


def load_local_aws():
    spec = importlib.util.spec_from_file_location("local_aws", ROOT / "scripts" / "local_aws.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stripe_signature(body, secret=SECRET, at=None):
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def sample(name):
    """A sample API Gateway event from events/, and its Stripe event."""
    event = json.loads((ROOT / "events" / name).read_text())
    return event, json.loads(event["body"])


class Emulator:
    """`cargo lambda watch` on 127.0.0.1:<free port>, stopped with its process group."""

    def __init__(self, env, name="watch"):
        self.port = free_port()
        self.log_path = WORK / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(CARGO_LAMBDA), "lambda", "watch", "--ignore-changes",
             "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cargo lambda watch exited:\n{self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"cargo lambda watch did not listen on {self.port}:\n{self.tail()}")

    def tail(self, lines=60):
        if not self.log.closed:
            self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()

    def post(self, path, body, headers, timeout=FIRST_BUILD_TIMEOUT):
        """POST to the emulated function URL of receive; returns (status, JSON body)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/lambda-url/receive{path}",
            data=body.encode(), headers={"content-type": "application/json", **headers}, method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            text = err.read()
            try:
                return err.code, json.loads(text or b"null")
            except ValueError:
                return err.code, text.decode(errors="replace")

    def call(self, function, event, timeout=120):
        """Invokes `function` through the emulator's Lambda Invoke API; returns its JSON answer
        (an `errorType` answer when the function failed)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/2015-03-31/functions/{function}/invocations",
            data=json.dumps(event).encode(), headers={"content-type": "application/json"}, method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            return {"errorType": f"HTTP {err.code}", "errorMessage": text}

    def invoke(self, function, event):
        """`cargo lambda invoke <function> --data-file …`; returns the function's JSON answer."""
        path = WORK / f"{function}-event.json"
        path.write_text(json.dumps(event))
        done = subprocess.run(
            [str(CARGO_LAMBDA), "lambda", "invoke", function, "--data-file", str(path),
             "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port), "--output-format", "json"],
            cwd=ROOT, capture_output=True, text=True, timeout=FIRST_BUILD_TIMEOUT,
        )
        assert done.returncode == 0, f"invoke {function} failed: {done.stderr}\n{self.tail()}"
        return json.loads(done.stdout)


class Aws:
    """boto3 clients on moto, and the resources local_aws.py created."""

    def __init__(self, exports):
        self.exports = exports
        self.sqs = boto3.client("sqs")
        self.dynamodb = boto3.client("dynamodb")
        self.region = self.sqs.meta.region_name

    def queue_url(self, processor, dead=False):
        return self.exports[f"{processor.upper()}_{'DLQ' if dead else 'QUEUE'}_URL"]

    def queue_arn(self, url):
        return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive(self, url, wait=1, visibility=30):
        return self.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait, VisibilityTimeout=visibility,
            MessageAttributeNames=["All"], AttributeNames=["All"],
        ).get("Messages", [])

    def delete(self, url, messages):
        for m in messages:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])

    def sqs_event(self, url, messages):
        """The event Lambda's SQS event source would hand the function."""
        arn = self.queue_arn(url)
        records = []
        for m in messages:
            attributes = {
                name: {"stringValue": a.get("StringValue"), "stringListValues": [], "binaryListValues": [],
                       "dataType": a["DataType"]}
                for name, a in m.get("MessageAttributes", {}).items()
                if "DataType" in a  # moto lists system attribute names with empty values
            }
            records.append({
                "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": attributes,
                "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": arn,
                "awsRegion": self.region,
            })
        return {"Records": records}

    def state_items(self):
        table = self.exports["STATE_TABLE"]
        items, start = [], {}
        while True:
            page = self.dynamodb.scan(TableName=table, **start)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return {i["pk"]["S"]: i for i in items}
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def attribute(message, name):
    return message.get("MessageAttributes", {}).get(name, {}).get("StringValue")


def main():
    if not os.environ.get("AWS_ENDPOINT_URL"):
        sys.exit("test_lambda_e2e.py: AWS_ENDPOINT_URL is not set; run scripts/e2e_lambda.sh (moto)")
    WORK.mkdir(parents=True, exist_ok=True)
    began = time.time()
    local_aws = load_local_aws()
    prefix = f"e2e{int(time.time())}"
    region = os.environ.get("AWS_REGION", "us-east-1")
    exports = local_aws.create_all(prefix, region, os.environ["AWS_ENDPOINT_URL"])
    aws = Aws(exports)
    step("local resources: what scripts/local_aws.py created on moto is what template.yaml defines")
    check_resources_match_template(aws, local_aws.RESOURCES)
    env = {
        **os.environ,
        **{k: v for k, v in exports.items() if not k.endswith("_DLQ_URL")},
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_TOLERANCE_SECONDS": "300",
        "RUST_LOG": os.environ.get("RUST_LOG", "info"),
        "EFFECTS_SIGNING_SECRET": EFFECTS_SECRET,
    }
    servers = []  # every server started here, stopped on the way out
    try:
        recorder = started(servers, Recorder())
        sink = started(servers, EffectSink(EFFECTS_SECRET))
        step(f"starting cargo lambda watch (tables and queues prefixed {prefix}; effects to {sink.url}/effects)")
        with running(Emulator({**env, "EFFECTS_TARGET": f"{sink.url}/effects"})) as emulator:
            run(emulator, aws)
            scenarios = Scenarios(emulator, aws, recorder)
            for processor in PROCESSORS:
                scenarios.per_processor(processor, sink)

        bus = f"{prefix}-effects"
        step(f"restarting cargo lambda watch with EFFECTS_TARGET=eventbridge:{bus}")
        events_queue = eventbridge_bus(aws, bus)
        with running(Emulator({**env, "EFFECTS_TARGET": f"eventbridge:{bus}"}, "watch-eventbridge")) as emulator:
            Scenarios(emulator, aws, recorder).eventbridge(events_queue)

        # Besides the seeded draws, the 5th commit's answer is withheld past the SDK's attempt
        # timeout: the SDK retries a commit that happened, which comes back a duplicate (issue 13).
        proxy = started(servers, FaultProxy(
            os.environ["AWS_ENDPOINT_URL"], seed=FAULT_SEED,
            scripted={("DynamoDB_20120810.TransactWriteItems", 5): "forwarded_then_stalled"},
        ))
        faulty_sink = started(servers, EffectSink(EFFECTS_SECRET, fail_first=fails_first_attempt))
        step(f"restarting cargo lambda watch behind the fault proxy {proxy.url} (seed {FAULT_SEED})")
        fault_env = {
            **env,
            "AWS_ENDPOINT_URL": proxy.url,
            "EFFECTS_TARGET": f"{faulty_sink.url}/effects",
            "EFFECTS_MAX_ATTEMPTS": "20",
            # The shortest lease receive accepts (twice its 10 s timeout): a
            # claim whose release failed holds its event this long.
            "LEDGER_LEASE_SECONDS": "20",
        }
        with running(Emulator(fault_env, "watch-faults")) as emulator:
            Scenarios(emulator, aws, recorder).under_faults(proxy, faulty_sink)
    finally:
        for server in reversed(servers):
            server.stop()
    print(f"e2e: all checks passed in {time.time() - began:.0f} s", flush=True)


def started(servers, server):
    servers.append(server)
    return server


@contextlib.contextmanager
def running(emulator):
    """The emulator, stopped on the way out; its log tail printed when a check fails."""
    try:
        yield emulator
    except BaseException:
        print(f"{emulator.log_path.name} (tail):\n{emulator.tail()}", file=sys.stderr)
        raise
    finally:
        emulator.stop()


def run(emulator, aws):
    expected = {}  # processor -> [(event id, object id)]
    step("receive: signed deliveries through the function URL (first call compiles receive)")
    for name, processor in DELIVERIES.items():
        _, event = sample(name)
        body = json.dumps(event)
        status, answer = emulator.post("/webhooks/stripe", body, {"stripe-signature": stripe_signature(body)})
        assert status == 200, f"{name}: {status} {answer}"
        assert not answer.get("duplicate"), f"{name}: first delivery answered as duplicate: {answer}"
        expected.setdefault(processor, []).append((event["id"], event["data"]["object"]["id"]))
        print(f"    {event['type']:<32} -> 200 {answer}")

    step("receive: an API Gateway HTTP API event through `cargo lambda invoke`")
    gateway_event, event = sample("receive-checkout-session-completed.json")
    gateway_event["headers"]["stripe-signature"] = stripe_signature(gateway_event["body"])
    answer = emulator.invoke("receive", gateway_event)
    assert answer.get("statusCode") == 200, answer
    expected["fulfill"].append((event["id"], None))

    step("receive: Stripe's EventBridge destination, an ingress batch through `cargo lambda invoke`")
    # events/receive-eventbridge-sqs.json as `make invoke` sends it: its event
    # is the webhook-delivered payment again (a duplicate: one ledger claim
    # for both ways in), plus the same envelope around a fresh event, and one
    # from a source that is not Stripe's (left for the dead-letter queue).
    batch = json.loads((ROOT / "events" / "receive-eventbridge-sqs.json").read_text())
    record = batch["Records"][0]
    bridged = json.loads(record["body"])
    _, webhook_event = sample("receive-payment-intent-succeeded.json")
    assert bridged["detail"]["id"] == webhook_event["id"], "the sample bridges the webhook sample's event"
    fresh = json.loads(json.dumps(bridged))
    fresh["detail"]["id"] = f"evt_bridge_{int(time.time() * 1000)}"
    fresh["detail"]["data"]["object"]["id"] = f"pi_bridge_{int(time.time() * 1000)}"
    foreign = json.loads(json.dumps(fresh))
    foreign["source"] = "aws.partner/example.com/not-stripe"
    foreign["detail"]["id"] += "_foreign"
    batch["Records"] = [
        record,
        dict(record, messageId="m-fresh", body=json.dumps(fresh)),
        dict(record, messageId="m-foreign", body=json.dumps(foreign)),
    ]
    answer = emulator.invoke("receive", batch)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-foreign"}]}, answer
    expected["fulfill"].append((fresh["detail"]["id"], fresh["detail"]["data"]["object"]["id"]))

    step("receive: an unknown type is acknowledged and enqueued nowhere; a bad signature is refused")
    _, ignored = sample("receive-ignored-type.json")
    body = json.dumps(ignored)
    status, answer = emulator.post("/webhooks/stripe", body, {"stripe-signature": stripe_signature(body)})
    assert status == 200, (status, answer)
    status, answer = emulator.post(
        "/webhooks/stripe", body, {"stripe-signature": stripe_signature(body, secret="whsec_wrong")}
    )
    assert status == 400 and "whsec_wrong" not in json.dumps(answer), (status, answer)

    # A signed body that is not UTF-8: API Gateway and Function URLs deliver it
    # base64-encoded, and receive answers 400. (`cargo lambda watch`'s own
    # function URL answers such a body 500 itself, without invoking the
    # function: that 500 is the emulator's, so the real event shape is used.)
    step("receive: a signed body that is not UTF-8 is a 400 on the API Gateway path")
    raw = b"\xff\xfe{\xc3(}"
    at = int(time.time())
    mac = hmac.new(SECRET.encode(), f"{at}.".encode() + raw, hashlib.sha256).hexdigest()
    binary_event, _ = sample("receive-checkout-session-completed.json")
    binary_event["headers"]["stripe-signature"] = f"t={at},v1={mac}"
    binary_event["body"] = base64.b64encode(raw).decode()
    binary_event["isBase64Encoded"] = True
    answer = emulator.invoke("receive", binary_event)
    assert answer.get("statusCode") == 400 and "UTF-8" in answer.get("body", ""), answer

    step("queues: each routed event is on its processor's queue, once")
    batches = {}
    for processor in PROCESSORS:
        url = aws.queue_url(processor)
        messages = drain(aws, url, len(expected.get(processor, [])))
        ids = sorted(attribute(m, "event_id") for m in messages)
        assert ids == sorted(e for e, _ in expected.get(processor, [])), f"{processor}: {ids}"
        batches[processor] = messages
        print(f"    {processor:<13} {len(messages)} message(s)")

    step("processors: each applies its batch through `cargo lambda invoke` (first call compiles it)")
    for processor, messages in batches.items():
        url = aws.queue_url(processor)
        answer = emulator.invoke(processor, aws.sqs_event(url, messages))
        assert answer.get("batchItemFailures") == [], f"{processor}: {answer}"
        aws.delete(url, messages)
    state = aws.state_items()
    for processor, events in expected.items():
        for event_id, object_id in events:
            assert f"marker#{processor}#{event_id}" in state, f"no marker for {processor}/{event_id}"
            applied = [pk for pk, i in state.items()
                       if not pk.startswith("marker#") and i.get("last_event_id", {}).get("S") == event_id]
            if object_id:
                assert any(pk.endswith(f"#{object_id}") for pk in applied), f"{event_id}: state {applied}"
                print(f"    {processor:<13} {applied[0]} <- {event_id}")

    step("duplicate delivery: 200 duplicate, nothing enqueued; a replayed record changes nothing")
    _, event = sample("receive-payment-intent-succeeded.json")
    body = json.dumps(event)
    status, answer = emulator.post("/webhooks/stripe", body, {"stripe-signature": stripe_signature(body)})
    assert status == 200 and answer.get("duplicate") is True, (status, answer)
    assert aws.receive(aws.queue_url("fulfill"), wait=1) == [], "a duplicate delivery was enqueued again"
    order = f"order#{event['data']['object']['id']}"
    before = state[order]
    replay = aws.sqs_event(aws.queue_url("fulfill"), [m for m in batches["fulfill"] if attribute(m, "event_id") == event["id"]])
    assert emulator.invoke("fulfill", replay).get("batchItemFailures") == []
    assert aws.state_items()[order] == before, "replaying an applied record changed the state"

    step("large body: travels by reference through the ledger and is applied")
    _, big = sample("receive-payout-failed.json")
    big["id"] += "big"
    big["data"]["object"]["id"] += "big"
    big["data"]["object"]["description"] = "x" * 300_000
    body = json.dumps(big)
    status, answer = emulator.post("/webhooks/stripe", body, {"stripe-signature": stripe_signature(body)})
    assert status == 200, (status, answer)
    messages = drain(aws, aws.queue_url("payout"), 1)
    assert attribute(messages[0], "body_ref") == "ledger", messages[0].get("MessageAttributes")
    answer = emulator.invoke("payout", aws.sqs_event(aws.queue_url("payout"), messages))
    assert answer.get("batchItemFailures") == [], answer
    aws.delete(aws.queue_url("payout"), messages)
    assert f"marker#payout#{big['id']}" in aws.state_items()

    step("poison record: named in batchItemFailures, the rest of the batch applied")
    fulfill_url = aws.queue_url("fulfill")
    aws.sqs.send_message(QueueUrl=fulfill_url, MessageBody="{not an event")
    poison = drain(aws, fulfill_url, 1, visibility=0)
    batch = aws.sqs_event(fulfill_url, poison)
    batch["Records"] += replay["Records"]
    answer = emulator.invoke("fulfill", batch)
    assert answer.get("batchItemFailures") == [{"itemIdentifier": poison[0]["MessageId"]}], answer

    step("dead-letter path: the real queue's redrive moves it to the DLQ after maxReceiveCount receives")
    max_receive = json.loads(
        aws.sqs.get_queue_attributes(QueueUrl=fulfill_url, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"]
    )["maxReceiveCount"]
    receives = 1  # the one above
    while True:
        messages = aws.receive(fulfill_url, wait=1, visibility=0)
        if not messages:
            break
        receives += 1
        answer = emulator.invoke("fulfill", aws.sqs_event(fulfill_url, messages))
        assert answer.get("batchItemFailures") == [{"itemIdentifier": messages[0]["MessageId"]}], answer
        assert receives <= int(max_receive) + 1, "the poison record never left the queue"
    dead = aws.receive(aws.queue_url("fulfill", dead=True), wait=1)
    assert [m["Body"] for m in dead] == ["{not an event"], dead
    aws.delete(aws.queue_url("fulfill", dead=True), dead)
    print(f"    dead-lettered after {receives} receives (maxReceiveCount {max_receive})")


# The effects each `payhook trigger` sequence must make the merchant see, per
# object kind, when its events arrive in Stripe's order (README, processor table).
FLOWS = {
    "payment_intent.succeeded": {"order": ["fulfill.fulfil"]},
    "charge.refunded": {"order": ["fulfill.fulfil", "fulfill.revoke_fulfilment"]},
    "refund.failed": {"order": ["fulfill.fulfil", "fulfill.revoke_fulfilment", "fulfill.refund_failed"]},
    "customer.subscription.created": {"subscription": ["subscription.grant"]},
    "customer.subscription.deleted": {"subscription": ["subscription.grant", "subscription.revoke"]},
    "charge.dispute.closed": {
        "order": ["fulfill.fulfil"],
        "dispute": ["dispute.alert", "dispute.funds_withdrawn", "dispute.outcome", "dispute.funds_reinstated"],
    },
    "payout.failed": {"payout": ["payout.payout_failed"]},
    "payout.paid": {},
}
# One scenario per processor: the sequence that exercises its rules furthest.
PROCESSOR_FLOWS = {
    "fulfill": "refund.failed",  # a refund failing after the revoke: refund_failed, never a second fulfil
    "subscription": "customer.subscription.deleted",
    "dispute": "charge.dispute.closed",
    "payout": "payout.failed",
}
# The batch run through the fault proxy: (sequence, how many times), 93 events.
FAULT_MIX = [
    ("charge.refunded", 3), ("refund.failed", 2), ("payment_intent.succeeded", 3),
    ("customer.subscription.deleted", 2), ("customer.subscription.created", 2),
    ("charge.dispute.closed", 2), ("payout.failed", 3), ("payout.paid", 2),
]


FAULT_KINDS = ("error_500", "answer_dropped", "stalled_then_forwarded", "forwarded_then_stalled")


def fails_first_attempt(effect_id):
    """The effects whose first delivery the faulty sink answers 503 (about one in six)."""
    return hashlib.sha256(effect_id.encode()).digest()[0] % 6 == 0


def effects_by_object(messages, event_ids):
    """`{(kind, id): [message, …]}` of the effect messages caused by `event_ids`, in order."""
    out = {}
    for m in messages:
        if m["data"]["event_id"] in event_ids:
            o = m["data"]["object"]
            out.setdefault((o["kind"], o["id"]), []).append(m)
    return out


def check_effects(flow_type, by_object, label):
    """The objects of one flow received exactly FLOWS[flow_type], `seq` 1..n each."""
    want = FLOWS[flow_type]
    got = {kind: [m["type"] for m in ms] for (kind, _), ms in by_object.items()}
    assert got == want, f"{label} ({flow_type}): effects {got}, want {want}"
    for (kind, oid), ms in by_object.items():
        seqs = [m["data"]["seq"] for m in ms]
        assert seqs == list(range(1, len(ms) + 1)), f"{label}: {kind}/{oid} seq {seqs}"
        for m in ms:
            d = m["data"]
            processor = m["type"].split(".")[0]
            assert d["id"].startswith(f"{processor}:{d['event_id']}:"), d
            assert d["event_type"] and d["object"] == {"kind": kind, "id": oid}, d


class Scenarios:
    """Event sequences from `payhook trigger`, delivered through receive and applied by the processors."""

    def __init__(self, emulator, aws, recorder):
        self.emulator = emulator
        self.aws = aws
        self.recorder = recorder

    def trigger(self, event_type):
        """The events (dicts) and exact bodies `payhook trigger <type>` sends, fresh ids each time."""
        self.recorder.bodies.clear()
        done = subprocess.run(
            [str(PAYHOOK), "trigger", event_type, "--to", f"{self.recorder.url}/webhooks/stripe", "--secret", SECRET],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, f"payhook trigger {event_type}: {done.stderr}"
        bodies = list(self.recorder.bodies)
        assert bodies, f"payhook trigger {event_type} sent nothing"
        return [(json.loads(b), b) for b in bodies]

    def routes(self):
        """`{event type: processor}` as `payhook trigger --list` prints it."""
        listing = subprocess.run([str(PAYHOOK), "trigger", "--list"], capture_output=True, text=True, check=True)
        routes, processor = {}, None
        for line in listing.stdout.splitlines():
            if not line.startswith(" "):
                processor = line.split()[0].rstrip(":")
            else:
                routes[line.strip()] = processor if processor in PROCESSORS else None
        return routes

    def deliver(self, body, tries=60):
        """Sends a signed delivery as Stripe does: again (newly signed) until answered 2xx.
        Returns the answer and how many attempts were refused."""
        refused = 0
        for _ in range(tries):
            status, answer = self.emulator.post(
                "/webhooks/stripe", body, {"stripe-signature": stripe_signature(body)}, timeout=60)
            if 200 <= status < 300:
                return answer, refused
            refused += 1
            # 409: another claim holds the event until its lease ends.
            time.sleep(1.0 if status == 409 else 0.1)
        raise AssertionError(f"a delivery was refused {tries} times; last {status} {answer}")

    def apply_in_order(self, events, processor_of):
        """Each event through receive, then its queue's one message into its processor, in order."""
        applied = []
        for event, body in events:
            answer, refused = self.deliver(body)
            assert refused == 0 and not answer.get("duplicate"), (event["type"], answer)
            queue = answer.get("queue")
            if not queue:
                continue
            processor_of[event["id"]] = queue
            url = self.aws.queue_url(queue)
            messages = drain(self.aws, url, 1, visibility=60, timeout=10)
            record = self.aws.sqs_event(url, messages)
            answer = self.emulator.call(queue, record)
            assert answer.get("batchItemFailures") == [], f"{queue} on {event['type']}: {answer}"
            self.aws.delete(url, messages)
            applied.append((queue, record))
        return applied

    def per_processor(self, processor, sink):
        flow_type = PROCESSOR_FLOWS[processor]
        step(f"{processor}: `payhook trigger {flow_type}` in Stripe's order, effects to the HTTP target")
        events = self.trigger(flow_type)
        processor_of = {}
        applied = self.apply_in_order(events, processor_of)
        assert processor in processor_of.values(), f"{flow_type} reached no {processor} record"
        # A redelivery by Stripe is a duplicate; a record SQS delivers again performs nothing again.
        last = next(body for event, body in reversed(events) if processor_of.get(event["id"]) == processor)
        answer, _ = self.deliver(last)
        assert answer.get("duplicate") is True, answer
        before = len(sink.received)
        for queue, record in applied:
            if queue == processor:
                assert self.emulator.call(queue, record).get("batchItemFailures") == []
        assert len(sink.received) == before, "a replayed record delivered an effect again"
        assert self.aws.receive(self.aws.queue_url(processor), wait=0) == [], "a duplicate was enqueued"
        ids = {e["id"] for e, _ in events}
        by_object = effects_by_object(sink.delivered(), ids)
        check_effects(flow_type, by_object, processor)
        attempts = [msg_id for msg_id, m, _ in sink.received if m["data"]["event_id"] in ids]
        assert len(attempts) == len(set(attempts)), f"an effect was sent twice without a failure: {attempts}"
        assert sink.rejected == [], f"effects with a bad signature: {sink.rejected}"
        for (kind, oid), ms in sorted(by_object.items()):
            print(f"    {kind}/{oid}: " + ", ".join(f"{m['data']['seq']} {m['type']}" for m in ms))

    def eventbridge(self, events_queue):
        flow_type = PROCESSOR_FLOWS["fulfill"]
        step(f"eventbridge: `payhook trigger {flow_type}`; effects through PutEvents, a rule and an SQS target")
        events = self.trigger(flow_type)
        self.apply_in_order(events, {})
        ids = {e["id"] for e, _ in events}
        want = sum(len(v) for v in FLOWS[flow_type].values())
        received, deadline = [], time.time() + 15
        while len(received) < want and time.time() < deadline:
            received += self.aws.receive(events_queue, wait=1)
        assert len(received) == want and not self.aws.receive(events_queue, wait=1), \
            f"{len(received)} EventBridge events, want {want}"
        entries = [json.loads(m["Body"]) for m in received]
        for e in entries:
            assert e["source"] == "payhook" and e["detail-type"].startswith("fulfill."), e
        # EventBridge keeps no order: a consumer orders by detail.seq.
        messages = sorted(({"type": e["detail-type"], "data": e["detail"]} for e in entries),
                          key=lambda m: m["data"]["seq"])
        by_object = effects_by_object(messages, ids)
        check_effects(flow_type, by_object, "eventbridge")
        for (kind, oid), ms in by_object.items():
            print(f"    {kind}/{oid}: " + ", ".join(f"{m['data']['seq']} {m['type']} ({m['data']['id']})" for m in ms))

    def under_faults(self, proxy, sink):
        step("faults: building the batch with `payhook trigger` "
             + ", ".join(f"{n} x {t}" for t, n in FAULT_MIX))
        flows = [(t, self.trigger(t)) for t, n in FAULT_MIX for _ in range(n)]
        total = sum(len(events) for _, events in flows)
        step(f"faults: {total} events through receive and the processors, every AWS call through the proxy")
        routes = self.routes()
        began = time.time()
        refused = redelivered = 0
        processor_of, processed = {}, {p: [] for p in PROCESSORS}
        waves = max(len(events) for _, events in flows)
        for wave in range(waves):
            # Each wave sends the next event of every sequence (so each object sees Stripe's
            # order), every seventh twice, then drains every queue.
            batch = [events[wave] for _, events in flows if wave < len(events)]
            for n, (event, body) in enumerate(batch):
                _, r = self.deliver(body)
                refused += r
                if routes.get(event["type"]):
                    processor_of[event["id"]] = routes[event["type"]]
                if n % 7 == 3:
                    self.deliver(body)
                    redelivered += 1
            self.pump(processed)
        applied_after = time.time() - began
        queues_drained = {p: len(v) for p, v in processed.items()}
        pending_before_sweep = self.pending_objects()
        sweeps = {p: self.sweep(p) for p in PROCESSORS}
        took = time.time() - began
        print(f"    receive: {refused} deliveries refused (re-sent), {redelivered} duplicate deliveries; "
              f"records applied per processor {queues_drained}; {applied_after:.0f} s")
        print(f"    objects with effects pending once every queue was empty: {len(pending_before_sweep)} "
              f"{sorted(pending_before_sweep)}; sweeps: {sweeps}")
        injected = {k: proxy.counts[k] for k in ("calls", *FAULT_KINDS)}
        print(f"    fault proxy (seed {FAULT_SEED}): {injected}")
        for (kind, target), n in sorted(proxy.by_target.items()):
            if kind != "forwarded":
                print(f"        {kind:<15} {n:>3}  {target}")
        proxy.enabled = False

        step("faults: every event in the ledger and applied, every effect delivered once in seq order, none pending")
        ledger = self.ledger_items()
        state = self.aws.state_items()
        for _, events in flows:
            for event, _ in events:
                item = ledger.get(f"stripe#{event['id']}")
                assert item, (event["id"], "not in the ledger")
                status = item["status"]["S"]
                # A mark whose call failed after the send leaves the record RECEIVED (the
                # delivery was answered 200, the event is on its queue: see intake/split.rs);
                # such an event must then have been applied.
                applied = f"marker#{processor_of.get(event['id'])}#{event['id']}" in state
                assert status in ("ENQUEUED", "IGNORED") or (status == "RECEIVED" and applied), (
                    event["id"], item)
        missing = [e for e, p in processor_of.items() if f"marker#{p}#{e}" not in state]
        assert not missing, f"events never applied: {missing}"
        for processor in PROCESSORS:
            for dead in (False, True):
                left = self.aws.receive(self.aws.queue_url(processor, dead=dead), wait=0, visibility=0)
                assert not left, f"{processor} {'dead-letter ' if dead else ''}queue holds " + str(
                    [(attribute(m, "event_type"), attribute(m, "event_id"), m["Body"][:80]) for m in left])
        delivered = sink.delivered()
        for flow_type, events in flows:
            check_effects(flow_type, effects_by_object(delivered, {e["id"] for e, _ in events}), "faults")
        # Every record succeeded and none was dead-lettered, so none left its effects behind:
        # the sweep is a safety net here, not what delivered them.
        assert not pending_before_sweep, f"effects left pending once every queue was empty: {pending_before_sweep}"
        still = self.pending_objects()
        assert not still, f"objects with effects still pending after the sweeps: {still}"
        assert sink.rejected == [], f"effects with a bad signature: {sink.rejected}"
        ok = [m for m, _, status in sink.received if 200 <= status < 300]
        failed = sum(1 for _, _, status in sink.received if status >= 300)
        print(f"    {len(delivered)} effects delivered ({len(ok) - len(set(ok))} repeated deliveries "
              f"de-duplicated by webhook-id, {failed} first attempts answered 503); {took:.0f} s under faults")
        for kind in FAULT_KINDS:
            assert proxy.counts[kind] > 0, f"the proxy never injected {kind}: {injected}"

    def pump(self, processed, rounds=40):
        """Re-drives every queue into its processor until all are empty, as Lambda's SQS event
        source would: successes deleted, failures visible again (here at once), a few records
        that already succeeded delivered again."""
        for _ in range(rounds):
            work = {}
            for processor in PROCESSORS:
                url = self.aws.queue_url(processor)
                messages = self.aws.receive(url, wait=0, visibility=120)
                if messages:
                    work[processor] = (url, messages)
            if not work:
                if all(not self.aws.receive(self.aws.queue_url(p), wait=0, visibility=0) for p in PROCESSORS):
                    return
                continue

            def one(processor):
                url, messages = work[processor]
                event = self.aws.sqs_event(url, messages)
                answer = self.emulator.call(processor, event)
                if "batchItemFailures" in answer:
                    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
                else:
                    failed = {m["MessageId"] for m in messages}  # the invocation itself failed
                done = [m for m in messages if m["MessageId"] not in failed]
                self.aws.delete(url, done)
                for m in messages:
                    if m["MessageId"] in failed:
                        self.aws.sqs.change_message_visibility(
                            QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
                replay = [r for r in event["Records"] if r["messageId"] not in failed][:1]
                if replay and len(processed[processor]) % 5 == 0:
                    self.emulator.call(processor, {"Records": replay})  # SQS at-least-once
                processed[processor] += [m["MessageId"] for m in done]

            with concurrent.futures.ThreadPoolExecutor(len(work)) as pool:
                list(pool.map(one, work))
        raise AssertionError(f"queues still not empty after {rounds} rounds")

    def sweep(self, processor, tries=5):
        """Invokes the processor's sweep until it finds nothing left; returns its answers' objects."""
        found = []
        for _ in range(tries):
            answer = self.emulator.call(processor, {"sweep": {"limit": 100}})
            if "objects" not in answer:
                found.append(answer.get("errorType", "error"))
                continue
            found.append(answer["objects"])
            if answer["objects"] == 0:
                break
        return found

    def pending_objects(self):
        return {pk for pk, item in self.aws.state_items().items() if item.get("pending", {}).get("M")}

    def ledger_items(self):
        table = self.aws.exports["LEDGER_TABLE"]
        items, start = [], {}
        while True:
            page = self.aws.dynamodb.scan(TableName=table, **start)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return {i["pk"]["S"]: i for i in items}
            start = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def eventbridge_bus(aws, bus):
    """A bus on moto with a rule for payhook's effects whose target is a new SQS queue; the queue's URL."""
    events = boto3.client("events")
    events.create_event_bus(Name=bus)
    url = aws.sqs.create_queue(QueueName=f"{bus}-rule-target")["QueueUrl"]
    events.put_rule(Name="payhook-effects", EventBusName=bus, EventPattern=json.dumps({"source": ["payhook"]}))
    events.put_targets(Rule="payhook-effects", EventBusName=bus, Targets=[{"Id": "queue", "Arn": aws.queue_arn(url)}])
    return url


def check_resources_match_template(aws, resources):
    sys.path.insert(0, str(ROOT / "tests" / "template"))
    import cfn

    template = cfn.load_file()
    env_of = {logical: spec["env"] for logical, spec in resources["tables"].items()}
    for logical, spec in resources["queues"].items():
        env_of[logical] = spec["env"]
        env_of[spec["dead_letter"]["logical_id"]] = spec["dead_letter"]["env"]
    # The EventBridge ingress queues (Condition HasStripeEventSource) are not local.
    queues = {k: v for k, v in cfn.resources(template, "AWS::SQS::Queue").items() if "Condition" not in v}
    assert set(queues) == {k for k in env_of if k in queues} and len(queues) == 8, sorted(queues)
    for logical, queue in queues.items():
        props = queue["Properties"]
        url = aws.exports[env_of[logical]]
        got = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(got["VisibilityTimeout"]) == props.get("VisibilityTimeout", 30), (logical, got)
        assert int(got["MessageRetentionPeriod"]) == props.get("MessageRetentionPeriod", 345600), (logical, got)
        if "RedrivePolicy" in props:
            redrive = json.loads(got["RedrivePolicy"])
            dead = cfn.ref_target(props["RedrivePolicy"]["deadLetterTargetArn"])
            assert redrive["deadLetterTargetArn"] == aws.queue_arn(aws.exports[env_of[dead]]), (logical, redrive)
            assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"], (logical, redrive)
        else:
            assert "RedrivePolicy" not in got, (logical, got)
    tables = cfn.resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == set(resources["tables"]), sorted(tables)
    for logical, table in tables.items():
        props, name = table["Properties"], aws.exports[env_of[logical]]
        got = aws.dynamodb.describe_table(TableName=name)["Table"]
        assert got["KeySchema"] == props["KeySchema"], (logical, got["KeySchema"])
        assert got["AttributeDefinitions"] == props["AttributeDefinitions"], (logical, got["AttributeDefinitions"])
        assert got.get("BillingModeSummary", {}).get("BillingMode") == props["BillingMode"], (logical, got)
        ttl = aws.dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl.get("AttributeName") == props["TimeToLiveSpecification"]["AttributeName"], (logical, ttl)
        assert ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"), (logical, ttl)
    print(f"    {len(tables)} tables, {len(queues)} queues match")


def drain(aws, url, count, visibility=30, timeout=20):
    """Exactly `count` messages from `url` (fails on more or fewer)."""
    messages, deadline = [], time.time() + timeout
    while len(messages) < count and time.time() < deadline:
        messages += aws.receive(url, wait=1, visibility=visibility)
    extra = aws.receive(url, wait=1, visibility=visibility) if visibility else []
    assert len(messages) == count and not extra, f"{url}: expected {count} messages, got {len(messages) + len(extra)}"
    return messages


if __name__ == "__main__":
    main()
