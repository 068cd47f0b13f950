# Planning from what asr knows: with the demo playbooks indexed, a fault on the running shop gets
# the playbook written for it (a patch inside patch_paths, checked against the whitelist), a
# crash gets the crash-loop playbook, and an incident nothing fits is escalated to a person.
source "$(dirname "$0")/lib.sh"
setup
# This test is about planning, not carrying plans out: the executor only records (shadow mode).
sed -i 's/^    policy: {patch_paths: \["src\/\*\*"\], /    policy: {shadow: true, patch_paths: ["src\/**"], /' "$CFG"
grep -q "shadow: true" "$CFG" || fail "shadow mode not set"
start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
"$ASR_BIN" kb add "$ASR_SOURCE_DIR/demo/playbooks" --state-dir "$STATE" >/dev/null || fail "kb add"
db_is() { [ "$(db "$1")" = "$2" ]; }
plan() { "$ASR_BIN" plan "$1" --json -c "$CFG" --state-dir "$STATE" $REPLAN; }
field() { plan "$1" | python3 -c "import json,sys; p=json.load(sys.stdin); print($2)"; }
REPLAN=

http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "db-timeout incident" 5 db_is "select count(*) from incidents where signature='FAULT_DB_TIMEOUT'" 1
id=$(db "select id from incidents where signature='FAULT_DB_TIMEOUT'")
expect_eq "strategy" playbook "$(field "$id" "p['strategy']")"
expect_eq "playbook" db-statement-limit-too-short "$(field "$id" "p['playbook']")"
expect_eq "patch step" patch "$(field "$id" "p['steps'][0]['action']")"
expect_eq "patch path" src/db.c "$(field "$id" "p['steps'][0]['edits'][0]['path']")"
expect_eq "confident" True "$(field "$id" "p['confidence'] >= 0.6")"
expect_eq "no approval needed" False "$(field "$id" "p['requires_approval']")"
expect_eq "verify replays the fault" /test-fault/db-timeout "$(field "$id" "p['verify']['request']['path']")"
"$ASR_BIN" plan "$id" -c "$CFG" --state-dir "$STATE" | grep -q "strategy     playbook: db-statement-limit-too-short" || fail "human plan output"

# The plan is stored: asking again shows the same one.
expect_eq "one stored plan" 1 "$(db "select count(*) from plans where incident_id=$id")"
expect_eq "stored plan row" "$(db "select id from plans where incident_id=$id")" "$(field "$id" "p['id']")"
expect_eq "stored status" proposed "$(field "$id" "p['status']")"

# A policy that wants approval for patches: a new plan (--replan) follows it.
sed -i 's/approval: \[\]/approval: [patch]/' "$CFG"
expect_eq "stored plan unchanged" False "$(field "$id" "p['requires_approval']")"
REPLAN=--replan
expect_eq "approval from the policy" True "$(field "$id" "p['requires_approval']")"
expect_eq "two plans" 2 "$(db "select count(*) from plans where incident_id=$id")"
REPLAN=""

http POST "http://127.0.0.1:$SHOP_PORT/test-fault/crash" >/dev/null
wait_for "exit incident" 5 db_is "select count(*) from incidents where kind='exit'" 1
idx=$(db "select id from incidents where kind='exit'")
expect_eq "crash plan" crash-loop "$(field "$idx" "p['playbook']")"
expect_eq "crash steps" "restart,rollback" "$(field "$idx" "','.join(s['action'] for s in p['steps'])")"

# Nothing known fits: escalate, with the reason.
stop_daemon
python3 - "$STATE/asr.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("""INSERT INTO incidents (fingerprint, service, kind, signature, severity, source, line,
    first_seen, last_seen, received_us, opened_at) VALUES ('shop:FEATURE_FLAG', 'shop', 'signature',
    'FEATURE_FLAG_UNKNOWN', 'warning', 'stderr', 'feature flag checkout_v3 is not defined',
    1, 1, 1, 1)""")
c.commit()
PY
idu=$(db "select id from incidents where signature='FEATURE_FLAG_UNKNOWN'")
expect_eq "unknown fault strategy" fallback "$(field "$idu" "p['strategy']")"
expect_eq "unknown fault step" escalate "$(field "$idu" "p['steps'][0]['action']")"
expect_eq "no confidence" 0.0 "$(field "$idu" "p['confidence']")"
pass "planning"
