#!/usr/bin/env python3
"""moto server, with each DynamoDB request applied atomically.

moto's stock server handles requests on parallel threads, and its DynamoDB
backend applies a conditional UpdateItem in several unlocked steps (check the
condition, create a key-only item, then set the attributes). Under concurrent
requests two writers can both pass the same condition, and a reader can see a
half-written item: things DynamoDB itself never does, since every single-item
write is atomic. Serialising DynamoDB requests restores that guarantee, so the
tests that race conditional writes test payhook, not moto. SQS, Secrets
Manager and the rest stay concurrent (long polls must not block DynamoDB).

Usage: moto_server.py -H 127.0.0.1 -p PORT (started by scripts/moto.sh).
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

DYNAMODB_TARGET_PREFIXES = ("DynamoDB_", "DynamoDBStreams_")


class AtomicDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, response fully built inside the lock."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(DYNAMODB_TARGET_PREFIXES):
            return self.app(environ, start_response)
        with self.lock:
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, AtomicDynamoDB(app), threaded=True)


if __name__ == "__main__":
    main()
