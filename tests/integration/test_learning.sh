# Learning from outcomes, through the running daemon: a fault is planned from its playbook; once
# that fix is reported verified, the same fault coming back (a new incident with the same
# fingerprint, after the cooldown) is planned from history with higher confidence. A fix reported
# failed ranks below the alternative, and the next plan for that fault follows the alternative.
source "$(dirname "$0")/lib.sh"
setup
# This test is about planning, not carrying plans out: the executor only records (shadow mode).
sed -i 's/^    policy: {patch_paths: \["src\/\*\*"\], /    policy: {shadow: true, patch_paths: ["src\/**"], /' "$CFG"
grep -q "shadow: true" "$CFG" || fail "shadow mode not set"
printf 'detection: {cooldown_ms: 1s}\n' >>"$CFG"
# An alternative for the upstream fault, weaker on text than the demo's playbook for it.
mkdir -p "$WORK/alt"
cat >"$WORK/alt/upstream-pool-restart.yaml" <<'EOF'
id: upstream-pool-restart
title: Upstream connection pool wedged
version: 1
match:
  signature: FAULT_EXTERNAL_API_LATENCY
  service: shop
symptoms: |
  Calls to the upstream hang until the client gives up, because the pooled connections are
  stuck. Restarting the service resets the pool.
steps:
  - action: restart
verify:
  request: {method: POST, path: /test-fault/external-api}
  expect: {status: 200}
EOF
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "config check: $("$ASR_BIN" config check -c "$CFG" 2>&1)"
mkdir -p "$STATE"
"$ASR_BIN" kb add "$ASR_SOURCE_DIR/demo/playbooks" --state-dir "$STATE" >/dev/null || fail "kb add"
"$ASR_BIN" kb add "$WORK/alt" --state-dir "$STATE" >/dev/null || fail "kb add (alternative)"
start_daemon
wait_for "shop healthy" 20 healthy "$SHOP_PORT"

db_is() { [ "$(db "$1")" = "$2" ]; }
plan_of() { db "select $2 from plans where incident_id=$1 order by id desc limit 1"; }
asr_plan() { "$ASR_BIN" plan "$@" -c "$CFG" --state-dir "$STATE"; }
# fault PATH SIGNATURE N: triggers a demo fault and waits for the daemon's plan of incident N of
# that signature; prints the incident id.
fault() {
    http POST "http://127.0.0.1:$SHOP_PORT$1" >/dev/null
    wait_for "incident $3 of $2" 10 db_is "select count(*) from incidents where signature='$2'" "$3"
    local id
    id=$(db "select max(id) from incidents where signature='$2'")
    wait_for "the daemon's plan of incident $id" 10 db_is "select count(*) > 0 from plans where incident_id=$id" 1
    echo "$id"
}

# 1. Verified: the same fault is planned from history, more confidently.
a=$(fault /test-fault/db-timeout FAULT_DB_TIMEOUT 1)
expect_eq "first plan" playbook "$(plan_of "$a" strategy)"
c1=$(plan_of "$a" confidence)
asr_plan "$a" --outcome verified >/dev/null || fail "outcome verified"
expect_eq "plan marked verified" verified "$(plan_of "$a" status)"
expect_eq "mttr kept" 1 "$(plan_of "$a" "mttr_ms > 0")"
asr_plan "$a" --outcome verified >/dev/null 2>&1 && fail "a second outcome for the same plan was accepted"
"$ASR_BIN" incident resolve "$a" --state-dir "$STATE" >/dev/null || fail "resolve $a"
sleep 1.2 # the cooldown
b=$(fault /test-fault/db-timeout FAULT_DB_TIMEOUT 2)
[ "$b" != "$a" ] || fail "the recurrence should be a new incident"
expect_eq "same fingerprint" 1 "$(db "select count(distinct fingerprint) from incidents where signature='FAULT_DB_TIMEOUT'")"
expect_eq "recurrence planned from history" history "$(plan_of "$b" strategy)"
expect_eq "history is the verified incident" "$a" "$(plan_of "$b" "json_extract(body, '$.sources[0].ref')")"
c2=$(plan_of "$b" confidence)
expect_eq "higher confidence ($c2 > $c1)" True "$(python3 -c "print($c2 > $c1)")"
expect_eq "same steps" "$(plan_of "$a" "json_extract(body, '$.steps')")" "$(plan_of "$b" "json_extract(body, '$.steps')")"

# 2. Failed: the fix ranks below the alternative, and the next plan follows the alternative.
c=$(fault /test-fault/external-api FAULT_EXTERNAL_API_LATENCY 1)
expect_eq "first plan for the upstream fault" upstream-timeout-too-short "$(plan_of "$c" "json_extract(body, '$.playbook')")"
alt_rank() { # PLAN_JSON_SQL: position of each playbook in sources
    plan_of "$1" "(select group_concat(json_extract(value, '$.ref'), ',') from json_each(json_extract(body, '$.sources')))"
}
case "$(alt_rank "$c")" in upstream-timeout-too-short,*upstream-pool-restart*) ;; *) fail "the alternative should rank second at first: $(alt_rank "$c")" ;; esac
asr_plan "$c" --outcome failed >/dev/null || fail "outcome failed"
expect_eq "plan marked failed" failed "$(plan_of "$c" status)"
asr_plan "$c" --replan --json >"$WORK/replan.json" || fail "replan"
expect_eq "replan follows the alternative" upstream-pool-restart \
    "$(python3 -c "import json; print(json.load(open('$WORK/replan.json'))['playbook'])")"
expect_eq "the failed fix ranks below it" True "$(python3 -c "
import json; s=json.load(open('$WORK/replan.json'))['sources']
r=[x['ref'] for x in s]; sc={x['ref']: x['score'] for x in s}
print(r.index('upstream-pool-restart') < r.index('upstream-timeout-too-short') and
      sc['upstream-pool-restart'] > sc['upstream-timeout-too-short'])")"
grep -q "1 failed" <<<"$(python3 -c "import json; print([x['why'] for x in json.load(open('$WORK/replan.json'))['sources'] if x['ref']=='upstream-timeout-too-short'][0])")" ||
    fail "the failed fix's score should say why"
# The same fault again: the daemon's own plan follows the alternative, and never the failed
# incident's fix.
"$ASR_BIN" incident resolve "$c" --state-dir "$STATE" >/dev/null || fail "resolve $c"
sleep 1.2
d=$(fault /test-fault/external-api FAULT_EXTERNAL_API_LATENCY 2)
expect_eq "recurrence of the failed fault" upstream-pool-restart "$(plan_of "$d" "json_extract(body, '$.playbook')")"
pass "learning from outcomes"
