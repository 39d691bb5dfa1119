"""Loopback servers the Lambda e2e starts (Python stdlib only), each stopped
with `stop()`:

- `EffectSink`: the merchant's endpoint for `EFFECTS_TARGET=http://…`. It
  verifies every Standard Webhooks signature (`webhook-id`,
  `webhook-timestamp`, `webhook-signature` over `{id}.{timestamp}.{body}`
  with the `whsec_` secret), records what it received, and can answer the
  first attempt of some effects 503 (the target failing; payhook retries).
- `Recorder`: takes the deliveries `payhook trigger` sends, so the test gets
  realistic Stripe event bodies (fresh ids on every run) to send itself.
- `FaultProxy`: sits between the function binaries (`AWS_ENDPOINT_URL`) and
  moto. Seeded and deterministic in the sequence of faults it draws: a share
  of calls answered 500 without forwarding, a share forwarded to moto and
  then the answer dropped (the connection closed: the call happened, the
  caller cannot know), and a few stalled until the caller gives up (its
  attempt timeout), alternately before forwarding (the call happens late,
  after the SDK's retry) and after it (the call happened, its answer comes
  too late: the SDK retries a call that was applied, e.g. a commit, which
  then fails its condition as a duplicate).
"""

import base64
import hashlib
import hmac
import http.client
import json
import random
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1:<free port>, served from a thread."""

    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def answer(self, status, body=b"", content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def standard_signature(secret, msg_id, timestamp, body):
    """`v1,<base64 HMAC-SHA256>` of `{id}.{timestamp}.{body}` under a `whsec_` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class EffectSink(_Server):
    """The merchant's endpoint: verifies, records, optionally fails first attempts.

    `received` holds every verified delivery as `(webhook-id, message, status
    answered)`; `delivered()` the messages answered 2xx, de-duplicated by
    `webhook-id` (what a consumer keeps). `fail_first(id) -> bool` picks
    the effects whose first attempt is answered 503.
    """

    def __init__(self, secret, fail_first=None):
        self.secret = secret
        self.fail_first = fail_first or (lambda _id: False)
        self.lock = threading.Lock()
        self.received = []
        self.rejected = []  # bad signatures: must stay empty
        self.attempts = Counter()
        super().__init__(_SinkHandler)

    def delivered(self):
        """Every message answered 2xx, first copy per `webhook-id`, in arrival order."""
        seen, out = set(), []
        with self.lock:
            for msg_id, message, status in self.received:
                if 200 <= status < 300 and msg_id not in seen:
                    seen.add(msg_id)
                    out.append(message)
        return out

    def by_object(self, object_ids=None):
        """`{object id: [message, …]}` of `delivered()`, in arrival order."""
        out = {}
        for message in self.delivered():
            oid = message["data"]["object"]["id"]
            if object_ids is None or oid in object_ids:
                out.setdefault(oid, []).append(message)
        return out


class _SinkHandler(_Handler):
    def do_POST(self):
        sink = self.server.owner
        body = self.body()
        msg_id = self.headers.get("webhook-id", "")
        timestamp = self.headers.get("webhook-timestamp", "")
        want = standard_signature(sink.secret, msg_id, timestamp, body)
        given = self.headers.get("webhook-signature", "").split()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        if not fresh or not any(hmac.compare_digest(want, g) for g in given):
            with sink.lock:
                sink.rejected.append((msg_id, timestamp, given))
            return self.answer(400, b'{"error":"bad signature"}')
        message = json.loads(body)
        with sink.lock:
            sink.attempts[msg_id] += 1
            first = sink.attempts[msg_id] == 1
        status = 503 if first and sink.fail_first(msg_id) else 204
        with sink.lock:
            sink.received.append((msg_id, message, status))
        self.answer(status)


class Recorder(_Server):
    """Answers every POST 200 and keeps the bodies (what `payhook trigger` sends)."""

    def __init__(self):
        self.bodies = []
        super().__init__(_RecorderHandler)


class _RecorderHandler(_Handler):
    def do_POST(self):
        self.server.owner.bodies.append(self.body().decode())
        self.answer(200, b"{}")


class FaultProxy(_Server):
    """Forwards to `upstream` (moto), injecting faults; see the module docstring.

    Each call draws the next number of a `random.Random(seed)`: below
    `p_error` it is answered 500, below `p_error + p_drop` its answer is
    dropped, below `… + p_stall` it stalls (at most `max_stalls` times, each
    until the caller hangs up or `stall_cap` seconds). `counts` says what
    happened, by kind. `enabled` turns the faults off (plain forwarding).
    """

    def __init__(self, upstream, seed, p_error=0.06, p_drop=0.05, p_stall=0.01, max_stalls=4, stall_cap=7.0,
                 scripted=None):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rng = random.Random(seed)
        self.p = (p_error, p_error + p_drop, p_error + p_drop + p_stall)
        self.max_stalls = max_stalls
        self.stall_cap = stall_cap
        self.scripted = dict(scripted or {})  # (x-amz-target, nth call of it) -> fault kind
        self.enabled = True
        self.lock = threading.Lock()
        self.counts = Counter()
        self.seen = Counter()
        self.by_target = Counter()  # (kind, x-amz-target or path) for the report
        super().__init__(_ProxyHandler)

    def draw(self, target):
        with self.lock:
            self.counts["calls"] += 1
            self.seen[target] += 1
            r = self.rng.random()
            if not self.enabled:
                return "forwarded"
            scripted = self.scripted.pop((target, self.seen[target]), None)
            if scripted:
                return scripted
            if r < self.p[0]:
                return "error_500"
            if r < self.p[1]:
                return "answer_dropped"
            if r < self.p[2] and self.stalls < self.max_stalls:
                self.stalls += 1
                return "stalled_then_forwarded" if self.stalls % 2 else "forwarded_then_stalled"
            return "forwarded"

    stalls = 0

    def forward(self, method, path, headers, body):
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"}


class _ProxyHandler(_Handler):
    def do_any(self):
        proxy = self.server.owner
        body = self.body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        target = self.headers.get("x-amz-target") or self.path.split("?")[0]
        kind = proxy.draw(target)
        with proxy.lock:
            proxy.counts[kind] += 1
            proxy.by_target[(kind, target)] += 1
        if kind == "error_500":
            payload = json.dumps({"__type": "InternalServerError", "message": "injected by the fault proxy"})
            return self.answer(500, payload.encode(), "application/x-amz-json-1.0")
        if kind == "stalled_then_forwarded":
            self.wait_for_hangup(proxy.stall_cap)
            proxy.forward(self.command, self.path, headers, body)  # the late call
            self.close_connection = True
            return
        if kind == "forwarded_then_stalled":
            proxy.forward(self.command, self.path, headers, body)  # applied; the answer never arrives in time
            self.wait_for_hangup(proxy.stall_cap)
            self.close_connection = True
            return
        status, upstream_headers, payload = proxy.forward(self.command, self.path, headers, body)
        if kind == "answer_dropped":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(status)
        for name, value in upstream_headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def wait_for_hangup(self, cap):
        """Returns once the caller closed the connection (its timeout), or after `cap` seconds."""
        deadline = time.time() + cap
        while time.time() < deadline:
            ready, _, _ = select.select([self.connection], [], [], 0.05)
            if ready:
                try:
                    if self.connection.recv(1, socket.MSG_PEEK) == b"":
                        return
                except OSError:
                    return
                time.sleep(0.05)

    do_POST = do_any
    do_GET = do_any
    do_PUT = do_any
    do_DELETE = do_any
