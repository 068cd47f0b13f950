#!/usr/bin/env python3
"""api_seed.py - a store of N remediated incidents for bench/api.sh (python3 stdlib only).

    api_seed.py extract DB OUT.json
        Takes every resolved incident of a store made by a real `asr demo --keep` run (the shop's
        three patched faults and the crash) with the rows that incident left: its notes, plan,
        remediation, journal, and the events from its first fault line to just after its
        resolution (the incident's own rows and the service's build, test, deploy and slot
        events between them). Writes them as a JSON template, times relative to the incident's
        first fault line. bench/api_seed.json is such a template (see its "source").
    api_seed.py seed DB TEMPLATE.json N [DAYS]
        Appends N incidents to the store DB (a stopped daemon's asr.db): the template's
        incidents in turn, N / len(template) copies of each, their first fault lines spread
        evenly over the DAYS (30) days before now, each with the template's rows renumbered
        (ids, the journal's rem:ID:... keys) and shifted in time. One transaction. Prints what
        it wrote. The audit chain is not copied (its rows are hash-chained; the events table
        holds their mirror rows), nor are knowledge-base documents.

The daemon must not be running on DB. Every loop is bounded by the template's size and N.
"""
import json
import sqlite3
import sys
import time

# Columns copied per table, and which of them are times in ms (shifted) or us.
TABLES = {
    "incidents": ["parent_id", "fingerprint", "service", "kind", "signature", "severity", "source",
                  "slot", "release_commit", "template_id", "template", "line", "fields",
                  "context_before", "context_after", "context_done", "status", "count",
                  "verifications", "first_seen", "last_seen", "received_us", "opened_at",
                  "resolved_at", "resolution"],
    "incident_notes": ["incident_id", "at", "kind", "detail"],
    "plans": ["incident_id", "created_at", "strategy", "confidence", "requires_approval",
              "status", "outcome_at", "mttr_ms", "llm_prompt_tokens", "llm_completion_tokens",
              "body"],
    "remediations": ["plan_id", "incident_id", "service", "fingerprint", "state", "reason",
                     "approved_by", "created_at", "started_at", "finished_at"],
    "journal": ["remediation_id", "step", "action", "phase", "idem_key", "at", "ok", "detail"],
    "events": ["at", "service", "actor", "kind", "detail", "incident_id"],
}
MS = {"first_seen", "last_seen", "opened_at", "resolved_at", "at", "created_at", "outcome_at",
      "started_at", "finished_at"}
US = {"received_us"}


def die(msg):
    sys.stderr.write("api_seed.py: %s\n" % msg)
    sys.exit(2)


def rows(db, sql, args=()):
    cur = db.execute(sql, args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def rel(row, t0):
    """Times of a row made relative to t0 (ms); None stays None."""
    out = {}
    for k, v in row.items():
        if v is not None and k in MS:
            v = v - t0
        elif v is not None and k in US:
            v = v - t0 * 1000
        out[k] = v
    return out


def cmd_extract(path, out):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    incs = rows(db, "SELECT id, %s FROM incidents WHERE status = 'resolved' ORDER BY id"
                % ", ".join(TABLES["incidents"]))
    if not incs:
        die("%s: no resolved incident" % path)
    tpl = []
    for inc in incs:
        iid, t0 = inc.pop("id"), inc["first_seen"]
        t = {"incident": rel(inc, t0)}
        t["notes"] = [rel(r, t0) for r in rows(
            db, "SELECT %s FROM incident_notes WHERE incident_id = ? ORDER BY id"
            % ", ".join(TABLES["incident_notes"]), (iid,))]
        t["plans"] = [rel(r, t0) for r in rows(
            db, "SELECT id, %s FROM plans WHERE incident_id = ? ORDER BY id"
            % ", ".join(TABLES["plans"]), (iid,))]
        t["remediations"] = [rel(r, t0) for r in rows(
            db, "SELECT id, %s FROM remediations WHERE incident_id = ? ORDER BY id"
            % ", ".join(TABLES["remediations"]), (iid,))]
        t["journal"] = []
        for rem in t["remediations"]:
            t["journal"] += [rel(r, t0) for r in rows(
                db, "SELECT %s FROM journal WHERE remediation_id = ? ORDER BY id"
                % ", ".join(TABLES["journal"]), (rem["id"],))]
        # The incident's window: from its first fault line to 30 ms after it was resolved (the
        # old slot's stop comes a few ms after the resolution).
        t["events"] = [rel(r, t0) for r in rows(
            db, "SELECT %s FROM events WHERE at >= ? AND at <= ? AND "
            "(incident_id = ? OR (incident_id IS NULL AND service = ?)) ORDER BY id"
            % ", ".join(TABLES["events"]), (t0, inc["resolved_at"] + 30, iid, inc["service"]))]
        tpl.append(t)
    with open(out, "w") as f:
        json.dump({"source": "asr demo --keep, store %s, extracted %s" % (
            path, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())), "incidents": tpl}, f,
            indent=1, sort_keys=True)
    print("%d incidents, %d events, %d journal rows" % (
        len(tpl), sum(len(t["events"]) for t in tpl), sum(len(t["journal"]) for t in tpl)))


