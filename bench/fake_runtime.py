"""A fake Lambda Runtime API: runs a real function process (a Rust
`bootstrap`, or `node` with a runtime loop) locally and times it as Lambda
would, with no emulator in between.

The process is started with AWS_LAMBDA_RUNTIME_API pointing at a small HTTP
server in this process, which:

- timestamps the first `GET /2018-06-01/runtime/invocation/next`: init time
  is process start to that request (configuration, SDK clients, module
  loading: what Lambda reports as Init Duration);
- hands out each event given to `invoke()` as the answer to a `next`, and
  times it to the function's `POST .../response` (or `/error`): what Lambda
  bills as Duration;
- knows when the function is idle again (its next `next` is waiting), so
  that a caller can read its peak RSS between invocations.

Used by bench/coldstart/coldstart.py (one invocation per process) and
bench/scaling/scaling.py (hundreds per process).
"""

import json
import queue
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NEXT = "/2018-06-01/runtime/invocation/next"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


class Invocation:
    """One event handed to the function, and what came back."""

    def __init__(self, event, deadline_ms):
        self.event = event
        self.deadline_ms = deadline_ms
        self.request_id = str(uuid.uuid4())
        self.sent_at = None
        self.answered_at = None
        self.response = None
        self.error = None
        self.done = threading.Event()

    @property
    def ms(self):
        """Event handed out to answer received, in milliseconds."""
        if self.sent_at is None or self.answered_at is None:
            return None
        return (self.answered_at - self.sent_at) * 1000

    def json(self):
        return json.loads(self.response or b"null")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out as separate writes: without this, Nagle's
        # algorithm holds the body back for the client's delayed ACK (~40 ms
        # on a kept-alive connection), which Lambda's own endpoint never does.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_GET(self):
        runtime = self.server.runtime
        if self.path != NEXT:
            return self.reply(404, b"{}")
        if runtime.first_next is None:
            runtime.first_next = time.perf_counter()
        runtime.idle.set()
        while True:
            try:
                invocation = runtime.pending.get(timeout=0.2)
                break
            except queue.Empty:
                if runtime.stopping:
                    return  # the process is being stopped: leave the poll hanging
        runtime.idle.clear()
        runtime.inflight[invocation.request_id] = invocation
        body = json.dumps(invocation.event).encode()
        invocation.sent_at = time.perf_counter()
        self.reply(200, body, {
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN.format(runtime.function),
            "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
        })

    def do_POST(self):
        runtime = self.server.runtime
        body = self.read_body()
        now = time.perf_counter()
        self.reply(202, b'{"status":"OK"}')
        parts = self.path.strip("/").split("/")
        if self.path.endswith("/init/error"):
            runtime.init_error = body
            runtime.idle.set()
            return
        # /2018-06-01/runtime/invocation/{id}/response|error
        invocation = runtime.inflight.pop(parts[-2], None) if len(parts) >= 2 else None
        if invocation is None:
            return
        invocation.answered_at = now
        if parts[-1] == "response":
            invocation.response = body
        else:
            invocation.error = body
        invocation.done.set()

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a function process stopped mid-request: expected at the end


class FakeRuntime:
    """One function process behind its own Runtime API.

        with FakeRuntime("receive", [binary], env, memory_mb=256) as rt:
            init_ms = rt.wait_ready()
            inv = rt.invoke(event)      # inv.ms, inv.json()

    The process's stdout and stderr (what Lambda sends to CloudWatch Logs)
    are kept in files: `stdout_path`, `stderr_path`.
    """

    def __init__(self, function, argv, env, memory_mb=128, log_dir=None, cwd=None):
        self.function = function
        self.argv = [str(a) for a in argv]
        self.memory_mb = memory_mb
        self.pending = queue.Queue()
        self.inflight = {}
        self.idle = threading.Event()
        self.first_next = None
        self.init_error = None
        self.stopping = False
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.runtime = self
        log_dir = Path(log_dir) if log_dir else None
        self.stdout_path = log_dir / f"{function}.stdout" if log_dir else None
        self.stderr_path = log_dir / f"{function}.stderr" if log_dir else None
        self.env = {
            **env,
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.server.server_address[1]}",
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "fake-runtime",
        }
        self.cwd = cwd
        self.process = None
        self.started = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        out = open(self.stdout_path, "wb") if self.stdout_path else subprocess.DEVNULL
        err = open(self.stderr_path, "wb") if self.stderr_path else subprocess.PIPE
        self.started = time.perf_counter()
        self.process = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=err, cwd=self.cwd)
        for f in (out, err):
            if hasattr(f, "close"):
                f.close()  # the child holds its own descriptor

    def wait_ready(self, timeout=30):
        """Waits for the first `next`; answers the init time in milliseconds."""
        deadline = time.monotonic() + timeout
        while self.first_next is None:
            if self.init_error is not None:
                raise RuntimeError(f"{self.function}: init error {self.init_error!r}")
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.function} exited during init ({self.process.returncode}):\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.function}: no `next` within {timeout} s")
            time.sleep(0.001)
        return (self.first_next - self.started) * 1000

    def invoke(self, event, timeout=30):
        """Hands `event` to the function and waits for its answer."""
        invocation = Invocation(event, int(time.time() * 1000) + timeout * 1000)
        self.pending.put(invocation)
        if not invocation.done.wait(timeout=timeout):
            raise RuntimeError(f"{self.function}: no answer within {timeout} s:\n{self.stderr_tail()}")
        return invocation

    def wait_idle(self, timeout=30):
        """Waits until the function asks for its next event (or reported an init error)."""
        return self.idle.wait(timeout=timeout)

    def peak_rss_kib(self):
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return None

    def stderr_tail(self, n=2000):
        if self.stderr_path and self.stderr_path.exists():
            return self.stderr_path.read_bytes()[-n:].decode(errors="replace")
        return ""

    def stop(self):
        self.stopping = True
        stderr = b""
        if self.process is not None:
            self.process.kill()
            _, stderr = self.process.communicate()
        self.server.shutdown()
        self.server.server_close()
        return (stderr or b"").decode(errors="replace")
