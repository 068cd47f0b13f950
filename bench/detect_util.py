#!/usr/bin/env python3
"""Helpers of the detection benchmarks (bench/detect_latency.sh, bench/detect_flood.sh).
Standard library only; percentiles are nearest rank (util.percentile).

    detect_util.py commit DIR N GAP_US      the SQLite floor: N x (BEGIN; INSERT; COMMIT) on a
                                            fresh WAL database in DIR, synchronous=FULL, GAP_US
                                            apart; prints sql_* shell assignments (ms)
    detect_util.py floor FILE N             the pipe floor from `detect_svc read` output (KEY NS
                                            per line): pipe_* assignments (ms)
    detect_util.py latency ASRLOG DB N OUT  asr's detection latency: for each of the N keys,
                                            committed_us (daemon log) - t_ns/1000 (the write time
                                            in the line); checks every key has exactly one
                                            incident with count 1; asr_* assignments (ms), the
                                            per-fault figures to OUT
    detect_util.py counts DB SIG            "KEY COUNT" per incident of signature SIG, and
                                            "incidents N" (the key is the fingerprint's last
                                            dedupe field value)
    detect_util.py wait-stable DB SIG EXPECT SECS
                                            waits (bounded by SECS) until the sum of counts of
                                            SIG equals EXPECT, or has not moved for 2 s; prints
                                            the sum and the seconds waited
    detect_util.py flood-check WRITTEN BEFORE AFTER
                                            compares per-key counts: AFTER - BEFORE must equal
                                            what the writer wrote (WRITTEN, detect_svc flood
                                            output); prints a table and check_* assignments
    detect_util.py sample OUT STOP SECS PID...
                                            every second until the file STOP exists (at most SECS
                                            s): "T PID RSS_KB TICKS ..." per line
    detect_util.py rss-report FILE PID WARM print rss_* assignments for PID from a sample file:
                                            at WARM s, at the end, growth %, max
"""
import os
import re
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from util import die, percentile  # noqa: E402  (the bench helpers next to this file)


def stats(prefix, xs, unit_div=1.0):
    """Shell assignments PREFIX_n, _p50, _p90, _p99, _max, _min (values divided by unit_div)."""
    if not xs:
        die("%s: no samples" % prefix)
    v = [x / unit_div for x in xs]
    out = {"n": len(v), "min": min(v), "p50": percentile(v, 50), "p90": percentile(v, 90),
           "p99": percentile(v, 99), "max": max(v)}
    for k, x in out.items():
        print("%s_%s=%s" % (prefix, k, x if k == "n" else "%.3f" % x))


