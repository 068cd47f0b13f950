#!/usr/bin/env python3
"""crash_check.py - the verdict of the crash-safety test (test_crash_safety.sh, issue 5).

The test kills `asr run` with SIGKILL during a demo remediation, restarts it on the same state
dir and repository, and asks this script, with the daemon stopped again:

    crash_check.py phase --state DIR --repo DIR
        where the remediation was when asr was killed, read from the store and git as the kill
        left them: detect, plan, gate, start, commit, build, test, cutover, verify, revert,
        rollback, finish or done (one word on stdout).
    crash_check.py kill --pid PID --url URL --delay-ms N [--log FILE --from OFFSET --after RE]
        POSTs URL (the fault), then SIGKILLs PID N ms later, or N ms after the first line of
        FILE from OFFSET on that matches RE; prints when, in ms after the POST.
    crash_check.py final --state DIR
        exit 0 when every incident opened (parent_id NULL) has a remediation in a final state
        and no remediation is in flight; else exit 1 and say what is missing.
    crash_check.py check --state DIR --repo DIR --base SHA --base-deploy N --status FILE
                         --served SHA --health CODE [--replay CODE] --asr BIN
                         --trial N --kill-ms N --phase WORD --out FILE
                         [--webhook-log FILE --webhook-from LINE] [--expect failed]
        checks the acceptance item "Crash safety" on one trial and appends its figures to FILE
        (one JSON object per line); prints one line for the trial and one per violation, and
        exits 1 on any violation:
          - every incident opened has a remediation in a final state; none running;
          - git: on refs/heads/asr/incident-*, at most one commit per plan that is not a revert
            (Asr-Plan trailer) and at most one revert of it (Asr-Reverts); each commit names its
            branch's incident; `git fsck --strict` clean; no *.lock left under .git;
          - consistency: a succeeded remediation's commit is on its branch, not reverted, and
            is what the service runs (asr status and GET /version through the proxy); the
            incident is resolved and the plan verified. A remediation that did not succeed has
            its commit (if any) reverted and not running, its release marked bad if it was ever
            deployed, and its incident open; a failed one has its plan failed;
          - deploys: no release deployed or rolled back to (outcome succeeded) twice by the same
            remediation (the deployments attributed to a remediation by its running window);
          - the journal: no (idem_key, phase) twice, no action's result without its
            intent;
          - webhooks (when --webhook-log is given, its lines from LINE on): every call has an
            Idempotency-Key, and no key is received twice;
          - /health through the proxy answered 200 after the restart; `asr audit verify` passes;
          - with --expect failed (the undo path: a patch deployed that does not remove the fault),
            also: there is a remediation and every one failed; each has exactly one commit of
            its plan, reverted; that commit's release exists and is bad; the service runs the
            original release, --base (asr status and GET /version through the proxy); and with
            --webhook-log, its end was announced (a rem:<id>:notify:* row in the journal).
    crash_check.py summary --results FILE
        the trials' figures: final states, phases, duplicates; exit 1 if any trial failed.
"""
import argparse
import collections
import json
import os
import re
import sqlite3
import subprocess
import sys

FINAL = {"succeeded", "failed", "escalated", "refused", "rejected", "shadowed"}
TRAILER = re.compile(r"^([A-Za-z][A-Za-z0-9-]*): (.*)$")


def connect(state):
    path = os.path.join(state, "asr.db")
    if not os.path.exists(path):
        sys.exit(f"crash_check: {path}: no such file")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    return con


def git(repo, *args, check=True):
    p = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {p.stderr.strip()}")
    return p


def trailers(message):
    """The trailers of a commit message: its last paragraph's `Key: value` lines."""
    paras = [p for p in message.strip().split("\n\n") if p.strip()]
    out = collections.defaultdict(list)
    if paras:
        for line in paras[-1].splitlines():
            m = TRAILER.match(line.strip())
            if m:
                out[m.group(1)].append(m.group(2).strip())
    return out


