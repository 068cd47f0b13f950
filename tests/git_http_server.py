#!/usr/bin/env python3
"""git_http_server.py - a local stand-in for a git host's smart-HTTP endpoint (GitHub's
https://github.com/OWNER/REPO.git), for the push tests (tests/unit/test_patch_push.c).

It serves the bare repositories under GIT_TEST_ROOT through git's own CGI program,
`git http-backend`, and asks for credentials the way GitHub does: HTTP Basic, where the password
is the token (GitHub takes any user name with a token; asr sends x-access-token). A request
without them, or with another password than GIT_TEST_TOKEN, gets 401 with
WWW-Authenticate: Basic. Pushes are allowed for an authenticated user (REMOTE_USER is set).

Every request is appended as one JSON line to the file GIT_RECORD names:
  {"method", "path", "query", "user", "authorized": bool, "status"}
(the password itself is not recorded). Standard library only, and the git binary. Prints
"listening PORT" on stdout once it accepts connections.
"""
import base64
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.environ.get("GIT_TEST_ROOT", ".")
TOKEN = os.environ.get("GIT_TEST_TOKEN", "")
RECORD = os.environ.get("GIT_RECORD")
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "git-http-test/1"

    def log_message(self, fmt, *args):
        pass

    def record(self, user, ok, status):
        if not RECORD:
            return
        u = urllib.parse.urlsplit(self.path)
        with LOCK:
            with open(RECORD, "a", encoding="utf-8") as f:
                f.write(json.dumps({"method": self.command, "path": u.path, "query": u.query,
                                    "user": user, "authorized": ok, "status": status}) + "\n")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def simple(self, status, text, extra=None):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        body = self.read_body()
        user, ok = "", False
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                ok = bool(TOKEN) and password == TOKEN
            except ValueError:
                pass
        if not ok:
            self.record(user, False, 401)
            # No body: with one, libgit2 1.5 misread the next response on the reused connection
            # here ("http parser error: invalid constant string"; not investigated further).
            # An empty 401 keeps this server about credentials.
            return self.simple(401, "", {"WWW-Authenticate": 'Basic realm="test"'})
        u = urllib.parse.urlsplit(self.path)
        env = dict(os.environ)
        env.update({"GIT_PROJECT_ROOT": ROOT, "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": urllib.parse.unquote(u.path), "QUERY_STRING": u.query,
                    "REQUEST_METHOD": self.command, "REMOTE_USER": user or "token",
                    "REMOTE_ADDR": self.client_address[0],
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body))})
        p = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, payload = p.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = p.stdout.partition(b"\n\n")
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.record(user, True, status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = handle_any


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
