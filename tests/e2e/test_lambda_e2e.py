"""The five real Lambda binaries, end to end, under cargo-lambda's runtime
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
   dead-letter queue after maxReceiveCount receives.

Every server it starts is stopped on the way out.
"""

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

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "target" / "e2e-lambda"
CARGO_LAMBDA = ROOT / ".venv" / "bin" / "cargo-lambda"
SECRET = "whsec_e2e_" + os.urandom(12).hex()
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

    def __init__(self, env):
        self.port = free_port()
        self.log_path = WORK / "watch.log"
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
        raise RuntimeError(f"cargo lambda watch did not listen on {self.port}:\n{self.tail()}")

    def tail(self, lines=60):
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
            return err.code, json.loads(err.read() or b"null")

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
    }
    step(f"starting cargo lambda watch (tables and queues prefixed {prefix})")
    emulator = Emulator(env)
    try:
        run(emulator, aws)
    except BaseException:
        print(f"cargo lambda watch log (tail):\n{emulator.tail()}", file=sys.stderr)
        raise
    finally:
        emulator.stop()
    print("e2e: all checks passed", flush=True)


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

    step("receive: an unknown type is acknowledged and enqueued nowhere; a bad signature is refused")
    _, ignored = sample("receive-ignored-type.json")
    body = json.dumps(ignored)
    status, answer = emulator.post("/webhooks/stripe", body, {"stripe-signature": stripe_signature(body)})
    assert status == 200, (status, answer)
    status, answer = emulator.post(
        "/webhooks/stripe", body, {"stripe-signature": stripe_signature(body, secret="whsec_wrong")}
    )
    assert status == 400 and "whsec_wrong" not in json.dumps(answer), (status, answer)

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
    print(f"    dead-lettered after {receives} receives (maxReceiveCount {max_receive})")


def check_resources_match_template(aws, resources):
    sys.path.insert(0, str(ROOT / "tests" / "template"))
    import cfn

    template = cfn.load_file()
    env_of = {logical: spec["env"] for logical, spec in resources["tables"].items()}
    for logical, spec in resources["queues"].items():
        env_of[logical] = spec["env"]
        env_of[spec["dead_letter"]["logical_id"]] = spec["dead_letter"]["env"]
    queues = cfn.resources(template, "AWS::SQS::Queue")
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
