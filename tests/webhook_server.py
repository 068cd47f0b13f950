#!/usr/bin/env python3
"""webhook_server.py - a local webhook receiver, for the notification tests (tests/unit/test_notify.c,
test_outbound_secrets.c).

It records every request it receives, whatever its path, as one JSON line appended to the file
named by the environment variable WEBHOOK_RECORD:
  {"method": "POST", "path": "/hook", "headers": {"Name": "value", ...}, "body": "...", "t": T}
(header names as the client sent them, the body as text with undecodable bytes replaced, T a
monotonic time in seconds). The line is written and flushed before the answer is sent, so a test
that has its answer can read the record.

What it answers depends on the path, so each test picks the behaviour in the URL it configures:
  /hook          200 {"ok": true}
  /status/NNN    status NNN with {"error": "..."} (e.g. /status/500)
  /hang          never answers (holds the connection for 120 s): the client must time out
  /redirect      302 to /hook (the client must not follow it)
  /big           200 with a 1 MiB body (the client must cap what it keeps)
  /auth          200 only with "Authorization: Bearer <WEBHOOK_TOKEN>", else 401 echoing the
                 header it got (the client must scrub the token from what it reports)
Any other path: 404. Standard library only. Prints "listening PORT" on stdout once it accepts
connections (PORT chosen by the system).
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORD = os.environ.get("WEBHOOK_RECORD")
TOKEN = os.environ.get("WEBHOOK_TOKEN", "")
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_version = "webhook-test/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def record(self, body):
        if not RECORD:
            return
        line = json.dumps({"method": self.command, "path": self.path,
                           "headers": {k: v for k, v in self.headers.items()},
                           "body": body.decode("utf-8", "replace"), "t": time.monotonic()})
        with LOCK:
            with open(RECORD, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()

    def answer(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        self.record(body)
        path = self.path.split("?", 1)[0]
        if path == "/hook":
            self.answer(200, {"ok": True})
        elif path.startswith("/status/") and path[8:].isdigit():
            self.answer(int(path[8:]), {"error": "the test asked for status " + path[8:]})
        elif path == "/hang":
            time.sleep(120)
        elif path == "/redirect":
            self.answer(302, {"moved": True}, {"Location": "/hook"})
        elif path == "/big":
            data = b"x" * (1 << 20)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except OSError:
                pass
        elif path == "/auth":
            got = self.headers.get("Authorization", "")
            if TOKEN and got == "Bearer " + TOKEN:
                self.answer(200, {"ok": True})
            else:
                self.answer(401, {"error": "bad credentials: " + got})
        else:
            self.answer(404, {"error": "no such path"})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    print("listening %d" % srv.server_address[1], flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
