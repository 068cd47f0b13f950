#!/usr/bin/env python3
"""api_load.py - the clients bench/api.sh needs beyond wrk (python3 stdlib only).

    api_load.py probe URL SECONDS INTERVAL_MS PREFIX
        GET URL every INTERVAL_MS ms for SECONDS s, open loop: each request goes out at its
        planned time on an idle keep-alive connection, or a new one when all are busy (as
        independent users would send them; at most 256), and its latency counts from that time, so a stall
        of the server shows in every request planned during it. Requests unanswered 3 s after
        the last planned one are "late" (counted with their wait so far, a lower bound). Prints
        shell assignments: PREFIX_n, _errors, _late, _conns (connections opened), _p50, _p90,
        _p99, _max (ms).
    api_load.py sse URL N READY STOP OUT [SECONDS]
        Opens N event-stream clients on URL (one process, epoll), writes the file READY once all
        N have their 200 and the stream's first bytes, and reads until the file STOP exists (or
        SECONDS, default 120, have passed). Writes OUT: one JSON line per event per client,
        {"c": client, "id", "kind", "at" (the event's store time, ms), "t" (arrival, wall-clock ms
        with us digits, taken when the read that completed the event returned)}.
    api_load.py post URL TOKEN_ENV N INTERVAL_MS TAG OUT
        N CloudWatch subscription deliveries (gzip + base64, as AWS sends them), one every
        INTERVAL_MS ms over one keep-alive connection, each one line "WARN FAULT_DB_TIMEOUT
        route=/apibench/TAG/I reason=bench" (a distinct route, so each opens its own incident).
        The bearer token is read from the environment variable TOKEN_ENV, never from argv.
        Writes OUT: one JSON line per delivery {"i", "sent" (ms), "done" (ms), "status"}.
    api_load.py serve PORT
        The floor for the stream: a minimal single-threaded event-stream server (non-blocking
        sockets, one epoll loop). GET: a stream; POST (any path): one event, stamped with the
        wall clock in whole ms like asr's "at", written to every stream at once, then 200.
    api_load.py report SSE_OUT POST_OUT N PREFIX
        Delivery latency from the files above: over every (client, event) pair, arrival - at
        (PREFIX_n, _median, _p99, _max, ms), the clients that missed events (PREFIX_missing),
        and from each delivery's send to the arrival of the incident.opened event it caused
        (the I-th opened event for the I-th delivery): PREFIX_post_median, _post_p99,
        _post_max; PREFIX_kinds: the median arrival - at of each kind. Printed as shell
        assignments.

Every network access goes to 127.0.0.1; every loop is bounded by a count or a deadline.
"""
import base64
import gzip
import http.client
import json
import math
import os
import selectors
import socket
import sys
import time
import urllib.parse


def die(msg):
    sys.stderr.write("api_load.py: %s\n" % msg)
    sys.exit(2)


def now_ms():
    return time.time() * 1000.0


def pct(xs, p):
    """Nearest-rank percentile of a non-empty sorted list."""
    return xs[max(0, math.ceil(p / 100.0 * len(xs)) - 1)]


def split_url(url):
    u = urllib.parse.urlsplit(url)
    if u.hostname != "127.0.0.1":
        die("%s: only 127.0.0.1 is allowed" % url)
    return u.hostname, u.port or 80, (u.path or "/") + ("?" + u.query if u.query else "")


