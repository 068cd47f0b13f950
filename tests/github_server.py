#!/usr/bin/env python3
"""github_server.py - a local stand-in for the part of GitHub's REST API that asr uses, for
tests/unit/test_github.c and test_outbound_secrets.c.

Endpoints, as documented at https://docs.github.com/en/rest/pulls/pulls:
  GET  /repos/{owner}/{repo}/pulls?head={owner}:{branch}&state=open
       the open pull requests whose head is that branch (a JSON list; [] when none)
  POST /repos/{owner}/{repo}/pulls   {"title", "head", "base", "body"?, "draft"?,
                                      "maintainer_can_modify"?}
       201 with the new pull request (and a Location header); 422 "Validation Failed" when an
       open pull request already exists for the head, or when base is not a branch of the repo

Every request is checked the way GitHub does, and strictly where asr's requests have a known
shape (so a test fails on a malformed request rather than passing by luck):
  - Authorization must be "Bearer <GITHUB_TEST_TOKEN>": otherwise 401 {"message": "Bad
    credentials"};
  - Accept must be application/vnd.github+json, X-GitHub-Api-Version 2022-11-28, and a
    User-Agent must be sent: otherwise 400 naming the header;
  - only the repository GITHUB_TEST_REPO (default acme/shop) exists (others: 404 "Not Found");
    its branches are GITHUB_TEST_BASES (comma-separated, default "main");
  - the list's head filter must be "owner:branch", state must be open; the create body must be a
    JSON object of the fields above with string values (400 otherwise).

Test controls (not GitHub's; never recorded): POST /_control with a JSON object:
  {"rate_limited": true}   every API request gets 403 "API rate limit exceeded ..." with
                           x-ratelimit-remaining: 0 and x-ratelimit-reset, as GitHub answers
  {"hang": true}           API requests are never answered (120 s): the client must time out
  {"hide_pulls": true}     the list always answers [] (so a create finds the existing one: 422)
  {"reset": true}          all of the above off, and no pull requests
GET /_pulls returns every pull request made so far.

Every API request is appended as one JSON line to the file GITHUB_RECORD names:
  {"method", "path", "query", "headers": {...}, "body": "...", "status": N}
(written before the answer is sent). Standard library only. Prints "listening PORT" on stdout
once it accepts connections.
"""
import json
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = os.environ.get("GITHUB_TEST_TOKEN", "")
REPO = os.environ.get("GITHUB_TEST_REPO", "acme/shop")
BASES = [b for b in os.environ.get("GITHUB_TEST_BASES", "main").split(",") if b]
RECORD = os.environ.get("GITHUB_RECORD")
DOCS = "https://docs.github.com/rest"

LOCK = threading.Lock()
STATE = {"pulls": [], "next": 1, "rate_limited": False, "hang": False, "hide_pulls": False}


