#!/usr/bin/env python3
"""cw_payloads.py - CloudWatch Logs subscription payloads for tests/integration/test_cloudwatch.sh.

    cw_payloads.py make DIR      writes the test's inputs into DIR (listed below)
    cw_payloads.py compare A B   compares two `asr detect` outputs (JSON lines) on what must not
                                 depend on where the lines came from; exit 1 with a diff if not

Payloads are built the way AWS builds them: the inner JSON (messageType DATA_MESSAGE, owner,
logGroup, logStream, subscriptionFilters, logEvents[{id, timestamp, message}]), gzip-compressed,
base64-encoded, in the {"awslogs":{"data":...}} envelope a Lambda receives, one per line.

Files written by `make`:
  app.log        the shop's log: signature hits (demo/asr.yaml's FAULT_* signatures), generic
                 errors (a Python traceback over three lines among them), noise, a verification
                 line and non-ASCII text; no final newline, as a log being written may have
  payloads.txt   the same lines as events of 4 DATA_MESSAGE deliveries over two log streams (the
                 traceback is one event holding newlines, as CloudWatch keeps it), with a
                 CONTROL_MESSAGE between them whose message would open an incident if it were
                 not ignored
  raw.gz         all events in one delivery, as gzip bytes (the form of an S3 export / Firehose)
  bad.txt        the good deliveries of payloads.txt interleaved with bad ones
  bad.txt.expect "NUMBER NAME" per bad delivery (its line number in bad.txt)
  groups.txt     deliveries for the service selection by log group: /aws/ecs/shop,
                 /aws/ecs/upstream and /aws/ecs/nosuch (line 3, which must be refused)
"""
import base64
import gzip
import json
import os
import random
import sys

OWNER = "123456789012"
GROUP = "/aws/ecs/shop"
T0 = 1717236000000  # 2024-06-01T10:00:00Z, in ms

LINES = [
    "2024-06-01T10:00:00Z INFO shop starting on port 8080",
    "2024-06-01T10:00:00Z INFO metrics ERRORS_TOTAL=0 requests=0",
    "2024-06-01T10:00:01Z INFO GET /health 200 in 3ms",
    "2024-06-01T10:00:01Z WARN FAULT_DB_TIMEOUT route=/checkout reason=pool_exhausted wait_ms=5000",
    "2024-06-01T10:00:02Z INFO GET /cart 200 in 12ms",
    "2024-06-01T10:00:02Z ERROR payment gateway returned 502 for order 1234",
    "2024-06-01T10:00:02Z INFO batch done: 0 errors, 12 rows",
    "2024-06-01T10:00:03Z WARN FAULT_DB_TIMEOUT route=/checkout reason=lock_wait wait_ms=5000",
    "2024-06-01T10:00:03Z WARN FAULT_EXTERNAL_API_LATENCY route=/pay reason=upstream_slow ms=2100",
    "Traceback (most recent call last):",
    '  File "/srv/shop/worker.py", line 88, in run',
    "ValueError: price must be positive",
    "2024-06-01T10:00:04Z ERROR payment gateway returned 502 for order 1240",
    "2024-06-01T10:00:04Z WARN FAULT_DB_TIMEOUT route=/cart reason=pool_exhausted wait_ms=5000",
    "2024-06-01T10:00:05Z INFO retrying NON-FATAL condition on cache",
    "2024-06-01T10:00:05Z level=error msg=\"cache refill failed\" shard=7",
    "2024-06-01T10:00:05Z CRITICAL FAULT_SQL_INJECTION_TEST route=/search reason=quote_in_q",
    "2024-06-01T10:00:06Z ERROR kunde inte spara café-beställning 77 (ärende ☃)",
    "2024-06-01T10:00:06Z INFO verification=1 FAULT_DB_TIMEOUT route=/checkout reason=probe",
    "java.lang.NullPointerException: cart is null",
    "2024-06-01T10:00:07Z ERROR payment gateway returned 502 for order 1301",
    "2024-06-01T10:00:07Z FATAL could not open database file shop.db",
    "2024-06-01T10:00:08Z WARN FAULT_EXTERNAL_API_LATENCY route=/pay reason=upstream_slow ms=2900",
    "2024-06-01T10:00:08Z INFO GET /health 200 in 2ms",
    "2024-06-01T10:00:09Z malloc: out of memory allocating 4096 bytes",
    "2024-06-01T10:00:09Z WARN FAULT_DB_TIMEOUT route=/checkout reason=pool_exhausted wait_ms=5000",
    "2024-06-01T10:00:10Z INFO shop stopping",
]
TRACEBACK = (9, 12)  # LINES[9:12] is one CloudWatch event


def events():
    """The log as CloudWatch events: one per line, the traceback as one event with newlines."""
    out, i = [], 0
    while i < len(LINES):
        if i == TRACEBACK[0]:
            msg, i = "\n".join(LINES[TRACEBACK[0]:TRACEBACK[1]]), TRACEBACK[1]
        else:
            msg, i = LINES[i], i + 1
        n = len(out)
        # AWS event ids are 56-digit strings.
        out.append({"id": f"{37000000000000000000000000000000000000000000000000000000 + n:056d}",
                    "timestamp": T0 + 250 * n, "message": msg})
    return out


def inner(evs, stream, group=GROUP, mtype="DATA_MESSAGE"):
    return {"messageType": mtype, "owner": OWNER, "logGroup": group, "logStream": stream,
            "subscriptionFilters": ["asr-detect"], "logEvents": evs}


