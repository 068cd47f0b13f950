# Carrying out plans through the running daemon: a crash is planned from the crash-loop playbook
# (restart, then rollback) and the policy gate decides. With approval for restarts the plan
# waits for `asr approve`, then runs: a blue/green restart, verified, the incident resolved and
# the fix learned. The same fault again within the policy cooldown is refused and escalated; in
# shadow mode nothing runs; `asr reject` ends a waiting plan; a spent budget refuses. Every step
# is journaled intent-then-result, and the audit chain stays intact.
source "$(dirname "$0")/lib.sh"
setup
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 800, healthy_timeout_ms: 5000,/' "$CFG"
printf 'detection: {cooldown_ms: 1s}\n' >>"$CFG"
policy() { # the shop's policy line
    sed -i "s|^    policy: .*|    policy: {patch_paths: [\"src/**\"], $1}|" "$CFG"
}
reload() {
    local n
    n=$(grep -c "config reloaded" "$WORK/daemon.log" || true)
    kill -HUP "$DAEMON_PID"
    wait_for "config reload" 10 reloaded_after "$n"
}
reloaded_after() { [ "$(grep -c "config reloaded" "$WORK/daemon.log")" -gt "$1" ]; }
# An escalated incident stays open (a person owns it); the next crash would be counted on it.
close() { "$ASR_BIN" incident resolve "$1" --state-dir "$STATE" >/dev/null || fail "resolve $1"; }
policy 'approval: [restart], budget: {remediations: 2, per: 1h}, cooldown: 10m'
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "config check: $("$ASR_BIN" config check -c "$CFG" 2>&1)"
# The playbooks come from the config: the daemon indexes them at start (and at each reload).
printf 'playbooks: %s\n' "$ASR_SOURCE_DIR/demo/playbooks" >>"$CFG"
start_daemon
wait_for "shop healthy" 20 healthy "$SHOP_PORT"
grep -q "playbooks: 14 of 14 indexed from" "$WORK/daemon.log" || fail "playbooks not indexed at start"

db_is() { [ "$(db "$1")" = "$2" ]; }
rem() { db "select $2 from remediations where incident_id=$1 order by id desc limit 1"; }
crash() { # N: triggers crash N and waits for its incident's remediation; prints the incident id
    local n_crash=$1
    http POST "http://127.0.0.1:$SHOP_PORT/test-fault/crash" >/dev/null
    wait_for "crash incident $n_crash" 10 db_is "select count(*) from incidents where kind='exit'" "$n_crash"
    local id
    id=$(db "select max(id) from incidents where kind='exit'")
    wait_for "remediation of incident $id" 10 db_is "select count(*) from remediations where incident_id=$id" 1
    wait_for "shop healthy again" 20 healthy "$SHOP_PORT"
    echo "$id"
}
deploys() { db "select count(*) from deployments"; }

# 1. Approval, then the run.
a=$(crash 1)
expect_eq "plan from the crash-loop playbook" crash-loop "$(db "select json_extract(body, '$.playbook') from plans where incident_id=$a")"
expect_eq "waits for approval" awaiting_approval "$(rem "$a" state)"
d0=$(deploys)
"$ASR_BIN" approve "$a" --state-dir "$STATE" >/dev/null || fail "asr approve"
wait_for "remediation succeeded" 30 db_is "select state from remediations where incident_id=$a" succeeded
expect_eq "a blue/green restart ran" 1 "$(($(deploys) - d0))"
expect_eq "approved by someone" 1 "$(rem "$a" "approved_by is not null")"
expect_eq "incident resolved" resolved "$(db "select status from incidents where id=$a")"
db "select resolution from incidents where id=$a" | grep -q "remediated by plan" || fail "resolution should name the plan"
expect_eq "plan verified (learned)" verified "$(db "select status from plans where incident_id=$a")"
rid=$(rem "$a" id)
expect_eq "journal: intent and result of the restart and of the verification" \
    "1|restart|intent,1|restart|result,1|restart|intent,1|restart|result,0|finish|intent,0|finish|result" \
    "$(db "select group_concat(step || '|' || action || '|' || phase, ',') from (select * from journal where remediation_id=$rid order by id)")"
expect_eq "journal: every step succeeded" 0 "$(db "select count(*) from journal where remediation_id=$rid and phase='result' and ok=0")"
"$ASR_BIN" approve "$a" --state-dir "$STATE" >/dev/null 2>&1 && fail "a second approval was accepted"

# 2. The same fault within the policy cooldown: refused, escalated, nothing runs.
sleep 1.2 # the detection cooldown, so the crash opens a new incident
d0=$(deploys)
b=$(crash 2)
expect_eq "cooldown refuses" refused "$(rem "$b" state)"
rem "$b" reason | grep -q "cooldown" || fail "the reason should name the cooldown: $(rem "$b" reason)"
grep -q "incident $b escalated to a person" "$WORK/daemon.log" || fail "the refusal should escalate loudly"

close "$b"

# 3. Shadow mode: recorded, nothing runs.
policy 'approval: [], shadow: true, budget: {remediations: 2, per: 1h}, cooldown: 0s'
reload
sleep 1.2
d0=$(deploys)
c=$(crash 3)
expect_eq "shadow" shadowed "$(rem "$c" state)"
sleep 1
expect_eq "shadow ran nothing" 0 "$(($(deploys) - d0))"
grep -q "incident $c: shadow mode: would carry out plan" "$WORK/daemon.log" || fail "shadow should say what it would do"

close "$c"

# 4. Reject.
policy 'approval: [restart], budget: {remediations: 2, per: 1h}, cooldown: 0s'
reload
sleep 1.2
e=$(crash 4)
expect_eq "waits again" awaiting_approval "$(rem "$e" state)"
"$ASR_BIN" reject "$e" --reason "not now" --state-dir "$STATE" >/dev/null || fail "asr reject"
expect_eq "rejected" rejected "$(rem "$e" state)"
rem "$e" reason | grep -q "not now" || fail "the reason should be kept"

close "$e"

# 5. Budget: 1 remediation ran in the window; a budget of 1 refuses the next.
policy 'approval: [], budget: {remediations: 1, per: 1h}, cooldown: 0s'
reload
sleep 1.2
f=$(crash 5)
expect_eq "budget refuses" refused "$(rem "$f" state)"
rem "$f" reason | grep -q "budget" || fail "the reason should name the budget: $(rem "$f" reason)"

expect_eq "every journal row is in the audit chain" "$(db "select count(*) from journal")" \
    "$(db "select count(*) from audit where kind like 'action.%'")"
expect_eq "every decision too" 1 "$(db "select count(*) >= 5 from audit where kind = 'remediation.decided'")"
"$ASR_BIN" audit verify --state-dir "$STATE" >/dev/null || fail "audit verify: $("$ASR_BIN" audit verify --state-dir "$STATE" 2>&1)"
pass "carrying out plans"