class Handler(BaseHTTPRequestHandler):
    server_version = "github-test/1"

    def log_message(self, fmt, *args):
        pass

    def record(self, body, status):
        if not RECORD:
            return
        u = urllib.parse.urlsplit(self.path)
        line = json.dumps({"method": self.command, "path": u.path, "query": u.query,
                           "headers": {k: v for k, v in self.headers.items()},
                           "body": body.decode("utf-8", "replace"), "status": status})
        with LOCK:
            with open(RECORD, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def send(self, body, status, obj, extra=None):
        self.record(body, status)
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-GitHub-Api-Version-Selected", "2022-11-28")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def error(self, body, status, message, extra=None, errors=None):
        obj = {"message": message, "documentation_url": DOCS, "status": str(status)}
        if errors is not None:
            obj["errors"] = errors
        self.send(body, status, obj, extra)

    def pull_json(self, p):
        owner = REPO.split("/")[0]
        return {"url": "http://%s/repos/%s/pulls/%d" % (self.headers.get("Host"), REPO, p["number"]),
                "html_url": "https://github.example/%s/pull/%d" % (REPO, p["number"]),
                "number": p["number"], "state": "open", "title": p["title"], "body": p["body"],
                "draft": p["draft"],
                "head": {"label": "%s:%s" % (owner, p["head"]), "ref": p["head"]},
                "base": {"label": "%s:%s" % (owner, p["base"]), "ref": p["base"]}}

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n > 0 else b""
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_control" and self.command == "POST":
            c = json.loads(body or b"{}")
            with LOCK:
                if c.get("reset"):
                    STATE.update(pulls=[], next=1, rate_limited=False, hang=False,
                                 hide_pulls=False)
                for k in ("rate_limited", "hang", "hide_pulls"):
                    if k in c:
                        STATE[k] = bool(c[k])
            data = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if u.path == "/_pulls":
            with LOCK:
                data = json.dumps([self.pull_json(p) for p in STATE["pulls"]]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if STATE["hang"]:
            self.record(body, 0)
            time.sleep(120)
            return
        # Authentication first, as GitHub does.
        if self.headers.get("Authorization") != "Bearer " + TOKEN or not TOKEN:
            return self.error(body, 401, "Bad credentials")
        if STATE["rate_limited"]:
            reset = str(int(time.time()) + 3600)
            return self.error(body, 403, "API rate limit exceeded for user ID 1. If you reach out "
                              "to GitHub Support for help, please include the request ID.",
                              {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                               "x-ratelimit-used": "5000", "x-ratelimit-reset": reset,
                               "x-ratelimit-resource": "core"})
        if self.headers.get("Accept") != "application/vnd.github+json":
            return self.error(body, 400, "test server: Accept must be application/vnd.github+json")
        if self.headers.get("X-GitHub-Api-Version") != "2022-11-28":
            return self.error(body, 400, "test server: X-GitHub-Api-Version must be 2022-11-28")
        if not self.headers.get("User-Agent"):
            return self.error(body, 403, "Request forbidden by administrative rules. Please make "
                              "sure your request has a User-Agent header")
        parts = u.path.split("/")
        if len(parts) != 5 or parts[1] != "repos" or parts[4] != "pulls":
            return self.error(body, 404, "Not Found")
        if "%s/%s" % (parts[2], parts[3]) != REPO:
            return self.error(body, 404, "Not Found")
        owner = parts[2]
        if self.command == "GET":
            q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            head = q.get("head", [""])
            state = q.get("state", ["open"])
            if len(head) != 1 or ":" not in head[0]:
                return self.error(body, 400, "test server: head must be owner:branch")
            if state != ["open"]:
                return self.error(body, 400, "test server: state must be open")
            h_owner, h_branch = head[0].split(":", 1)
            with LOCK:
                found = [] if STATE["hide_pulls"] else [
                    self.pull_json(p) for p in STATE["pulls"]
                    if h_owner == owner and p["head"] == h_branch]
            return self.send(body, 200, found)
        if self.command != "POST":
            return self.error(body, 404, "Not Found")
        try:
            req = json.loads(body)
        except ValueError:
            return self.error(body, 400, "Problems parsing JSON")
        allowed = {"title", "head", "base", "body", "draft", "maintainer_can_modify"}
        if not isinstance(req, dict) or set(req) - allowed:
            return self.error(body, 400, "test server: unexpected fields %s" %
                              sorted(set(req) - allowed if isinstance(req, dict) else []))
        for k in ("title", "head", "base"):
            if not isinstance(req.get(k), str) or not req[k]:
                return self.error(body, 422, "Validation Failed", errors=[
                    {"resource": "PullRequest", "field": k, "code": "missing_field"}])
        if "body" in req and not isinstance(req["body"], str):
            return self.error(body, 400, "test server: body must be a string")
        head = req["head"].split(":", 1)[-1]
        if req["base"] not in BASES:
            return self.error(body, 422, "Validation Failed", errors=[
                {"resource": "PullRequest", "field": "base", "code": "invalid"}])
        with LOCK:
            if any(p["head"] == head for p in STATE["pulls"]):
                dup = True
            else:
                dup = False
                p = {"number": STATE["next"], "title": req["title"], "head": head,
                     "base": req["base"], "body": req.get("body"), "draft": bool(req.get("draft"))}
                STATE["next"] += 1
                STATE["pulls"].append(p)
        if dup:
            return self.error(body, 422, "Validation Failed", errors=[
                {"resource": "PullRequest", "code": "custom",
                 "message": "A pull request already exists for %s:%s." % (owner, head)}])
        pj = self.pull_json(p)
        return self.send(body, 201, pj, {"Location": pj["url"]})

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = handle_any


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
