"""A counting proxy in front of moto: every AWS call the functions (and the
harness standing in for Lambda's SQS poller) make, by caller and operation,
with what DynamoDB would charge for it.

DynamoDB capacity is computed, not asked of moto (which does not meter it):
for each write the proxy reads the item before and after (straight from moto,
uncounted) and applies DynamoDB's documented rules:

- item size: attribute name bytes + value bytes (strings UTF-8; numbers
  1 byte per 2 significant digits + 1; booleans and nulls 1; lists and maps
  3 + their elements + 1 per element);
- a standard write: ceil(max(size before, size after) / 1 KB) write units; a
  transactional write: twice that, per item in the transaction; a failed
  conditional write still costs the units;
- a strongly consistent read: ceil(size / 4 KB) read units (at least 1,
  also for a missing item); eventually consistent: half that;
- each write to a table with a global secondary index also writes the index
  when it puts, changes or removes the item's index entry: ceil(projected size
  / 1 KB) per entry written or deleted (a key change is a delete and a put).

SQS requests are counted in 64 KB chunks of the payload, as SQS bills them.
"""

import base64
import http.client
import json
import math
import sys
import threading
from collections import Counter, defaultdict
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem"}
SQS_CHUNK = 64 * 1024


def number_size(text):
    digits = text.lstrip("-").replace(".", "")
    if "e" in digits.lower():
        digits = str(Decimal(text)).lstrip("-").replace(".", "")
    digits = digits.strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def value_size(value):
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return number_size(v)
    if kind == "B":
        return len(base64.b64decode(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum(number_size(x) for x in v)
    if kind == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in v.items())
    raise ValueError(f"unknown DynamoDB type {kind}")


def item_size(item):
    """DynamoDB's size of an item (DynamoDB JSON), in bytes; 0 for no item."""
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size_bytes):
    return max(1, math.ceil(size_bytes / 1024))


def read_units(size_bytes, consistent):
    units = max(1, math.ceil(size_bytes / 4096))
    return units if consistent else units / 2


class Index:
    """A global secondary index: its key attributes and projected attributes."""

    def __init__(self, table_key, keys, projected):
        self.table_key = table_key
        self.keys = keys
        self.projected = projected

    def entry(self, item):
        if not item or any(k not in item for k in self.keys):
            return None
        names = {self.table_key, *self.keys, *self.projected}
        return {k: v for k, v in item.items() if k in names}

    def writes(self, before, after):
        """Index write units for a table write from `before` to `after`."""
        old, new = self.entry(before), self.entry(after)
        if old is None and new is None:
            return 0
        if old is None:
            return write_units(item_size(new))
        if new is None:
            return write_units(item_size(old))
        if any(old[k] != new[k] for k in self.keys):
            return write_units(item_size(old)) + write_units(item_size(new))
        return write_units(item_size(new)) if old != new else 0


