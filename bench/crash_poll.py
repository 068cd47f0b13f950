#!/usr/bin/env python3
"""Crash-recovery timings for bench/crash.sh. Standard library only; 127.0.0.1 only.

    crash_poll.py floor N SHOP PORT DIR
        N times: exec SHOP on PORT (cwd DIR), time exec -> first HTTP 200 on GET /health,
        SIGKILL it. One untimed start first (creates the database).
    crash_poll.py asr N ASR STATE PROXY_PORT
        N times: SIGKILL the active shop slot (pid from `asr status --json`), time kill -> first
        200 on GET /health through asr's proxy on PROXY_PORT; then let the new slot settle.
    crash_poll.py supervisord N CONF PORT
        N times: SIGKILL shop (pid from `supervisorctl -c CONF pid shop`), time kill -> first 200
        on GET /health on PORT; then wait until supervisord reports it RUNNING.

Prints one line per kill on stderr and the milliseconds, one a line, on stdout. The poller opens
a fresh connection per attempt in a tight loop, 2 s socket timeout, at most 30 s per kill.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

PER_KILL_S = 30.0
SETTLE_S = 1.5       # between a recovery and the next kill: the slot is healthy and stable
REQ = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def get_status(port):
    """Status code of GET /health on a fresh connection, or None on any socket error."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            s.sendall(REQ)
            buf = b""
            while b"\r\n" not in buf and len(buf) < 256:
                chunk = s.recv(256)
                if not chunk:
                    break
                buf += chunk
        parts = buf.split(b" ", 2)
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/"):
            return int(parts[1])
    except (OSError, ValueError):
        pass
    return None


def first_200(port, t0):
    """Polls until a 200; returns (ms since t0, attempts, last non-200 status)."""
    attempts = 0
    last = None
    while True:
        attempts += 1
        st = get_status(port)
        now = time.monotonic()
        if st == 200:
            return (now - t0) * 1000.0, attempts, last
        last = st if st is not None else last
        if now - t0 > PER_KILL_S:
            raise SystemExit("no 200 on port %d within %.0f s" % (port, PER_KILL_S))


def report(i, ms, attempts, extra=""):
    sys.stderr.write("  kill %2d: %8.1f ms (%d attempt%s)%s\n"
                     % (i, ms, attempts, "" if attempts == 1 else "s", extra))
    print("%.3f" % ms, flush=True)


def wait_until(pred, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise SystemExit("timed out after %.0f s waiting for %s" % (seconds, what))


def floor(n, shop, port, workdir):
    argv = [shop, "--port", str(port), "--db", os.path.join(workdir, "shop.db"),
            "--upstream", "http://127.0.0.1:1/slow"]
    for i in range(int(n) + 1):
        t0 = time.monotonic()
        p = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        try:
            ms, attempts, _ = first_200(port, t0)
        finally:
            p.kill()
            p.wait(timeout=10)
        if i > 0:
            report(i, ms, attempts)
        time.sleep(0.2)


def asr_shop(asr, state):
    out = subprocess.run([asr, "status", "--state-dir", state, "--json"], capture_output=True,
                         text=True, timeout=10, check=True)
    for s in json.loads(out.stdout)["services"]:
        if s["name"] == "shop":
            return s
    raise SystemExit("no shop service in asr status")


def asr_kills(n, asr, state, port):
    port = int(port)
    for i in range(1, int(n) + 1):
        s = asr_shop(asr, state)
        old = s["pid"]
        retries0 = s.get("proxy", {}).get("retries", 0)
        if s.get("health") != "healthy" or not old:
            raise SystemExit("shop not healthy before kill %d: %s" % (i, s.get("health")))
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)
        ms, attempts, last = first_200(port, t0)
        time.sleep(SETTLE_S)
        wait_until(lambda: (lambda x: x["pid"] not in (0, None, old)
                            and x.get("health") == "healthy")(asr_shop(asr, state)),
                   10, "asr to report a healthy new shop slot")
        s = asr_shop(asr, state)
        retries = s.get("proxy", {}).get("retries", 0) - retries0
        report(i, ms, attempts, " pid %d -> %d, restarts %s, proxy retries %d%s" % (
            old, s["pid"], s.get("restarts"), retries,
            "" if last is None else ", saw %s first" % last))


def sv_pid(conf):
    out = subprocess.run(["supervisorctl", "-c", conf, "pid", "shop"], capture_output=True,
                         text=True, timeout=10)
    try:
        return int(out.stdout.strip())
    except ValueError:
        return 0


def sv_running(conf):
    out = subprocess.run(["supervisorctl", "-c", conf, "status", "shop"], capture_output=True,
                         text=True, timeout=10)
    return " RUNNING " in out.stdout


def supervisord_kills(n, conf, port):
    port = int(port)
    wait_until(lambda: sv_running(conf) and get_status(port) == 200, 15,
               "supervisord's shop to be RUNNING")
    for i in range(1, int(n) + 1):
        old = sv_pid(conf)
        if old <= 0:
            raise SystemExit("supervisord reports no shop pid before kill %d" % i)
        t0 = time.monotonic()
        os.kill(old, signal.SIGKILL)
        ms, attempts, last = first_200(port, t0)
        time.sleep(SETTLE_S)
        wait_until(lambda: sv_running(conf) and sv_pid(conf) not in (0, old), 10,
                   "supervisord to report shop RUNNING again")
        report(i, ms, attempts, " pid %d -> %d" % (old, sv_pid(conf)))


def main(argv):
    modes = {"floor": (floor, 4), "asr": (asr_kills, 4), "supervisord": (supervisord_kills, 3)}
    if len(argv) < 2 or argv[1] not in modes or len(argv) - 2 != modes[argv[1]][1]:
        raise SystemExit(__doc__)
    modes[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
