# `asr demo --report r.json` (issue 5 acceptance): in a temporary git repository asr serves the
# demo shop, the three faults and a crash are triggered one after another, and asr resolves all
# 4 with no human step. Checks the exit status, the printed timeline and table, and the report:
# valid JSON, 4 of 4, every fault's stages in order, MTTR, build and test times, and the overhead
# split (MTTR - build - test = config waits + the service's time + earlier steps + asr's own
# work, each part itemised). Then the errors: usage, a folder that is not the demo, a port in
# use. The demo's proxies listen on free ports (--ports), not 8080/8081, so a `make demo` or
# another checkout's test on this machine cannot collide with it; CTest runs integration tests
# one at a time (RUN_SERIAL).
source "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d /tmp/asr-it.XXXXXX)
LISTENER=""
cleanup() {
    local rc=$?
    [ -z "$LISTENER" ] || kill "$LISTENER" 2>/dev/null || true
    rm -rf "$WORK"
    return $rc
}
trap cleanup EXIT
SHOP_PORT=$(free_port)
UPSTREAM_PORT=$(free_port)
while [ "$UPSTREAM_PORT" = "$SHOP_PORT" ]; do UPSTREAM_PORT=$(free_port); done

# Usage and errors first: they are quick.
"$ASR_BIN" demo --help | grep -q "^usage: asr demo \[--report FILE\]" || fail "demo --help"
rc=0
"$ASR_BIN" demo --ports 80 2>"$WORK/err" || rc=$?
expect_eq "a bad --ports is a usage error" 2 "$rc"
grep -q "asr: usage: --ports expects two different ports SHOP,UPSTREAM" "$WORK/err" || fail "--ports message: $(cat "$WORK/err")"
rc=0
"$ASR_BIN" demo --bogus 2>"$WORK/err" || rc=$?
expect_eq "an unknown option is a usage error" 2 "$rc"
rc=0
TMPDIR=$WORK "$ASR_BIN" demo --source "$WORK" 2>"$WORK/err" >/dev/null || rc=$?
expect_eq "a folder that is not the demo" 1 "$rc"
grep -q "asr: demo: $WORK is not the demo folder: $WORK/app is missing" "$WORK/err" || fail "--source message: $(cat "$WORK/err")"
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(120)' "$SHOP_PORT" &
LISTENER=$!
wait_for "the listener" 10 python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1)' "$SHOP_PORT"
rc=0
TMPDIR=$WORK "$ASR_BIN" demo --ports "$SHOP_PORT,$UPSTREAM_PORT" 2>"$WORK/err" >/dev/null || rc=$?
expect_eq "a port in use" 1 "$rc"
grep -q "asr: demo: port $SHOP_PORT (127.0.0.1, the shop service's address) is already in use" "$WORK/err" || fail "port message: $(cat "$WORK/err")"
kill "$LISTENER"
wait "$LISTENER" 2>/dev/null || true
LISTENER=""
[ -z "$(ls -d "$WORK"/asr-demo.* 2>/dev/null)" ] || fail "a failed demo left its temporary directory: $(ls -d "$WORK"/asr-demo.*)"
pass "usage and setup errors"

# The demo itself, from another directory (the report path is relative to it).
mkdir -p "$WORK/cwd"
start=$(date +%s)
rc=0
(cd "$WORK/cwd" && TMPDIR=$WORK "$ASR_BIN" demo --report r.json --ports "$SHOP_PORT,$UPSTREAM_PORT" >"$WORK/out" 2>&1) || rc=$?
cat "$WORK/out" >&2
expect_eq "asr demo exit status" 0 "$rc"
log "the demo took $(($(date +%s) - start)) s"
grep -q "^   4 of 4 faults resolved with no human step$" "$WORK/out" || fail "4 of 4 in the output"
for what in detected planned committed built tested "cut over" verified resolved; do
    [ "$(grep -cE "^   \+ *[0-9]+ ms  $what " "$WORK/out")" -ge 3 ] || fail "the timeline lacks '$what' lines"
