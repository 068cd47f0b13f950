# The audit chain through the real binary: the daemon's plan for a fault, an operator's outcome
# and resolution are audit rows; `asr audit verify` passes on them; then someone with the file
# (sqlite3 from python, triggers dropped) edits a row, deletes the newest one, or swaps two, and
# verify exits 1 naming the row each time.
source "$(dirname "$0")/lib.sh"
setup
# This test is about planning, not carrying plans out: the executor only records (shadow mode).
sed -i 's/^    policy: {patch_paths: \["src\/\*\*"\], /    policy: {shadow: true, patch_paths: ["src\/**"], /' "$CFG"
grep -q "shadow: true" "$CFG" || fail "shadow mode not set"
start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
"$ASR_BIN" kb add "$ASR_SOURCE_DIR/demo/playbooks" --state-dir "$STATE" >/dev/null || fail "kb add"
db_is() { [ "$(db "$1")" = "$2" ]; }
verify() { "$ASR_BIN" audit verify --state-dir "$STATE" "$@"; }

http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "db-timeout incident" 5 db_is "select count(*) from incidents where signature='FAULT_DB_TIMEOUT'" 1
id=$(db "select id from incidents where signature='FAULT_DB_TIMEOUT'")
# The daemon plans every incident it opens; asr plan shows that plan (or makes it).
"$ASR_BIN" plan "$id" -c "$CFG" --state-dir "$STATE" >/dev/null || fail "asr plan"
wait_for "plan.made row" 5 db_is "select count(*) from audit where kind='plan.made' and incident_id=$id" 1
"$ASR_BIN" plan "$id" --outcome verified -c "$CFG" --state-dir "$STATE" >/dev/null || fail "outcome"
"$ASR_BIN" incident resolve "$id" --reason "fixed by the playbook" --state-dir "$STATE" >/dev/null ||
    fail "resolve"
expect_eq "audit kinds" "plan.made,remediation.decided,plan.outcome,incident.resolved" \
    "$(db "select group_concat(kind) from (select kind from audit order by seq)")"
n=$(db "select count(*) from audit")
head=$(db "select hash from audit order by seq desc limit 1")

out=$(verify) || fail "verify of an untouched chain: $out"
expect_eq "verify output" "audit: $n rows, chain intact, head $head" "$out"
expect_eq "anchor" "$n $head" "$(cat "$STATE/audit.head")"
sed "s|^state_dir:.*|state_dir: $STATE|" "$CFG" > "$REPO/state.yaml"
expect_eq "verify -c" "$out" "$("$ASR_BIN" audit verify -c "$REPO/state.yaml")"
expect_eq "list --json" "incident.resolved|fixed by the playbook" \
    "$("$ASR_BIN" audit list --json --limit 1 --state-dir "$STATE" | python3 -c "import json,sys; r=json.loads(sys.stdin.readline()); print(r['kind']+'|'+r['detail']['reason'])")"
"$ASR_BIN" audit list --state-dir "$STATE" | grep -q "plan.made" || fail "human list"
stop_daemon

# The triggers refuse an edit through SQL as asr itself would make it.
if python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"update audit set actor='x' where seq=1\"); c.commit()" "$STATE/asr.db" 2>/dev/null; then
    fail "an UPDATE of an audit row was allowed"
fi

# tamper SQL...: as an attacker with the file; the original is kept to start each case from.
cp "$STATE/asr.db" "$WORK/clean.db"
tamper() {
    cp "$WORK/clean.db" "$STATE/asr.db"
    rm -f "$STATE/asr.db-wal" "$STATE/asr.db-shm"
    python3 - "$STATE/asr.db" "$@" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.executescript("DROP TRIGGER audit_append_only_update; DROP TRIGGER audit_append_only_delete;"
                "PRAGMA ignore_check_constraints = ON;")
for sql in sys.argv[2:]:
    c.execute(sql)
c.commit()
PY
}
expect_fail() { # what expected-message
    local rc=0 err
    err=$(verify 2>&1 >/dev/null) || rc=$?
    expect_eq "$1: exit" 1 "$rc"
    case "$err" in *"$2"*) pass "$1: $err" ;; *) fail "$1: expected '$2' in '$err'" ;; esac
}

tamper "update audit set detail = '{\"reason\":\"nothing happened\"}' where seq = $n"
expect_fail "edited detail" "asr: audit: row $n: hash does not match its contents"
tamper "update audit set at = at + 1 where seq = 1"
expect_fail "edited time" "asr: audit: row 1: hash does not match its contents"
tamper "delete from audit where seq = $n"
expect_fail "deleted newest" "the last row is missing (audit.head says seq $n)"
tamper "delete from audit where seq = 2"
expect_fail "deleted middle" "row 2 is missing"
tamper "update audit set seq = 100 where seq = 1" "update audit set seq = 1 where seq = 2" \
    "update audit set seq = 2 where seq = 100"
expect_fail "swapped rows" "row 1: prev is not the start of a chain"

# Untouched again: passes.
cp "$WORK/clean.db" "$STATE/asr.db"
rm -f "$STATE/asr.db-wal" "$STATE/asr.db-shm"
verify >/dev/null || fail "verify after restoring the file"
pass "audit chain"