class ProbeConn:
    """One keep-alive connection of the probe, with at most one request in flight."""

    def __init__(self, host, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect_ex((host, port))
        self.planned = None  # the planned send time of the request in flight (monotonic s)
        self.buf = b""
        self.out = b""

    def done(self):
        """True when buf holds one whole answer (Content-Length or chunked); keeps the rest."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = self.buf[:end].decode("latin-1").lower()
        body = end + 4
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip() == "content-length":
                n = body + int(v.strip())
                if len(self.buf) < n:
                    return False
                self.status = int(head.split()[1])
                self.closing = "connection: close" in head
                self.buf = self.buf[n:]
                return True
        if "transfer-encoding: chunked" in head:
            n = self.buf.find(b"\r\n0\r\n\r\n", body - 2)
            if n < 0:
                return False
            self.status = int(head.split()[1])
            self.closing = "connection: close" in head
            self.buf = self.buf[n + 7:]
            return True
        die("probe: an answer without Content-Length or chunked body: %r" % head[:200])


MAX_CONNS = 256  # the probe's connections at most; past that a request waits for one
GRACE = 3.0  # s after the last planned request that the probe waits for answers


def cmd_probe(url, seconds, interval_ms, prefix):
    """Open loop: a request goes out at each planned time on an idle connection (a new one
    when all are busy), whatever the earlier ones are doing, as independent users would send
    them; with MAX_CONNS busy, a request waits for one to be free. Latency counts from the
    planned time. Requests still unanswered GRACE s after the last planned one are "late", counted
    with their wait so far (a lower bound)."""
    host, port, path = split_url(url)
    seconds, interval = float(seconds), float(interval_ms) / 1000.0
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode()
    sel = selectors.DefaultSelector()
    idle, conns, lat = [], 0, []
    errors = late = 0
    n = int(seconds / interval)
    start = time.monotonic()
    deadline = start + seconds + GRACE
    i = 0
    busy = set()
    pending = []  # planned times that found every connection busy and the cap reached
    while time.monotonic() < deadline and (i < n or busy or pending):
        now = time.monotonic()
        while i < n and start + i * interval <= now:
            pending.append(start + i * interval)
            i += 1
        while pending and (idle or conns < MAX_CONNS):
            c = idle.pop() if idle else None
            if c is None:
                c = ProbeConn(host, port)
                conns += 1
            c.planned = pending.pop(0)
            c.out = req
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            busy.add(c)
        wait = (start + i * interval - time.monotonic()) if i < n else 0.05
        for key, ev in sel.select(timeout=max(0.0, min(wait, 0.05))):
            c = key.data
            try:
                if c.out:
                    if ev & selectors.EVENT_WRITE:
                        c.out = c.out[c.sock.send(c.out):]
                        if not c.out:
                            sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                if not ev & selectors.EVENT_READ:
                    continue
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                errors += 1
                sel.unregister(c.sock)
                busy.discard(c)
                c.sock.close()
                continue
            c.buf += data
            if not c.done():
                continue
            lat.append((time.monotonic() - c.planned) * 1000.0)
            if c.status != 200:
                errors += 1
            sel.unregister(c.sock)
            busy.discard(c)
            if c.closing:
                c.sock.close()
            else:
                idle.append(c)
    now = time.monotonic()
    for c in busy:
        late += 1
        lat.append((now - c.planned) * 1000.0)
        c.sock.close()
    for planned in pending:
        late += 1
        lat.append((now - planned) * 1000.0)
    for c in idle:
        c.sock.close()
    lat.sort()
    if not lat:
        die("probe %s: no answer at all (%d errors)" % (url, errors))
    print("%s_n=%d %s_errors=%d %s_late=%d %s_conns=%d %s_p50=%.2f %s_p90=%.2f %s_p99=%.2f "
          "%s_max=%.1f" % (prefix, len(lat), prefix, errors, prefix, late + (n - i), prefix,
                           conns, prefix, pct(lat, 50), prefix, pct(lat, 90), prefix,
                           pct(lat, 99), prefix, lat[-1]))


class Client:
    """One event-stream connection: the answer's head, then events as the standard cuts them."""

    def __init__(self, k, host, port, path):
        self.k = k
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                           "Cache-Control: no-cache\r\n\r\n" % (path, host, port)).encode())
        self.sock.setblocking(False)
        self.buf = b""
        self.head = None  # the status line, once the head has arrived
        self.ready = False
        self.chunked = False
        self.raw = b""  # bytes of the body not yet de-chunked

    def feed(self, data, t, out):
        if self.head is None:
            self.raw += data
            end = self.raw.find(b"\r\n\r\n")
            if end < 0:
                if len(self.raw) > 65536:
                    die("client %d: no end of the answer's head in 64 KiB" % self.k)
                return
            head = self.raw[:end].decode("latin-1")
            self.head = head.split("\r\n", 1)[0]
            if " 200 " not in self.head + " ":
                die("client %d: %s" % (self.k, self.head))
            self.chunked = "transfer-encoding: chunked" in head.lower()
            data, self.raw = self.raw[end + 4:], b""
        if self.chunked:
            data = self.dechunk(data)
        self.buf += data
        if data:
            self.ready = True
        while True:
            end = self.buf.find(b"\n\n")
            if end < 0:
                break
            block, self.buf = self.buf[:end], self.buf[end + 2:]
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    e = json.loads(line[5:].strip())
                    out.write(json.dumps({"c": self.k, "id": e.get("id"), "kind": e.get("kind"),
                                          "at": e.get("at"), "t": round(t, 3)}) + "\n")

    def dechunk(self, data):
        self.raw += data
        body = b""
        while True:
            nl = self.raw.find(b"\r\n")
            if nl < 0:
                break
            size = int(self.raw[:nl].split(b";")[0] or b"0", 16)
            if len(self.raw) < nl + 2 + size + 2:
                break
            body += self.raw[nl + 2:nl + 2 + size]
            self.raw = self.raw[nl + 2 + size + 2:]
            if size == 0:
                break
        return body


def cmd_sse(url, n, ready, stop, out_path, seconds="120"):
    host, port, path = split_url(url)
    n, deadline = int(n), time.monotonic() + float(seconds)
    sel = selectors.DefaultSelector()
    clients = [Client(k, host, port, path) for k in range(n)]
    for c in clients:
        sel.register(c.sock, selectors.EVENT_READ, c)
    said_ready = False
    with open(out_path, "w") as out:
        while time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.05):
                c = key.data
                try:
                    data = c.sock.recv(262144)
                except BlockingIOError:
                    continue
                t = now_ms()
                if not data:
                    die("client %d: the stream ended" % c.k)
                c.feed(data, t, out)
            out.flush()  # api.sh counts the lines while the clients read
            if not said_ready and all(c.ready for c in clients):
                said_ready = True
                with open(ready, "w") as f:
                    f.write("%d\n" % n)
            if os.path.exists(stop):
                break
    for c in clients:
        c.sock.close()


