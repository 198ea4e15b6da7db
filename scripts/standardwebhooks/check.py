"""A delivery made by a real worker, verified by the `standardwebhooks` package from PyPI (a
receiver nobody here wrote): run by scripts/standard_webhooks.sh inside `./setup.sh test`.

It listens where the stack's worker delivers (WEBHOOK_BASE_URL, no webhook service runs), posts
one resource of three packets out of order to the consumer, and verifies the delivery with
`standardwebhooks.Webhook(<whsec secret>).verify(body, headers)`. Then it checks that the same
library refuses the delivery with one byte of the body changed, and refuses the untouched delivery
replayed ten minutes later (the library's clock moved forward by patching its `datetime`).
Exit code 0 only when all three hold.
"""

import datetime as dt
import importlib.metadata
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import standardwebhooks.webhooks as sw

SECRET = os.environ["WEBHOOK_SECRET"]  # whsec_… as the stack's worker signs with it
CONSUMER_URL = os.environ["CONSUMER_URL"].rstrip("/")
WEBHOOK_BASE_URL = os.environ["WEBHOOK_BASE_URL"].rstrip("/")
PRODUCER = "swh"
RESOURCE = f"swh-{uuid.uuid4().hex[:8]}"
KEY = f"{PRODUCER}@{RESOURCE}"

verified = []  # (headers, body) of deliveries the library accepted
refused = []  # reasons of deliveries it refused


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        try:
            sw.Webhook(SECRET).verify(body, headers)
            verified.append((headers, body))
            status = 200
        except sw.WebhookVerificationError as e:
            refused.append(str(e))
            status = 401
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def post(number, seq, text):
    packet = {
        "producer": PRODUCER,
        "number": number,
        "sent_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "resource_id": RESOURCE,
        "seq": seq,
        "total": 3,
        "text": text,
    }
    req = urllib.request.Request(
        f"{CONSUMER_URL}/messages",
        data=json.dumps(packet).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202, resp.status


class Later(dt.datetime):
    """The library's clock, ten minutes ahead: a replay of a captured delivery."""

    @classmethod
    def now(cls, tz=None):
        return dt.datetime.now(tz) + dt.timedelta(minutes=10)


def main():
    port = urlparse(WEBHOOK_BASE_URL).port
    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for number, (seq, text) in enumerate([(2, "c cc"), (0, "a"), (1, "bb bbb")]):
        post(number, seq, text)
    deadline = time.monotonic() + 60
    while not verified and time.monotonic() < deadline:
        time.sleep(0.1)
    server.shutdown()
    if not verified:
        print(f"FAIL: no delivery verified within 60 s (refused: {refused})")
        return 1
    headers, body = verified[0]
    doc = json.loads(body)
    ok = headers.get("webhook-id") == KEY and doc["word_lengths"] == [[1], [2, 3], [1, 2]]
    version = importlib.metadata.version("standardwebhooks")
    print(f"verified a real delivery with standardwebhooks {version}: webhook-id {headers.get('webhook-id')}, "
          f"word_lengths {doc['word_lengths']}")
    tampered = bytearray(body)
    tampered[body.index(b"[[") + 2] ^= 0x01  # one digit of the word lengths
    try:
        sw.Webhook(SECRET).verify(bytes(tampered), headers)
        print("FAIL: a tampered body verified")
        ok = False
    except sw.WebhookVerificationError as e:
        print(f"tampered body refused: {e}")
    real = sw.datetime
    sw.datetime = Later
    try:
        sw.Webhook(SECRET).verify(body, headers)
        print("FAIL: the delivery replayed ten minutes later verified")
        ok = False
    except sw.WebhookVerificationError as e:
        print(f"replay ten minutes later refused: {e}")
    finally:
        sw.datetime = real
    if refused:
        print(f"FAIL: the library refused {len(refused)} real deliveries: {refused}")
        ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
