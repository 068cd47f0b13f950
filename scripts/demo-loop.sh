#!/usr/bin/env bash
# The closed-loop demo (run by `make demo` after the runtime demo): asr serves the demo shop with
# the demo playbooks, and the shop's three faults and a crash are triggered one after another.
# asr recovers from each without help: it detects the fault, plans from a playbook, commits the
# fix on a branch asr/incident-<id>, builds, tests and deploys it blue/green, replays the faulting
# request, and resolves the incident. It prints each timeline, writes a JSON report of every
# stage's time per fault (REPORT, default build/demo-report.json), and ends with the git log of
# the fixes and `asr audit verify`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
asr=${ASR_BIN:-$root/build/asr}
work=$(mktemp -d /tmp/asr-demo-loop.XXXXXX)
repo=$work/repo
state=$work/state
report=${REPORT:-$root/build/demo-report.json}
daemon=""
bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
cleanup() {
    if [ -n "$daemon" ]; then
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 http://127.0.0.1:8080/health)" = 200 ]; }
sql() { python3 -c 'import sqlite3,sys; c=sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True); [print("|".join(map(str,r))) for r in c.execute(sys.argv[2])]' "$state/asr.db" "$1"; }
for port in 8080 8081; do
    if curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/"; then
        echo "asr demo: port $port is already in use; stop whatever serves it and retry" >&2
        exit 1
    fi
done

bold "A. The closed loop: asr fixes the shop's faults on its own"
mkdir -p "$repo"
cp -r "$root/demo/app" "$root/demo/upstream" "$root/demo/asr.yaml" "$root/demo/playbooks" "$repo/"
make -s -C "$repo/app" clean >/dev/null 2>&1 || true
make -s -C "$repo/upstream" clean >/dev/null 2>&1 || true
# The playbooks are indexed at start; a fix must stay good for 300 ms to count.
printf 'playbooks: ./playbooks\n' >>"$repo/asr.yaml"
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 300, healthy_timeout_ms: 5000,/' "$repo/asr.yaml"
git -C "$repo" init -q
git -C "$repo" add -A
git -C "$repo" -c user.name=demo -c user.email=demo@asr.invalid commit -qm "shop: initial version, with its faults"
"$asr" run -c "$repo/asr.yaml" --state-dir "$state" >"$work/asr.log" 2>&1 &
daemon=$!
until healthy; do
    kill -0 "$daemon" 2>/dev/null || { cat "$work/asr.log"; exit 1; }
    sleep 0.05
done
say "shop is up on 127.0.0.1:8080; $(grep -oE 'playbooks: [0-9]+ of [0-9]+ indexed' "$work/asr.log")"

n=0
for route in db-timeout run external-api crash; do
    n=$((n + 1))
    bold "B$n. POST /test-fault/$route"
    before=$(sql "select coalesce(max(id), 0) from incidents")
    code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST "http://127.0.0.1:8080/test-fault/$route" || true)
    say "the request got $code; asr takes it from here"
    id=""
    for _ in $(seq 1 600); do
        id=$(sql "select min(id) from incidents where id > $before and parent_id is null")
        if [ "$id" != "None" ] && [ -n "$id" ]; then
            st=$(sql "select state from remediations where incident_id = $id")
            case "$st" in succeeded | failed | escalated | refused | rejected | shadowed) break ;; esac
        fi
        sleep 0.05
    done
    "$asr" incident show "$id" --state-dir "$state" |
        sed -n -e 's/^incident /   incident /p' -e 's/^  signature/   signature/p' -e '/^remediation/,$p' | sed 's/^  /     /'
    if [ "$route" != crash ]; then
        say "the same request now: $(curl -s -o /dev/null -w '%{http_code}' -m 10 -X POST "http://127.0.0.1:8080/test-fault/$route" -H 'X-Asr-Verification: 1' || true)"
    fi
    until healthy; do sleep 0.05; done
done

bold "C. The report: every stage's time per fault ($report)"
python3 - "$state/asr.db" "$report" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
faults = []
for iid, sig, first, opened, resolved, status in db.execute(
        "select id, signature, first_seen, opened_at, resolved_at, status from incidents "
        "where parent_id is null order by id"):
    plan = db.execute("select id, created_at, body from plans where incident_id=? order by id desc limit 1", (iid,)).fetchone()
    rem = db.execute("select id, state, reason, started_at, finished_at from remediations where incident_id=?", (iid,)).fetchone()
    stages = {"first_seen": first, "detected": opened}
    if plan:
        body = json.loads(plan[2])
        stages["planned"] = plan[1]
    journal = []
    if rem:
        for at, step, action, phase, ok, detail in db.execute(
                "select at, step, action, phase, ok, detail from journal where remediation_id=? order by id", (rem[0],)):
            journal.append({"at": at, "ms_from_first_seen": at - first, "step": step, "action": action,
                            "phase": phase, "ok": None if ok is None else bool(ok),
                            "detail": json.loads(detail).get("detail")})
    if resolved:
        stages["verified_and_resolved"] = resolved
    faults.append({"incident": iid, "signature": sig, "status": status,
                   "strategy": body.get("strategy") if plan else None,
                   "playbook": body.get("playbook") if plan else None,
                   "remediation": rem[1] if rem else None, "reason": rem[2] if rem else None,
                   "stages_ms": stages, "journal": journal,
                   "mttr_ms": (resolved - first) if resolved and rem and rem[1] == "succeeded" else None})
ok = sum(1 for f in faults if f["remediation"] == "succeeded")
out = {"faults": faults, "resolved_without_help": ok, "total": len(faults)}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print("   %-28s %-30s %-10s %s" % ("fault", "playbook", "outcome", "MTTR"))
for f in faults:
    m = "%d ms" % f["mttr_ms"] if f["mttr_ms"] is not None else "-"
    print("   %-28s %-30s %-10s %s" % (f["signature"], f["playbook"] or "-", f["remediation"] or "-", m))
print("   %d of %d faults resolved with no human step" % (ok, len(faults)))
PY

bold "D. The fixes in git (branches asr/incident-<id>; the operator's branch untouched)"
git -C "$repo" log --oneline --no-decorate --branches='asr/*' "^$(git -C "$repo" rev-parse HEAD)" | sed 's/^/   /'
say "operator's HEAD: $(git -C "$repo" log -1 --oneline HEAD)"

bold "E. The audit chain"
"$asr" audit verify --state-dir "$state" | sed 's/^/   /'

kill -TERM "$daemon"
wait "$daemon" || true
daemon=""
say "report written to $report"
