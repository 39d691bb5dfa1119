#!/usr/bin/env python3
"""Writes N distinct, signed Stripe events for the load benchmark, as the
complete HTTP requests wrk sends.

Each is a `POST /webhooks/stripe` of a `payment_intent.succeeded` event built
from Stripe's published payment_intent fixture, padded with metadata to about
SIZE bytes, with a fresh event and payment intent id each, and its
`Stripe-Signature` made with SECRET at the current time (so run the load
within the 300 s tolerance). Requests are dealt in turn into THREADS files,
`OUT.0`, `OUT.1`, ..., one per wrk thread, each request ended by a NUL byte:
built here, wrk spends no time formatting them (see `wrk.lua`).

Usage: gen_payloads.py OUT N SECRET [SIZE] [THREADS]
"""
import hashlib
import hmac
import json
import pathlib
import sys
import time

root = pathlib.Path(__file__).resolve().parents[2]
fixtures = json.loads((root / "shared/fixtures/stripe/fixtures3.json").read_text())["resources"]


def main() -> None:
    out, n, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 3072
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    now = int(time.time())
    pi = dict(fixtures["payment_intent"])
    pi.update(status="succeeded", amount=2000, amount_received=2000, currency="usd", livemode=False)
    pi["metadata"] = {"order_id": "", "pad": ""}
    template = {
        "id": "",
        "object": "event",
        "api_version": "2024-06-20",
        "created": now,
        "data": {"object": pi},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.succeeded",
    }
    base = len(json.dumps(template, separators=(",", ":"))) + 60
    pi["metadata"]["pad"] = "x" * max(0, size - base)
    prefix = f"{now}.".encode()
    files = [open(f"{out}.{t}", "wb") for t in range(threads)]
    for i in range(n):
        template["id"] = f"evt_load{now}{i:08d}"
        pi["id"] = f"pi_load{now}{i:08d}"
        pi["metadata"]["order_id"] = f"order_{i}"
        body = json.dumps(template, separators=(",", ":")).encode()
        sig = hmac.new(secret, prefix + body, hashlib.sha256).hexdigest()
        head = (
            "POST /webhooks/stripe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"Stripe-Signature: t={now},v1={sig}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        files[i % threads].write(head.encode() + body + b"\0")
    for f in files:
        f.close()
    print(f"{n} events of {len(body)} bytes in {out}.0..{threads - 1}", file=sys.stderr)


if __name__ == "__main__":
    main()