def read_branches(repo, base):
    """{incident id: [{sha, plan, reverts, incident}, ...]} for refs/heads/asr/incident-*."""
    branches = {}
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/asr/").stdout.split()
    for ref in refs:
        m = re.fullmatch(r"refs/heads/asr/incident-(\d+)", ref)
        if not m:
            continue
        log = git(repo, "log", "--format=%H%x00%B%x1e", ref, "^" + base).stdout
        commits = []
        for rec in log.split("\x1e"):
            rec = rec.strip("\n")
            if not rec:
                continue
            sha, _, body = rec.partition("\x00")
            t = trailers(body)
            commits.append({
                "sha": sha.strip(),
                "plan": (t.get("Asr-Plan") or [None])[0],
                "reverts": (t.get("Asr-Reverts") or [None])[0],
                "incident": (t.get("Asr-Incident") or [None])[0],
            })
        branches[int(m.group(1))] = commits
    return branches


def plan_has_patch(body):
    try:
        steps = json.loads(body).get("steps") or []
    except (ValueError, AttributeError):
        return False
    return any(isinstance(s, dict) and s.get("action") == "patch" for s in steps)


# ---- phase ------------------------------------------------------------------------------------

def phase(args):
    con = connect(args.state)
    incs = con.execute("SELECT id FROM incidents WHERE parent_id IS NULL ORDER BY id").fetchall()
    if not incs:
        return "detect"
    inc = incs[0]["id"]
    plan = con.execute("SELECT id FROM plans WHERE incident_id=? ORDER BY id DESC LIMIT 1",
                       (inc,)).fetchone()
    if plan is None:
        return "plan"
    rem = con.execute("SELECT * FROM remediations WHERE incident_id=? ORDER BY id DESC LIMIT 1",
                      (inc,)).fetchone()
    if rem is None:
        return "gate"
    if rem["state"] in FINAL:
        return "done"
    rows = con.execute("SELECT idem_key, phase, ok FROM journal WHERE remediation_id=? ORDER BY id",
                       (rem["id"],)).fetchall()
    if not rows:
        return "start"
    last = rows[-1]
    what = last["idem_key"].split(":")[2] if last["idem_key"].count(":") >= 3 else "step"
    if (what == "step" and last["phase"] == "intent") or what == "commit":
        base = args.base or git(args.repo, "rev-parse", "HEAD").stdout.strip()
        commit = None
        for c in read_branches(args.repo, base).get(inc, []):
            if c["plan"] == str(rem["plan_id"]) and c["reverts"] is None:
                commit = c["sha"]
        if commit is None:
            return "commit"
        rel = con.execute("SELECT * FROM releases WHERE commit_sha=? AND service=?",
                          (commit, rem["service"])).fetchone()
        if rel is None or (rel["state"] == "building" and rel["build_status"] == -1):
            return "build"
        if rel["state"] == "building":
            return "test"
        return "cutover"
    if what == "step":
        return "verify" if last["ok"] == 1 else "revert"
    if what == "verify":
        if last["phase"] == "intent":
            return "verify"
        return "finish" if last["ok"] == 1 else "revert"
    if what == "revert":
        return "revert" if last["phase"] == "intent" else "rollback"
    if what == "rollback":
        return "rollback" if last["phase"] == "intent" else "finish"
    return what


# ---- kill -------------------------------------------------------------------------------------

def kill(args):
    """Sends the fault (POST --url), then SIGKILLs --pid --delay-ms after it, or --delay-ms after
    a line of --log (followed from offset --from) matching --after. Prints the kill time in ms
    after the fault was sent, and a note if the line never came."""
    import signal
    import threading
    import time
    import urllib.request

    now_ms = lambda: time.time() * 1000
    f = open(args.log, "rb") if args.after else None
    if f is not None:
        f.seek(args.start)

    def fault():
        try:
            urllib.request.urlopen(urllib.request.Request(args.url, method="POST"), timeout=10)
        except Exception:  # 500 is the fault itself; a reset is the kill
            pass

    t0 = now_ms()
    threading.Thread(target=fault, daemon=True).start()
    note = ""
    if f is not None:
        deadline = t0 + args.timeout_s * 1000
        pat = re.compile(args.after)
        buf = b""
        seen = False
        while not seen and now_ms() < deadline:
            chunk = f.read()
            if not chunk:
                time.sleep(0.002)
                continue
            buf += chunk
            *lines, buf = buf.split(b"\n")
            seen = any(pat.search(l.decode("utf-8", "replace")) for l in lines)
        note = "" if seen else " (its line never came)"
        time.sleep(args.delay_ms / 1000)
    else:
        time.sleep(max(0, t0 + args.delay_ms - now_ms()) / 1000)
    try:
        os.kill(args.pid, signal.SIGKILL)
    except ProcessLookupError:
        note += " (asr was already gone)"
    print(f"{int(now_ms() - t0)}{note}")
    return 0


