#!/usr/bin/env python3
"""sse_client.py - the clients test_events.sh points at asr's event stream (python3 stdlib only).

  sse_client.py stream URL OUT [--last-event-id ID] [--read-bps N] [--rcvbuf N]
      Reads GET URL as server-sent events, decoded as the WHATWG HTML standard says (lines end in
      CRLF, LF or CR; ':' starts a comment; 'field: value' with one optional space; a blank line
      dispatches; 'id' sets the last event id, 'retry' the reconnection time). Each thing read is
      appended to OUT as one JSON line, written unbuffered so a SIGKILL loses nothing the client
      had seen: {"t": "open", "status", "ctype", "ms"}, {"t": "event", "id", "data", "type", "ms"}
      (ms: wall-clock ms when the event's blank line arrived), {"t": "comment", "text", "ms"},
      {"t": "retry", "ms_value"}, {"t": "bad", "line"} for a field the standard ignores, and
      {"t": "end", "why"}. A non-200 answer is written as {"t": "open", ...} plus
      {"t": "body", "text"} and the client exits 0. --read-bps reads at most N bytes a second;
      --rcvbuf sets the socket's receive buffer (so the kernel does not absorb what is unread).
  sse_client.py stall URL READY
      Connects with a 4 KiB receive buffer, sends the request and never reads: a client that has
      stopped. Writes READY once the request is sent.
  sse_client.py probe URL OUT STOP
      GETs URL over a fresh connection every 100 ms until the file STOP exists, appending
      {"ms": wall-clock, "latency_ms", "status"} per request to OUT.
"""
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse


def now_ms():
    return int(time.time() * 1000)


class Out:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def put(self, obj):
        os.write(self.fd, (json.dumps(obj) + "\n").encode())


def split_url(url):
    u = urllib.parse.urlsplit(url)
    path = u.path + ("?" + u.query if u.query else "")
    return u.hostname, u.port or 80, path


class Decoder:
    """The event stream interpretation of the standard, fed bytes as they arrive."""

    def __init__(self, out):
        self.out = out
        self.pending = b""  # bytes of a line not yet ended
        self.after_cr = False  # the last byte fed was CR: a following LF belongs to it
        self.first = True  # a leading BOM is dropped
        self.data = []
        self.event_type = ""
        self.last_id = ""
        self.id_seen = False  # an id field was set since the last dispatch

    def feed(self, chunk, ms):
        if self.after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self.after_cr = False
        buf = self.pending + chunk
        start = 0
        i = 0
        while i < len(buf):
            c = buf[i]
            if c == 0x0A or c == 0x0D:
                self.line(buf[start:i], ms)
                if c == 0x0D:
                    if i + 1 < len(buf):
                        if buf[i + 1] == 0x0A:
                            i += 1
                    else:
                        self.after_cr = True
                start = i + 1
            i += 1
        self.pending = buf[start:]

    def line(self, raw, ms):
        if self.first:
            self.first = False
            if raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
        text = raw.decode("utf-8", errors="replace")
        if text == "":
            self.dispatch(ms)
            return
        if text.startswith(":"):
            self.out.put({"t": "comment", "text": text[1:].lstrip(" "), "ms": ms})
            return
        name, sep, value = text.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self.data.append(value)
        elif name == "event":
            self.event_type = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
                self.id_seen = True
        elif name == "retry":
            if value.isdigit():
                self.out.put({"t": "retry", "ms_value": int(value)})
            else:
                self.out.put({"t": "bad", "line": text})
        else:
            self.out.put({"t": "bad", "line": text})

    def dispatch(self, ms):
        if not self.data:
            self.event_type = ""
            return
        self.out.put(
            {
                "t": "event",
                "id": self.last_id if self.id_seen else None,
                "data": "\n".join(self.data),
                "type": self.event_type or "message",
                "ms": ms,
            }
        )
        self.data = []
        self.event_type = ""
        self.id_seen = False


class SmallBufferConnection(http.client.HTTPConnection):
    """A connection whose socket has a small receive buffer, so a slow reader holds the sender."""

    rcvbuf = 0

    def connect(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf > 0:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        self.sock.settimeout(self.timeout)
        self.sock.connect((self.host, self.port))


def stream(url, out_path, last_event_id=None, read_bps=0, rcvbuf=0):
    out = Out(out_path)
    host, port, path = split_url(url)
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    conn = SmallBufferConnection(host, port, timeout=120)
    conn.rcvbuf = rcvbuf
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    ctype = resp.getheader("Content-Type", "")
    out.put({"t": "open", "status": resp.status, "ctype": ctype, "ms": now_ms()})
    if resp.status != 200:
        out.put({"t": "body", "text": resp.read().decode("utf-8", errors="replace")})
        return 0
    dec = Decoder(out)
    why = "end of stream"
    chunk_size = 65536 if read_bps <= 0 else max(1, read_bps // 10)
    try:
        while True:
            chunk = resp.read1(chunk_size)
            if not chunk:
                break
            dec.feed(chunk, now_ms())
            if read_bps > 0:
                time.sleep(len(chunk) / read_bps)
    except (OSError, http.client.HTTPException) as e:
        why = f"{type(e).__name__}: {e}"
    out.put({"t": "end", "why": why, "ms": now_ms(), "partial": len(dec.pending) + len(dec.data)})
    return 0


def stall(url, ready):
    host, port, path = split_url(url)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    with open(ready, "w") as f:
        f.write("sent\n")
    time.sleep(3600)


def probe(url, out_path, stop):
    out = Out(out_path)
    host, port, path = split_url(url)
    while not os.path.exists(stop):
        t0 = time.monotonic()
        status = 0
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            status = r.status
            conn.close()
        except (OSError, http.client.HTTPException):
            pass
        out.put({"ms": now_ms(), "latency_ms": round((time.monotonic() - t0) * 1000, 2), "status": status})
        time.sleep(0.1)


def main(argv):
    if len(argv) >= 3 and argv[0] == "stream":
        rest = argv[3:]
        opts = dict(zip(rest[::2], rest[1::2]))
        if len(rest) % 2 or set(opts) - {"--last-event-id", "--read-bps", "--rcvbuf"}:
            sys.exit(f"sse_client.py: stream: unknown options {rest}")
        return stream(
            argv[1],
            argv[2],
            opts.get("--last-event-id"),
            int(opts.get("--read-bps", 0)),
            int(opts.get("--rcvbuf", 0)),
        )
    if len(argv) == 3 and argv[0] == "stall":
        return stall(argv[1], argv[2])
    if len(argv) == 4 and argv[0] == "probe":
        return probe(argv[1], argv[2], argv[3])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