def gz(obj_or_bytes):
    raw = obj_or_bytes if isinstance(obj_or_bytes, bytes) else \
        json.dumps(obj_or_bytes, separators=(",", ":"), ensure_ascii=False).encode()
    return gzip.compress(raw)


def envelope_b64(data_b64):
    return json.dumps({"awslogs": {"data": data_b64}}, separators=(",", ":"))


def envelope(obj_or_bytes):
    return envelope_b64(base64.b64encode(gz(obj_or_bytes)).decode())


def control():
    # What AWS sends when a subscription is created, to check the destination.
    return inner([{"id": "", "timestamp": T0 - 1000,
                   "message": "CWL CONTROL MESSAGE: Checking health of destination. "
                              "FAULT_DB_TIMEOUT route=/control reason=not_ignored ERROR"}],
                 "", group="", mtype="CONTROL_MESSAGE") | {"owner": "CloudwatchLogs",
                                                            "subscriptionFilters": []}


def good_deliveries():
    evs = events()
    cuts = [0, 5, 9, 15, len(evs)]
    return [envelope(inner(evs[a:b], f"ecs/shop/{'a1b2' if k % 2 == 0 else 'c3d4'}"))
            for k, (a, b) in enumerate(zip(cuts, cuts[1:]))]


def make(d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "app.log"), "w", encoding="utf-8") as f:
        f.write("\n".join(LINES))
    good = good_deliveries()
    with open(os.path.join(d, "payloads.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(good[:2] + [envelope(control())] + good[2:]) + "\n")
    with open(os.path.join(d, "raw.gz"), "wb") as f:
        f.write(gz(inner(events(), "ecs/shop/a1b2")))

    rnd = random.Random(7)
    half = json.loads(good[1])["awslogs"]["data"]
    bad = {
        # base64 cut at a length that is not a multiple of 4
        "truncated-base64": envelope_b64(half[:len(half) // 2 // 4 * 4 + 3]),
        # valid base64 whose gzip stream stops half-way
        "truncated-gzip": envelope_b64(half[:len(half) // 2 // 4 * 4]),
        "not-gzip": envelope_b64(base64.b64encode(b"plain text, not a gzip stream\n").decode()),
        # a character outside the alphabet, at a length that is a multiple of 4
        "not-base64": envelope_b64("H4sIAAAAAAAA/" + "*@!#" + "A" * 43),
        # 17 MiB of zeros inside a valid inner JSON message: about 17 KiB compressed
        "gzip-bomb": envelope_b64(base64.b64encode(gzip.compress(
            b'{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":"'
            + b"0" * (17 << 20) + b'"}]}', 9)).decode()),
        "huge-envelope": envelope_b64("A" * (25 << 20)),
        "malformed-json": envelope(b'{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1",'),
        "wrong-types": envelope(inner([{"id": "1", "timestamp": "yesterday",
                                        "message": "ERROR x"}], "s")),
        "wrong-types-events": envelope(inner({"id": "1"}, "s")),
        "unknown-message-type": envelope(inner([], "s", mtype="DATA")),
        "too-many-events": envelope(inner([{"id": str(i), "timestamp": T0, "message": "x"}
                                           for i in range(10001)], "s")),
        "random-bytes": bytes(rnd.choice([b for b in range(256) if b not in (10, 13, 32, 9)])
                              for _ in range(3000)),
        "not-an-envelope": '{"records":[1,2,3]}',
    }
    order = [good[0], "truncated-base64", "not-gzip", good[1], "truncated-gzip", "not-base64",
             envelope(control()), "gzip-bomb", good[2], "malformed-json", "huge-envelope",
             "wrong-types", "wrong-types-events", "unknown-message-type", "too-many-events",
             "random-bytes", "not-an-envelope", good[3]]
    with open(os.path.join(d, "bad.txt"), "wb") as f, \
            open(os.path.join(d, "bad.txt.expect"), "w") as ex:
        for n, item in enumerate(order, 1):
            if item in bad:
                payload = bad[item]
                ex.write(f"{n} {item}\n")
            else:
                payload = item
            f.write((payload if isinstance(payload, bytes) else payload.encode()) + b"\n")

    evs = events()
    with open(os.path.join(d, "groups.txt"), "w", encoding="utf-8") as f:
        f.write(envelope(inner(evs, "ecs/shop/a1b2", group="/aws/ecs/shop")) + "\n")
        f.write(envelope(inner(evs, "ecs/upstream/1", group="/aws/ecs/upstream")) + "\n")
        f.write(envelope(inner(evs, "x", group="/aws/ecs/nosuch")) + "\n")


KEYS = ("service", "kind", "signature", "severity", "fingerprint", "fields", "template_id",
        "template", "line", "count", "verifications", "status")


def compare(a, b):
    def load(p):
        with open(p, encoding="utf-8") as f:
            return [{k: json.loads(l).get(k) for k in KEYS} for l in f if l.strip()]
    x, y = load(a), load(b)
    if x == y:
        print(f"{len(x)} incidents, equal on {', '.join(KEYS)}")
        return 0
    print(f"{a}: {len(x)} incidents, {b}: {len(y)} incidents; first difference:", file=sys.stderr)
    for i in range(max(len(x), len(y))):
        l = x[i] if i < len(x) else None
        r = y[i] if i < len(y) else None
        if l != r:
            print(f"  #{i + 1}\n  {json.dumps(l)}\n  {json.dumps(r)}", file=sys.stderr)
            break
    return 1


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "compare":
        return compare(sys.argv[2], sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
