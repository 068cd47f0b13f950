#!/usr/bin/env python3
"""Helpers shared by the asr benchmarks (bench/*.sh). Standard library only.

    util.py ports N                         N distinct free TCP ports on 127.0.0.1
    util.py config SRC DST SHOP_PORT UP_PORT
                                            copy of demo/asr.yaml listening on other ports
    util.py status ASR STATE SERVICE FIELD  one field of `asr status --json` for a service
    util.py wait-healthy ASR STATE SECONDS  waits until every service is healthy (bounded)
    util.py wrk FILE PREFIX                 wrk --latency output as shell assignments
    util.py proc PID                        VmRSS kB and utime+stime ticks of a process
    util.py stats LABEL FILE                median/p90/max of the numbers in FILE (one a line)

Every network access goes to 127.0.0.1; every loop is bounded.
"""
import json
import math
import os
import re
import socket
import subprocess
import sys
import time


def die(msg):
    sys.stderr.write("util.py: %s\n" % msg)
    sys.exit(2)


def cmd_ports(n):
    socks = []
    try:
        for _ in range(int(n)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


def cmd_config(src, dst, shop_port, up_port):
    text = open(src).read()
    n_shop = text.count("127.0.0.1:8080")
    n_up = text.count("127.0.0.1:8081")
    if n_shop != 1 or n_up < 2:
        die("%s: expected 127.0.0.1:8080 once and 127.0.0.1:8081 at least twice, found %d/%d"
            % (src, n_shop, n_up))
    text = text.replace("127.0.0.1:8080", "127.0.0.1:%d" % int(shop_port))
    text = text.replace("127.0.0.1:8081", "127.0.0.1:%d" % int(up_port))
    with open(dst, "w") as f:
        f.write(text)


def asr_status(asr, state):
    out = subprocess.run([asr, "status", "--state-dir", state, "--json"], capture_output=True,
                         text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError("asr status failed (%d): %s" % (out.returncode, out.stderr.strip()))
    return json.loads(out.stdout)


def service(status, name):
    for s in status.get("services", []):
        if s.get("name") == name:
            return s
    raise KeyError(name)


def cmd_status(asr, state, name, field):
    v = service(asr_status(asr, state), name)
    for part in field.split("."):
        v = v[int(part)] if isinstance(v, list) else v[part]
    print(json.dumps(v) if isinstance(v, (dict, list)) else v)


def cmd_wait_healthy(asr, state, seconds):
    deadline = time.monotonic() + float(seconds)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            st = asr_status(asr, state)
            svcs = st.get("services", [])
            if svcs and all(s.get("health") == "healthy" and s.get("pid") for s in svcs):
                print("healthy after %.1f s" % (float(seconds) - (deadline - time.monotonic())))
                return
            last = ", ".join("%s=%s" % (s.get("name"), s.get("health")) for s in svcs)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            last = str(e)
        time.sleep(0.25)
    die("services not healthy within %s s (%s)" % (seconds, last))


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(s):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", s)
    if not m:
        die("cannot parse latency %r" % s)
    return float(m.group(1)) * UNITS[m.group(2)]


def cmd_wrk(path, prefix):
    text = open(path).read()
    r = {"rps": None, "requests": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0,
         "non2xx": 0, "p50": None, "p90": None, "p99": None, "max": None}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["connect"], r["read"], r["write"], r["timeout"] = map(int, m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        r["non2xx"] = int(m.group(1))
    for pct in ("50", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, text, re.M)
        if m:
            r["p" + pct] = to_ms(m.group(1))
    m = re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", text, re.M)
    if m:
        r["max"] = to_ms(m.group(1))
    if r["rps"] is None or r["p50"] is None:
        die("%s: not a wrk --latency report" % path)
    for k, v in r.items():
        if isinstance(v, float):
            v = "%.3f" % v if k != "rps" else "%.0f" % v
        print("%s_%s=%s" % (prefix, k, v))


def cmd_proc(pid):
    rss = None
    with open("/proc/%d/status" % int(pid)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    with open("/proc/%d/stat" % int(pid)) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 (state) on; comm may hold spaces
    ticks = int(fields[11]) + int(fields[12])      # utime (14) + stime (15)
    print(rss, ticks)


def percentile(xs, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def cmd_stats(label, path):
    xs = [float(l) for l in open(path) if l.strip()]
    if not xs:
        die("%s: no samples" % path)
    print("%s_n=%d %s_median=%.1f %s_p90=%.1f %s_max=%.1f" % (
        label, len(xs), label, percentile(xs, 50), label, percentile(xs, 90), label, max(xs)))


def main(argv):
    cmds = {"ports": (cmd_ports, 1), "config": (cmd_config, 4), "status": (cmd_status, 4),
            "wait-healthy": (cmd_wait_healthy, 3), "wrk": (cmd_wrk, 2), "proc": (cmd_proc, 1),
            "stats": (cmd_stats, 2)}
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        die("usage: see the docstring of %s" % argv[0])
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