class Meter:
    """What was called, by whom, and what it costs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.calls = Counter()           # (caller, "Service.Operation") -> n
            self.units = defaultdict(float)  # (caller, kind) -> units; kinds below
            self.sizes = defaultdict(list)   # what -> [bytes]

    def add(self, caller, operation, units=None, sizes=None):
        with self.lock:
            self.calls[(caller, operation)] += 1
            for kind, n in (units or {}).items():
                self.units[(caller, kind)] += n
            for what, size in (sizes or {}).items():
                self.sizes[what].append(size)

    def snapshot(self):
        with self.lock:
            return Counter(self.calls), dict(self.units), {k: list(v) for k, v in self.sizes.items()}


def sdk_of(headers):
    """The function (the Rust SDK) or the harness (boto3, standing in for Lambda's poller)."""
    agent = headers.get("User-Agent", "") + " " + headers.get("x-amz-user-agent", "")
    return "rust" if "aws-sdk-rust" in agent else "harness"


class Proxy:
    """`Proxy(moto_url, indexes).start()`; point AWS_ENDPOINT_URL at `url`."""

    def __init__(self, upstream, indexes=None):
        self.upstream = urlparse(upstream)
        self.indexes = indexes or {}  # table -> [Index]
        self.meter = Meter()
        self.phase = "-"  # callers are counted as "<phase>:<rust|harness>"
        self.lock = threading.Lock()  # DynamoDB writes one at a time, with their reads
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                proxy.handle(self)

            def do_GET(self):
                proxy.handle(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A client that gave up on a call (an SDK attempt timeout) is
                # counted as the SDK sees it: its retry is another call.
                print(f"aws_proxy: a client closed its connection mid-call ({sys.exc_info()[1]!r})", file=sys.stderr)

        self.server = Server(("127.0.0.1", 0), Handler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    # -- forwarding -----------------------------------------------------------

    def forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def dynamodb(self, operation, payload):
        """An uncounted call straight to moto (for the before/after reads)."""
        body = json.dumps(payload).encode()
        status, _, data = self.forward("POST", "/", {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, "
                             "SignedHeaders=host, Signature=0",
        }, body)
        return json.loads(data or b"{}") if status == 200 else {}

    def current(self, table, key):
        return self.dynamodb("GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}).get("Item")

    def handle(self, request):
        length = int(request.headers.get("Content-Length", 0))
        body = request.rfile.read(length) if length else b""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "connection")}
        headers["Host"] = f"{self.upstream.hostname}:{self.upstream.port}"
        target = request.headers.get("X-Amz-Target", "")
        caller = f"{self.phase}:{sdk_of(request.headers)}"
        if target.startswith("DynamoDB_"):
            operation = target.split(".", 1)[1]
            status, out_headers, data = self.dynamodb_call(caller, operation, request, headers, body)
        else:
            status, out_headers, data = self.forward(request.command, request.path, headers, body)
            self.count_other(caller, target, body, data)
        request.send_response(status)
        for k, v in out_headers:
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                request.send_header(k, v)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def count_other(self, caller, target, body, data):
        if target.startswith("AmazonSQS."):
            operation = target.split(".", 1)[1]
            payload = json.loads(body or b"{}")
            sizes = {}
            if operation == "SendMessage":
                size = len(payload.get("MessageBody", "").encode()) + sum(
                    len(name.encode()) + len(v.get("DataType", "").encode()) + len(v.get("StringValue", "").encode())
                    for name, v in payload.get("MessageAttributes", {}).items())
                sizes["sqs_message"] = size
                chunks = math.ceil(size / SQS_CHUNK)
            elif operation == "ReceiveMessage":
                messages = json.loads(data or b"{}").get("Messages", [])
                chunks = max(1, math.ceil(sum(len(m.get("Body", "").encode()) for m in messages) / SQS_CHUNK))
            else:
                chunks = 1
            self.meter.add(caller, f"SQS.{operation}", {"sqs_requests": chunks}, sizes)
        elif target.startswith("secretsmanager."):
            self.meter.add(caller, f"SecretsManager.{target.split('.', 1)[1]}")
        elif target:
            self.meter.add(caller, target)
        else:
            self.meter.add(caller, "other")

    def dynamodb_call(self, caller, operation, request, headers, body):
        payload = json.loads(body or b"{}")
        if operation in DYNAMODB_WRITES or operation == "TransactWriteItems":
            with self.lock:
                writes = self.writes_of(operation, payload)
                before = [self.current(table, key) for table, key, _ in writes]
                status, out_headers, data = self.forward(request.command, request.path, headers, body)
                after = [self.current(table, key) for table, key, _ in writes]
            units, sizes = defaultdict(float), {}
            for (table, _, factor), b, a in zip(writes, before, after):
                size = max(item_size(b), item_size(a))
                units[f"wcu:{table}"] += factor * write_units(size)
                sizes[f"item:{table}:{operation}"] = size
                for index in self.indexes.get(table, []):
                    units[f"wcu:{table}:index"] += index.writes(b, a)
            self.meter.add(caller, f"DynamoDB.{operation}", units, sizes)
            return status, out_headers, data
        status, out_headers, data = self.forward(request.command, request.path, headers, body)
        units, sizes = {}, {}
        if operation == "GetItem":
            item = json.loads(data or b"{}").get("Item")
            consistent = bool(payload.get("ConsistentRead"))
            units[f"rcu:{payload['TableName']}"] = read_units(item_size(item), consistent)
            sizes[f"read:{payload['TableName']}"] = item_size(item)
        elif operation == "Query":
            result = json.loads(data or b"{}")
            total = sum(item_size(i) for i in result.get("Items", []))
            units[f"rcu:{payload['TableName']}:query"] = read_units(total, bool(payload.get("ConsistentRead")))
        self.meter.add(caller, f"DynamoDB.{operation}", units, sizes)
        return status, out_headers, data

    @staticmethod
    def writes_of(operation, payload):
        """[(table, key, factor)] a write request touches."""
        if operation == "TransactWriteItems":
            out = []
            for action in payload.get("TransactItems", []):
                (kind, spec), = action.items()
                if kind == "ConditionCheck":
                    continue  # a condition check is charged as a read; none here
                key = spec.get("Key") or None
                out.append((spec["TableName"], key if key else {"pk": spec["Item"]["pk"]}, 2))
            return out
        key = payload.get("Key") or {"pk": payload["Item"]["pk"]}
        return [(payload["TableName"], key, 1)]