def shifted(row, base):
    out = {}
    for k, v in row.items():
        if v is not None and k in MS:
            v = v + base
        elif v is not None and k in US:
            v = v + base * 1000
        out[k] = v
    return out


def compile_rows(table, rows_):
    """Template rows as value lists in the order of ["id"] + TABLES[table], with the positions
    of their ms and us times (so that a copy is a list copy and a few additions)."""
    cols = ["id"] + TABLES[table]
    ms = [i for i, c in enumerate(cols) if c in MS]
    us = [i for i, c in enumerate(cols) if c in US]
    out = []
    for r in rows_:
        v = [r.get(c) for c in cols]
        out.append((v, [i for i in ms if v[i] is not None], [i for i in us if v[i] is not None],
                    r.get("id"), r))
    return cols, out


def cmd_seed(path, tpl_path, n, days="30"):
    n, days = int(n), float(days)
    tpl = json.load(open(tpl_path))["incidents"]
    if n < 1 or not tpl:
        die("nothing to seed (n=%d, %d template incidents)" % (n, len(tpl)))
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    # A bench fixture, written once with the daemon stopped: no journal, no fsync (the daemon
    # puts WAL back when it opens the store; so does the end of this function).
    db.execute("PRAGMA journal_mode = MEMORY")
    db.execute("PRAGMA synchronous = OFF")
    db.execute("BEGIN IMMEDIATE")
    # Ids are given explicitly, after each table's highest, so that rows can name each other
    # before they are written, and each table is written with one executemany.
    next_id = {t: (db.execute("SELECT coalesce(max(id), 0) FROM %s" % t).fetchone()[0] + 1)
               for t in TABLES}
    out = {t: [] for t in TABLES}
    parts = {"incidents": "incident", "incident_notes": "notes", "plans": "plans",
             "remediations": "remediations", "journal": "journal", "events": "events"}
    cols, comp = {}, []
    for t in tpl:
        c = {}
        for table, key in parts.items():
            rows_ = t[key] if isinstance(t[key], list) else [t[key]]
            cols[table], c[table] = compile_rows(table, rows_)
        comp.append(c)
    ix = {table: {name: i for i, name in enumerate(cols[table])} for table in TABLES}

    def copy(table, item, base):
        v, ms, us, _, _ = item
        v = list(v)
        for i in ms:
            v[i] += base
        for i in us:
            v[i] += base * 1000
        v[0] = next_id[table]
        next_id[table] += 1
        out[table].append(v)
        return v

    now = int(time.time() * 1000)
    span = int(days * 86400 * 1000)
    for k in range(n):
        c = comp[k % len(comp)]
        base = now - span + span * k // n  # first fault line of this copy
        iid = copy("incidents", c["incidents"][0], base)[0]
        for item in c["incident_notes"]:
            copy("incident_notes", item, base)[ix["incident_notes"]["incident_id"]] = iid
        plan_ids, rem_ids = {}, {}
        for item in c["plans"]:
            v = copy("plans", item, base)
            v[ix["plans"]["incident_id"]] = iid
            plan_ids[item[3]] = v[0]
        for item in c["remediations"]:
            v = copy("remediations", item, base)
            v[ix["remediations"]["incident_id"]] = iid
            v[ix["remediations"]["plan_id"]] = plan_ids[item[4]["plan_id"]]
            rem_ids[item[3]] = v[0]
        for item in c["journal"]:
            v = copy("journal", item, base)
            rid = rem_ids[item[4]["remediation_id"]]
            v[ix["journal"]["remediation_id"]] = rid
            key = item[4]["idem_key"].split(":")
            if len(key) >= 2 and key[0] == "rem":
                key[1] = str(rid)
            v[ix["journal"]["idem_key"]] = ":".join(key)
        for item in c["events"]:
            v = copy("events", item, base)
            if v[ix["events"]["incident_id"]] is not None:
                v[ix["events"]["incident_id"]] = iid
    for table, rows_ in out.items():
        db.executemany("INSERT INTO %s (%s) VALUES (%s)" % (
            table, ", ".join(cols[table]), ", ".join("?" * len(cols[table]))), rows_)
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode = WAL")
    db.close()
    print(" ".join("%s=%d" % (k, len(v)) for k, v in out.items()))


def main(argv):
    cmds = {"extract": (cmd_extract, (2, 2)), "seed": (cmd_seed, (3, 4))}
    if len(argv) < 2 or argv[1] not in cmds or not (
            cmds[argv[1]][1][0] <= len(argv) - 2 <= cmds[argv[1]][1][1]):
        die("usage: see the docstring of %s" % argv[0])
    cmds[argv[1]][0](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