# ---- final ------------------------------------------------------------------------------------

def not_final(con):
    """What keeps the trial from being over: a list of strings, empty when it is."""
    missing = []
    for inc in con.execute("SELECT id FROM incidents WHERE parent_id IS NULL ORDER BY id"):
        rem = con.execute("SELECT id, state FROM remediations WHERE incident_id=? "
                          "ORDER BY id DESC LIMIT 1", (inc["id"],)).fetchone()
        if rem is None:
            plans = con.execute("SELECT count(*) FROM plans WHERE incident_id=?",
                                (inc["id"],)).fetchone()[0]
            missing.append(f"incident {inc['id']} has no remediation ({plans} plan(s))")
        elif rem["state"] not in FINAL:
            missing.append(f"incident {inc['id']}: remediation {rem['id']} is {rem['state']}")
    for rem in con.execute("SELECT id, incident_id, state FROM remediations WHERE state IN "
                           "('running', 'awaiting_approval')"):
        s = f"incident {rem['incident_id']}: remediation {rem['id']} is {rem['state']}"
        if s not in missing:
            missing.append(s)
    return missing


def final(args):
    missing = not_final(connect(args.state))
    if missing:
        print("; ".join(missing))
        return 1
    return 0


# ---- check ------------------------------------------------------------------------------------

def expect_failed(con, rem, who, commit, runs, served, base, short, notify):
    """--expect failed, for a final remediation that did not succeed: its patch was committed
    (reverted: the caller checks it), its release marked bad, the service is back on the
    original release, and (notify: a webhook is configured) its end was announced, at least
    attempted (a rem:<id>:notify:* row: sent at most once, so a kill may lose the send itself).
    A list of violations."""
    bad = []
    if notify and con.execute("SELECT count(*) FROM journal WHERE idem_key LIKE ?",
                              (f"rem:{rem['id']}:notify:%",)).fetchone()[0] == 0:
        bad.append(f"{who}: its end was never announced (no rem:{rem['id']}:notify:* row in the "
                   f"journal)")
    if commit is None:
        bad.append(f"{who}: no commit of plan {rem['plan_id']} on "
                   f"asr/incident-{rem['incident_id']} (expected one, reverted)")
    else:
        rel = con.execute("SELECT id, state FROM releases WHERE service=? AND commit_sha=?",
                          (rem["service"], commit)).fetchone()
        if rel is None:
            bad.append(f"{who}: no release of its commit {short(commit)} (expected one, bad)")
        elif rel["state"] != "bad":
            bad.append(f"{who}: its commit's release {rel['id']} is {rel['state']}, not bad")
    if runs != base:
        bad.append(f"{who}: asr status says {rem['service']} runs {short(runs)}, not the "
                   f"original release {short(base)}")
    if rem["service"] == "shop" and served != base:
        bad.append(f"{who}: GET /version through the proxy serves {short(served)}, not the "
                   f"original release {short(base)}")
    return bad