done
[ "$(grep -cE "asr's own work: detect [0-9]+" "$WORK/out")" = 4 ] || fail "the overhead of each fault"
grep -qE "^   [0-9a-f]{7} \(asr/incident-1\) fix\(shop\): db: statement limit" "$WORK/out" || fail "the git log of the fixes"
grep -qE "^   operator's HEAD: [0-9a-f]{7} shop: initial version" "$WORK/out" || fail "the operator's HEAD"
grep -qE "^   audit: [0-9]+ rows, chain intact" "$WORK/out" || fail "asr audit verify"
[ -z "$(ls -d "$WORK"/asr-demo.* 2>/dev/null)" ] || fail "the temporary directory was not removed"
! pgrep -f "$WORK/asr-demo" >/dev/null || fail "a process of the demo outlived it: $(pgrep -af "$WORK/asr-demo")"

python3 - "$WORK/cwd/r.json" <<'PY' || fail "the report"
import json, re, sys
r = json.load(open(sys.argv[1]))
def check(cond, what):
    if not cond:
        sys.exit("report: " + what)
check(r["total"] == 4 and r["resolved_without_help"] == 4, "4 of 4: %r" % r["resolved_without_help"])
check(r["audit_ok"] is True, "audit_ok")
check(r["config"]["verify_window_ms"] == 300, "the verify window")
faults = r["faults"]
check([f["route"] for f in faults] == ["db-timeout", "run", "external-api", "crash"], "the routes")
common = ["first_seen", "detected", "planned", "started", "step", "deploy_started",
          "slot_started", "cut_over", "replay", "verified", "resolved"]
for f in faults:
    name = f["route"]
    check(f["outcome"] == "succeeded" and f["resolved_without_help"], name + ": outcome")
    check(f["incident_status"] == "resolved", name + ": incident resolved")
    check(f["strategy"] == "playbook" and f["playbook"], name + ": playbook")
    patch = f["class"] == "patch"
    need = common + (["committed", "built", "tested"] if patch else [])
    st = f["stages"]
    for k in need:
        check(st[k] is not None and st[k]["ms_from_first_seen"] == st[k]["at"] - st["first_seen"]["at"],
              "%s: stage %s" % (name, k))
    order = [k for k in ["first_seen", "detected", "planned", "started", "step", "committed",
                         "deploy_started", "built", "tested", "slot_started", "cut_over", "replay",
                         "verified", "resolved"] if st[k] is not None]
    ats = [st[k]["at"] for k in order]
    check(ats == sorted(ats), "%s: stages out of order: %r" % (name, list(zip(order, ats))))
    check(f["mttr_ms"] == st["resolved"]["at"] - st["first_seen"]["at"] > 0, name + ": MTTR")
    check(f["mttr_target_ms"] == (5000 if patch else 1000), name + ": target")
    o = f["overhead"]
    if patch:
        check(f["action"] == "patch" and re.fullmatch("[0-9a-f]{40}", f["commit"]), name + ": commit")
        check(f["branch"] == "asr/incident-%d" % f["incident"], name + ": branch")
        check(f["build_ms"] > 0 and f["test_ms"] > 0, name + ": build and test times")
        check(f["after_fix_status"] == 200, name + ": the request after the fix")
    else:
        check(f["action"] == "restart" and f["build_ms"] is None and f["test_ms"] is None, name + ": restart")
    check(o["total_ms"] == f["mttr_ms"] - (f["build_ms"] or 0) - (f["test_ms"] or 0), name + ": overhead total")
    w = o["config_waits"]
    check(w["verify_window_ms"] == 300 and w["total_ms"] == w["verify_window_ms"] + w["health_until_healthy_ms"],
          name + ": config waits")
    own = o["own"]
    parts = sum(v for k, v in own.items() if k.endswith("_ms") and k != "total_ms" and v is not None)
    check(own["total_ms"] == parts, name + ": own work parts %r" % own)
    check(o["total_ms"] == w["total_ms"] + o["service"]["replay_answer_ms"] + o["earlier_steps_ms"] + own["total_ms"],
          name + ": the overhead split adds up")
    check(o["own_met"] == (own["total_ms"] < 100), name + ": own_met")
    check(any(j["key"].startswith("rem:%d:verify:" % f["remediation"]) for j in f["journal"]), name + ": journal")
    print("%-13s MTTR %5d ms (build %s, test %s), overhead %4d ms: waits %d, service %d, own %d" % (
        name, f["mttr_ms"], f["build_ms"], f["test_ms"], o["total_ms"], w["total_ms"],
        o["service"]["replay_answer_ms"], own["total_ms"]), file=sys.stderr)
PY
pass "asr demo: 4 of 4 resolved with no human step; the report has every stage, MTTR and the overhead split"