def delivery(tag, i):
    msg = "WARN FAULT_DB_TIMEOUT route=/apibench/%s/%d reason=bench" % (tag, i)
    inner = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "/aws/ecs/shop",
             "logStream": "shop/web/1", "subscriptionFilters": ["asr"],
             "logEvents": [{"id": str(i), "timestamp": int(now_ms()), "message": msg}]}
    data = base64.b64encode(gzip.compress(json.dumps(inner).encode())).decode()
    return json.dumps({"awslogs": {"data": data}}).encode()


def cmd_post(url, token_env, n, interval_ms, tag, out_path):
    host, port, path = split_url(url)
    token = os.environ.get(token_env, "")
    n, interval = int(n), float(interval_ms) / 1000.0
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn = http.client.HTTPConnection(host, port, timeout=30)
    start = time.monotonic()
    with open(out_path, "w") as out:
        for i in range(n):
            body = delivery(tag, i)
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = now_ms()
            try:
                conn.request("POST", path, body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException) as e:
                status = "error: %s" % e
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=30)
            out.write(json.dumps({"i": i, "sent": round(sent, 3), "done": round(now_ms(), 3),
                                  "status": status}) + "\n")
    conn.close()


def cmd_serve(port):
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", int(port)))
    lsock.listen(256)
    lsock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    streams, bufs, seq = [], {}, 0
    while True:
        for key, _ in sel.select():
            if key.data is None:
                s, _ = lsock.accept()
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                bufs[s] = b""
                sel.register(s, selectors.EVENT_READ, "conn")
                continue
            s = key.fileobj
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                bufs.pop(s, None)
                if s in streams:
                    streams.remove(s)
                s.close()
                continue
            bufs[s] += data
            while True:
                buf = bufs[s]
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buf[:end].decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v.strip())
                if len(buf) < end + 4 + length:
                    break
                bufs[s] = buf[end + 4 + length:]
                if head.startswith("GET "):
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              b"Cache-Control: no-cache\r\n\r\nretry: 1000\n\n")
                    streams.append(s)
                else:
                    seq += 1
                    msg = ("id: %d\ndata: %s\n\n" % (seq, json.dumps(
                        {"id": seq, "at": int(now_ms()), "kind": "floor"}))).encode()
                    for t in list(streams):
                        try:
                            t.sendall(msg)
                        except OSError:
                            streams.remove(t)
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")


def cmd_report(sse_path, post_path, n, prefix):
    n = int(n)
    evs = [json.loads(l) for l in open(sse_path) if l.strip()]
    posts = [json.loads(l) for l in open(post_path) if l.strip()]
    if not evs:
        die("%s: no event arrived" % sse_path)
    lat = sorted(e["t"] - e["at"] for e in evs)
    per = {}
    for e in evs:
        per.setdefault(e["c"], set()).add(e["id"])
    ids = set().union(*per.values())
    missing = sum(len(ids - per.get(c, set())) for c in range(n))
    # The I-th opened incident is the I-th delivery's (they are sent one after another). The
    # floor server's events are all "floor": one per delivery.
    opened = {}
    for e in evs:
        if e["kind"] in ("incident.opened", "floor"):
            opened.setdefault(e["c"], []).append(e)
    post_lat = []
    for c, lst in opened.items():
        lst.sort(key=lambda e: e["id"])
        for p, e in zip(posts, lst):
            post_lat.append(e["t"] - p["sent"])
    post_lat.sort()
    bad = sum(1 for p in posts if p["status"] != 200)
    # By kind: an event written early in a loop turn waits for the rest of the turn.
    kinds = {}
    for e in evs:
        kinds.setdefault(e["kind"], []).append(e["t"] - e["at"])
    by_kind = " ".join("%s=%.1f" % (k, pct(sorted(v), 50)) for k, v in sorted(kinds.items()))
    print("%s_n=%d %s_events=%d %s_missing=%d %s_median=%.2f %s_p99=%.2f %s_max=%.2f "
          "%s_opened=%d %s_post_median=%.2f %s_post_p99=%.2f %s_post_max=%.2f %s_post_bad=%d "
          "%s_kinds='%s'" % (
              prefix, len(lat), prefix, len(ids), prefix, missing, prefix, pct(lat, 50), prefix,
              pct(lat, 99), prefix, lat[-1], prefix, len(post_lat) // max(1, len(opened)),
              prefix, pct(post_lat, 50) if post_lat else -1, prefix,
              pct(post_lat, 99) if post_lat else -1, prefix, post_lat[-1] if post_lat else -1,
              prefix, bad, prefix, by_kind))


def main(argv):
    cmds = {"probe": (cmd_probe, 4, 4), "sse": (cmd_sse, 5, 6), "post": (cmd_post, 6, 6),
            "serve": (cmd_serve, 1, 1), "report": (cmd_report, 4, 4)}
    if len(argv) < 2 or argv[1] not in cmds or not (
            cmds[argv[1]][1] <= len(argv) - 2 <= cmds[argv[1]][2]):
        die("usage: see the docstring of %s" % argv[0])
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