def check(args):
    bad = []
    con = connect(args.state)
    short = lambda s: (s or "-")[:12]

    # 1. Every incident reaches a final state.
    bad += [f"final state: {m}" for m in not_final(con)]

    # 2. git: no duplicated commit or revert, fsck clean, no lock left.
    branches = read_branches(args.repo, args.base)
    n_commits = n_reverts = 0
    for inc, commits in sorted(branches.items()):
        per_plan = collections.defaultdict(list)
        reverts = collections.defaultdict(list)
        for c in commits:
            if c["incident"] != str(inc):
                bad.append(f"git: commit {short(c['sha'])} on asr/incident-{inc} says "
                           f"Asr-Incident {c['incident']}")
            if c["reverts"] is not None:
                reverts[c["reverts"]].append(c["sha"])
                n_reverts += 1
            else:
                per_plan[c["plan"]].append(c["sha"])
                n_commits += 1
        for plan, shas in per_plan.items():
            if len(shas) > 1:
                bad.append(f"git: duplicated commit: plan {plan} has {len(shas)} commits on "
                           f"asr/incident-{inc}: {' '.join(short(s) for s in shas)}")
        for sha, shas in reverts.items():
            if len(shas) > 1:
                bad.append(f"git: duplicated revert: {short(sha)} is reverted {len(shas)} times "
                           f"on asr/incident-{inc}: {' '.join(short(s) for s in shas)}")
    fsck = git(args.repo, "fsck", "--strict", "--no-dangling", check=False)
    if fsck.returncode != 0:
        bad.append(f"git fsck --strict: exit {fsck.returncode}: "
                   f"{(fsck.stdout + fsck.stderr).strip()[:400]}")
    gitdir = git(args.repo, "rev-parse", "--absolute-git-dir").stdout.strip()
    locks = [os.path.relpath(os.path.join(d, f), gitdir)
             for d, _, files in os.walk(gitdir) for f in files if f.endswith(".lock")]
    if locks:
        bad.append(f"git: lock file(s) left: {' '.join(sorted(locks))}")

    # 3. Consistency of each remediation with git and with what the service runs.
    status = json.load(open(args.status))
    active = {s["name"]: s.get("commit") for s in status.get("services", [])}
    states = collections.Counter()
    rems = con.execute("SELECT r.*, p.body AS plan_body, p.status AS plan_status, "
                       "i.status AS inc_status FROM remediations r JOIN plans p ON p.id = r.plan_id "
                       "JOIN incidents i ON i.id = r.incident_id ORDER BY r.id").fetchall()
    for rem in rems:
        states[rem["state"]] += 1
        who = f"remediation {rem['id']} ({rem['state']})"
        commits = branches.get(rem["incident_id"], [])
        mine = [c["sha"] for c in commits
                if c["plan"] == str(rem["plan_id"]) and c["reverts"] is None]
        commit = mine[0] if mine else None
        reverted = commit is not None and any(c["reverts"] == commit for c in commits)
        runs = active.get(rem["service"])
        served = args.served if rem["service"] == "shop" else runs
        if rem["state"] == "succeeded":
            if plan_has_patch(rem["plan_body"]):
                if commit is None:
                    bad.append(f"{who}: no commit of plan {rem['plan_id']} on "
                               f"asr/incident-{rem['incident_id']}")
                else:
                    if reverted:
                        bad.append(f"{who}: its commit {short(commit)} is reverted")
                    if runs != commit:
                        bad.append(f"{who}: asr status says {rem['service']} runs {short(runs)}, "
                                   f"not the commit {short(commit)}")
                    if served != commit:
                        bad.append(f"{who}: GET /version through the proxy serves {short(served)}, "
                                   f"not the commit {short(commit)}")
                if args.replay not in (None, "", "200"):
                    bad.append(f"{who}: the fault's request still answers {args.replay}")
            if rem["inc_status"] != "resolved":
                bad.append(f"{who}: incident {rem['incident_id']} is {rem['inc_status']}, "
                           f"not resolved")
            if rem["plan_status"] != "verified":
                bad.append(f"{who}: plan {rem['plan_id']} is {rem['plan_status']}, not verified")
        elif rem["state"] in FINAL:
            if args.expect == "failed":
                bad += expect_failed(con, rem, who, commit, runs, served, args.base, short,
                                     args.webhook_log is not None)
            if commit is not None:
                if not reverted:
                    bad.append(f"{who}: its commit {short(commit)} is not reverted")
                if runs == commit:
                    bad.append(f"{who}: asr status says {rem['service']} still runs its commit "
                               f"{short(commit)}")
                if served == commit:
                    bad.append(f"{who}: GET /version through the proxy still serves its commit "
                               f"{short(commit)}")
                rel = con.execute("SELECT id, state FROM releases WHERE service=? AND "
                                  "commit_sha=?", (rem["service"], commit)).fetchone()
                if rel is not None:
                    deployed = con.execute(
                        "SELECT count(*) FROM deployments WHERE to_release=? AND kind='deploy' "
                        "AND outcome='succeeded'", (rel["id"],)).fetchone()[0]
                    if deployed and rel["state"] != "bad":
                        bad.append(f"{who}: its commit's release {rel['id']} was deployed and is "
                                   f"{rel['state']}, not bad (a later rollback could pick it)")
            if rem["inc_status"] != "open":
                bad.append(f"{who}: incident {rem['incident_id']} is {rem['inc_status']}, not "
                           f"open for a person")
            if rem["state"] == "failed" and rem["plan_status"] != "failed":
                bad.append(f"{who}: plan {rem['plan_id']} is {rem['plan_status']}, not failed "
                           f"(the failure was not learned)")

    if args.expect == "failed":
        if not rems:
            bad.append("expected a failed remediation, found none")
        for rem in rems:
            if rem["state"] != "failed":
                bad.append(f"remediation {rem['id']} is {rem['state']}, expected failed")

    # 4. Deploys: none twice by the same remediation.
    deps = con.execute("SELECT * FROM deployments WHERE id > ? ORDER BY id",
                       (args.base_deploy,)).fetchall()
    per = collections.Counter()
    n_deploys = n_rollbacks = n_starts = 0
    for d in deps:
        if d["kind"] == "start":
            n_starts += 1
            continue
        if d["outcome"] != "succeeded":
            continue
        n_deploys += d["kind"] == "deploy"
        n_rollbacks += d["kind"] == "rollback"
        owner = None
        for rem in rems:
            end = rem["finished_at"] or 1 << 62
            if (rem["service"] == d["service"] and rem["started_at"] is not None
                    and rem["started_at"] <= d["started_at"] <= end):
                owner = rem["id"]
        per[(owner, d["service"], d["to_release"])] += 1
    for (owner, svc, rel), n in per.items():
        if n > 1:
            who = f"remediation {owner}" if owner is not None else "no remediation"
            bad.append(f"deploys: {svc} release {rel} deployed {n} times by {who}")

    # 5. The journal: no key twice, no result without its intent.
    for r in con.execute("SELECT idem_key, phase, count(*) AS n FROM journal "
                         "GROUP BY idem_key, phase HAVING n > 1"):
        bad.append(f"journal: {r['idem_key']} {r['phase']} written {r['n']} times")
    # Only for the actions (the commit, resume and outbound rows are records, written as results),
    # and a key's ":r<n>" (the run resumed n times) aside: a resumed run may close the intent of
    # the run that was killed.
    base = lambda k: re.sub(r":r\d+$", "", k)
    rows = con.execute("SELECT remediation_id, idem_key, phase FROM journal").fetchall()
    intents = {(r["remediation_id"], base(r["idem_key"])) for r in rows if r["phase"] == "intent"}
    for r in rows:
        if (r["phase"] == "result" and r["idem_key"].split(":")[2:3] in
                (["step"], ["verify"], ["revert"], ["rollback"])
                and (r["remediation_id"], base(r["idem_key"])) not in intents):
            bad.append(f"journal: {r['idem_key']} has a result without an intent")

    # 6. Webhooks: no Idempotency-Key twice (the receiver's record, one JSON object a line).
    n_hooks = 0
    if args.webhook_log:
        keys = collections.Counter()
        if os.path.exists(args.webhook_log):
            for line in open(args.webhook_log).readlines()[args.webhook_from:]:
                if line.strip():
                    req = json.loads(line)
                    hdrs = {k.lower(): v for k, v in (req.get("headers") or {}).items()}
                    keys[hdrs.get("idempotency-key")] += 1
                    n_hooks += 1
        if keys.get(None):
            bad.append(f"webhooks: {keys[None]} call(s) without an Idempotency-Key")
        for k, n in keys.items():
            if k is not None and n > 1:
                bad.append(f"webhooks: Idempotency-Key {k} received {n} times")

    # 7. The service, and the audit chain.
    if args.health != "200":
        bad.append(f"service: GET /health through the proxy answered {args.health} after the "
                   f"restart")
    audit = subprocess.run([args.asr, "audit", "verify", "--state-dir", args.state],
                           capture_output=True, text=True)
    if audit.returncode != 0:
        bad.append(f"asr audit verify: exit {audit.returncode}: "
                   f"{(audit.stdout + audit.stderr).strip()[:300]}")

    dup = sum(1 for b in bad if b.startswith(("git: duplicated", "deploys:", "journal:",
                                                   "webhooks: Idempotency")))
    result = {"trial": args.trial, "kill_ms": args.kill_ms, "kill_how": args.kill_how,
              "phase": args.phase,
              "states": dict(states), "commits": n_commits, "reverts": n_reverts,
              "deploys": n_deploys, "rollbacks": n_rollbacks, "starts": n_starts,
              "webhooks": n_hooks, "duplicates": dup, "left_running": args.left_running.split(),
              "failures": bad}
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    final_states = ",".join(f"{k}" + (f"x{v}" if v > 1 else "") for k, v in sorted(states.items()))
    how = f" ({args.kill_how})" if args.kill_how else ""
    print(f"trial {args.trial:>2}: kill at {args.kill_ms:>5} ms{how} in {args.phase:<8} -> "
          f"{final_states or 'no remediation':<10} commits {n_commits} reverts {n_reverts} "
          f"deploys {n_deploys} rollbacks {n_rollbacks}"
          + (f" webhooks {n_hooks}" if args.webhook_log else "")
          + ("  ok" if not bad else f"  FAILED ({len(bad)})"))
    for b in bad:
        print(f"    - {b}")
    return 1 if bad else 0