def cmd_commit(d, n, gap_us):
    path = os.path.join(d, "commit-floor.db")
    db = sqlite3.connect(path, isolation_level=None)
    if db.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
        die("WAL mode refused")
    db.execute("PRAGMA synchronous=FULL")
    # A row of the size and shape of an incident row (fingerprint, line, fields, context).
    db.execute("CREATE TABLE incidents (id INTEGER PRIMARY KEY, fingerprint TEXT, service TEXT,"
               " signature TEXT, line TEXT, fields TEXT, context_before TEXT, received_us INTEGER,"
               " opened_at INTEGER)")
    db.execute("CREATE INDEX by_fp ON incidents (fingerprint, id)")
    xs = []
    for i in range(int(n)):
        line = "BENCH_FAULT key=%d t_ns=%d" % (i, time.time_ns())
        t0 = time.perf_counter_ns()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO incidents (fingerprint, service, signature, line, fields,"
                   " context_before, received_us, opened_at) VALUES (?,?,?,?,?,?,?,?)",
                   ("bench:BENCH_FAULT:key=%d" % i, "bench", "BENCH_FAULT", line,
                    '{"key":"%d","t":"%d"}' % (i, time.time_ns()), '["%s"]' % line,
                    time.time_ns() // 1000, time.time_ns() // 1000000))
        db.execute("COMMIT")
        xs.append(time.perf_counter_ns() - t0)
        time.sleep(int(gap_us) / 1e6)
    db.close()
    stats("sql", xs, 1e6)


def cmd_floor(path, n):
    xs = [int(l.split()[1]) for l in open(path) if l.strip()]
    if len(xs) != int(n):
        print("pipe_missing=%d" % (int(n) - len(xs)))
    stats("pipe", xs, 1e6)


LOG_RE = re.compile(r"incident (\d+) opened: .*?fingerprint=(\S+) received_us=(\d+) "
                    r"committed_us=(\d+)")


def cmd_latency(asrlog, dbpath, n, out):
    n = int(n)
    logged = {}
    for line in open(asrlog, errors="replace"):
        m = LOG_RE.search(line)
        if m and ":BENCH_FAULT:key=" in m.group(2):
            key = int(m.group(2).rsplit("=", 1)[1])
            logged[key] = (int(m.group(1)), int(m.group(3)), int(m.group(4)))
    db = sqlite3.connect("file:%s?mode=ro" % dbpath, uri=True)
    rows = db.execute("SELECT id, fingerprint, count, line, received_us, status FROM incidents"
                      " WHERE signature = 'BENCH_FAULT'").fetchall()
    per_key = {}
    for iid, fp, count, line, rec, status in rows:
        key = int(fp.rsplit("=", 1)[1])
        per_key.setdefault(key, []).append((iid, count, line, rec, status))
    missing = [k for k in range(n) if k not in per_key]
    dup = [k for k, v in per_key.items() if len(v) != 1]
    badcount = [k for k, v in per_key.items() if any(r[1] != 1 for r in v)]
    extra = [k for k in per_key if not 0 <= k < n]
    nolog = [k for k in range(n) if k in per_key and k not in logged]
    total, pipe, commit = [], [], []
    with open(out, "w") as f:
        f.write("key incident t_us received_us committed_us total_us read_us commit_us\n")
        for k in range(n):
            if k not in per_key or k not in logged:
                continue
            iid, _, line, rec, _ = per_key[k][0]
            t_us = int(re.search(r"t_ns=(\d+)", line).group(1)) // 1000
            lid, lrec, com = logged[k]
            if lid != iid or lrec != rec:
                die("key %d: daemon log says incident %d received %d, store says %d received %d"
                    % (k, lid, lrec, iid, rec))
            total.append(com - t_us)
            pipe.append(rec - t_us)
            commit.append(com - rec)
            f.write("%d %d %d %d %d %d %d %d\n" % (k, iid, t_us, rec, com, com - t_us, rec - t_us,
                                                   com - rec))
    print("asr_incidents=%d asr_missing=%d asr_dup=%d asr_badcount=%d asr_extra=%d asr_nolog=%d"
          % (len(rows), len(missing), len(dup), len(badcount), len(extra), len(nolog)))
    if missing:
        print("asr_missing_keys='%s'" % " ".join(map(str, missing[:20])))
    stats("asr", total, 1e3)
    stats("asr_read", pipe, 1e3)
    stats("asr_commit", commit, 1e3)
    over = sum(1 for x in total if x > 5000)
    print("asr_over5=%d asr_over1=%d" % (over, sum(1 for x in total if x > 1000)))


def store_counts(dbpath, sig):
    db = sqlite3.connect("file:%s?mode=ro" % dbpath, uri=True, timeout=5)
    rows = db.execute("SELECT fingerprint, count FROM incidents WHERE signature = ?",
                      (sig,)).fetchall()
    db.close()
    return rows


def cmd_counts(dbpath, sig):
    rows = store_counts(dbpath, sig)
    for fp, count in sorted(rows):
        print("%s %d" % (fp.rsplit("=", 1)[1], count))
    print("incidents %d" % len(rows))


def cmd_wait_stable(dbpath, sig, expect, secs):
    t0 = time.monotonic()
    last, since = None, t0
    while True:
        s = sum(c for _, c in store_counts(dbpath, sig))
        now = time.monotonic()
        if s != last:
            last, since = s, now
        if s == int(expect) or now - since >= 2.0 or now - t0 >= float(secs):
            print("%d %.2f" % (s, now - t0))
            return
        time.sleep(0.1)


def read_counts(path):
    d = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            d[parts[0]] = float(parts[1]) if parts[0] == "late_ms" else int(parts[1])
    return d


def cmd_flood_check(written, before, after):
    w, b, a = read_counts(written), read_counts(before), read_counts(after)
    keys = sorted(k for k in w if re.fullmatch(r"k\d+", k))
    bad = 0
    print("%-6s %10s %10s %10s" % ("key", "written", "counted", "diff"))
    for k in keys:
        got = a.get(k, 0) - b.get(k, 0)
        bad += got != w[k]
        print("%-6s %10d %10d %+10d" % (k, w[k], got, got - w[k]))
    extra = [k for k in a if k not in keys and k != "incidents"]
    sw = sum(w[k] for k in keys)
    sc = sum(a.get(k, 0) - b.get(k, 0) for k in keys)
    print("%-6s %10d %10d %+10d" % ("sum", sw, sc, sc - sw))
    print("check_incidents=%d check_badkeys=%d check_extra=%d check_written=%d check_counted=%d "
          "check_markers=%d check_noise=%d check_late_ms=%.1f"
          % (a.get("incidents", 0), bad, len(extra), sw, sc, w.get("markers", 0),
             w.get("noise", 0), w.get("late_ms", 0.0)), file=sys.stderr)


def cmd_sample(out, stop, secs, *pids):
    t0 = time.monotonic()
    with open(out, "a") as f:
        i = 0
        while not os.path.exists(stop) and time.monotonic() - t0 < float(secs):
            i += 1
            row = ["%.2f" % (time.monotonic() - t0)]
            for p in pids:
                try:
                    with open("/proc/%d/status" % int(p)) as s:
                        rss = next(int(l.split()[1]) for l in s if l.startswith("VmRSS:"))
                    with open("/proc/%d/stat" % int(p)) as s:
                        st = s.read()
                    fl = st[st.rindex(")") + 2:].split()
                    row += [p, str(rss), str(int(fl[11]) + int(fl[12]))]
                except (OSError, StopIteration):
                    row += [p, "0", "0"]
            f.write(" ".join(row) + "\n")
            f.flush()
            # on the second boundary from the start, so the samples do not drift
            time.sleep(max(0.0, t0 + i - time.monotonic()))


def cmd_rss_report(path, pid, warm):
    pts = []
    for line in open(path):
        parts = line.split()
        for j in range(1, len(parts), 3):
            if parts[j] == pid and parts[j + 1] != "0":
                pts.append((float(parts[0]), int(parts[j + 1])))
    if not pts:
        die("no samples of pid %s in %s" % (pid, path))
    warm_rss = next((r for t, r in pts if t >= float(warm)), pts[0][1])
    end = pts[-1][1]
    print("rss_warm=%d rss_end=%d rss_max=%d rss_growth=%.1f rss_n=%d"
          % (warm_rss, end, max(r for _, r in pts), 100.0 * (end - warm_rss) / warm_rss, len(pts)))


def main(argv):
    cmds = {"commit": (cmd_commit, 3), "floor": (cmd_floor, 2), "latency": (cmd_latency, 4),
            "counts": (cmd_counts, 2), "wait-stable": (cmd_wait_stable, 4),
            "flood-check": (cmd_flood_check, 3), "rss-report": (cmd_rss_report, 3)}
    if len(argv) >= 5 and argv[1] == "sample":
        return cmd_sample(*argv[2:])
    if len(argv) < 2 or argv[1] not in cmds or len(argv) - 2 != cmds[argv[1]][1]:
        die("usage: see the docstring of %s" % argv[0])
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