# ---- summary ----------------------------------------------------------------------------------

def summary(args):
    trials = [json.loads(l) for l in open(args.results) if l.strip()]
    states = collections.Counter()
    phases = collections.Counter()
    failed = [t for t in trials if t["failures"]]
    for t in trials:
        phases[t["phase"]] += 1
        if not t["states"]:
            states["no incident"] += 1
        for k, v in t["states"].items():
            states[k] += v
    dup = sum(t["duplicates"] for t in trials)
    hooks = sum(t.get("webhooks", 0) for t in trials)
    kinds = collections.Counter(b.split(":")[0] for t in trials for b in t["failures"])
    print(f"trials: {len(trials)}, passed {len(trials) - len(failed)}, failed {len(failed)}")
    print("final states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    print("phases at the kill: " + ", ".join(f"{k} {v}" for k, v in phases.most_common()))
    print(f"webhook calls received: {hooks}")
    print(f"duplicates found (commits, reverts, deploys, journal keys, webhook keys): {dup}")
    left = [t for t in trials if t.get("left_running")]
    if left:
        names = collections.Counter(p.split(":", 1)[-1] for t in left for p in t["left_running"])
        print(f"note: in {len(left)} trial(s) processes of the killed asr were still running 50 ms "
              f"after the kill (not checked): " + ", ".join(f"{k} {v}" for k, v in names.most_common()))
    if kinds:
        print("violations by kind: " + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
    return 1 if failed or dup else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("phase")
    p.add_argument("--state", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--base")
    p = sub.add_parser("kill")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--url", required=True, help="the fault to POST; the kill time counts from it")
    p.add_argument("--delay-ms", type=float, required=True)
    p.add_argument("--log")
    p.add_argument("--after", help="a regular expression: wait for such a line of --log first")
    p.add_argument("--from", dest="start", type=int, default=0,
                   help="the offset of --log to follow it from")
    p.add_argument("--timeout-s", type=float, default=60)
    p = sub.add_parser("final")
    p.add_argument("--state", required=True)
    p = sub.add_parser("check")
    for a in ("--state", "--repo", "--base", "--status", "--asr", "--phase", "--out"):
        p.add_argument(a, required=True)
    p.add_argument("--base-deploy", type=int, required=True)
    p.add_argument("--served", default="")
    p.add_argument("--health", required=True)
    p.add_argument("--replay")
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--kill-ms", type=int, required=True)
    p.add_argument("--kill-how", default="", help="how the kill point was chosen, for the line")
    p.add_argument("--webhook-log", help="tests/webhook_server.py's record (WEBHOOK_RECORD)")
    p.add_argument("--webhook-from", type=int, default=0, help="the trial's first line of it")
    p.add_argument("--expect", choices=("any", "failed"), default="any",
                   help="the outcome the remediation must reach (failed: the undo path)")
    p.add_argument("--left-running", default="",
                   help="processes of the trial still running 50 ms after the kill (a note)")
    p = sub.add_parser("summary")
    p.add_argument("--results", required=True)
    a = ap.parse_args()
    if a.cmd == "phase":
        print(phase(a))
        return 0
    return {"kill": kill, "final": final, "check": check, "summary": summary}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
