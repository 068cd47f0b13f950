# The closed loop for a patch-class fault, through the running daemon: FAULT_DB_TIMEOUT is
# planned from its playbook; the executor commits the playbook's edit on asr/incident-<id> (the
# operator's branch untouched), builds, tests and deploys that commit blue/green, replays the
# faulting request (now 200), and resolves the incident. A patch that does not compile ends with
# the commit reverted by a new commit, the service still on its release, and the incident
# escalated.
source "$(dirname "$0")/lib.sh"
setup
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 500, healthy_timeout_ms: 5000,/' "$CFG"
mkdir -p "$STATE"
"$ASR_BIN" kb add "$ASR_SOURCE_DIR/demo/playbooks" --state-dir "$STATE" >/dev/null || fail "kb add"
start_daemon
wait_for "shop healthy" 20 healthy "$SHOP_PORT"
db_is() { [ "$(db "$1")" = "$2" ]; }
active() { curl -s "http://127.0.0.1:$SHOP_PORT/version" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("commit",""))' 2>/dev/null; }
head_before=$(git -C "$REPO" rev-parse HEAD)
status_before=$(git -C "$REPO" status --porcelain)
before=$("$ASR_BIN" status --state-dir "$STATE" --json | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["services"] if s["name"]=="shop"][0]["commit"])')

expect_eq "the fault is there" 500 "$(http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout")"
wait_for "incident" 5 db_is "select count(*) from incidents where signature='FAULT_DB_TIMEOUT'" 1
id=$(db "select id from incidents where signature='FAULT_DB_TIMEOUT'")
wait_for "remediation finished" 60 db_is "select state in ('succeeded','failed','escalated','refused') from remediations where incident_id=$id" 1
expect_eq "remediation" succeeded "$(db "select state from remediations where incident_id=$id")"
sha=$(git -C "$REPO" rev-parse "refs/heads/asr/incident-$id")
git -C "$REPO" log -1 --format=%B "$sha" | grep -q "^Asr-Incident: $id$" || fail "commit trailers"
git -C "$REPO" log -1 --format=%B "$sha" | grep -q "^Asr-Strategy: playbook$" || fail "strategy trailer"
git -C "$REPO" show "$sha" | grep -q "^+static const int DB_STATEMENT_LIMIT_MS = 5000;" || fail "the commit's diff"
after=$("$ASR_BIN" status --state-dir "$STATE" --json | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["services"] if s["name"]=="shop"][0]["commit"])')
expect_eq "the service runs the fix" "$sha" "$after"
expect_eq "the fault is gone" 200 "$(http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout")"
expect_eq "incident resolved" resolved "$(db "select status from incidents where id=$id")"
db "select detail from journal where idem_key like 'rem:%:verify:1' and phase='result'" | grep -q "replay of POST /test-fault/db-timeout gave 200" ||
    fail "the verification should replay the fault: $(db "select detail from journal where phase='result'")"
expect_eq "operator's HEAD untouched" "$head_before" "$(git -C "$REPO" rev-parse HEAD)"
expect_eq "operator's work tree untouched" "$status_before" "$(git -C "$REPO" status --porcelain)"
git -C "$REPO" fsck --strict >/dev/null 2>&1 || fail "git fsck"
grep -E "incident $id remediated: .*MTTR [0-9]+ ms" "$WORK/daemon.log" >/dev/null || fail "MTTR in the log"
show=$("$ASR_BIN" incident show "$id" --state-dir "$STATE")
echo "$show" | grep -qE "^remediation [0-9]+ \(plan [0-9]+\): succeeded" || fail "incident show: remediation: $show"
echo "$show" | grep -qE "step 1 patch +result ok" || fail "incident show: the patch step: $show"
echo "$show" | grep -qE "step 1 patch +result ok .*replay of POST /test-fault/db-timeout gave 200" || fail "incident show: the replay: $show"
echo "$show" | grep -qE "^  MTTR [0-9]+ ms" || fail "incident show: MTTR: $show"
echo "$show" | sed -n '/^remediation/,$p' >&2
expect_eq "incident show --json: the remediation, its journal and MTTR" "succeeded 7 True" \
    "$("$ASR_BIN" incident show "$id" --json --state-dir "$STATE" | python3 -c 'import json,sys; r=json.load(sys.stdin)["remediation"]; print(r["state"], len(r["journal"]), r["mttr_ms"] > 0)')"
pass "patch-class fault fixed in $(grep -oE "incident $id remediated: .*MTTR [0-9]+ ms" "$WORK/daemon.log" | grep -oE "[0-9]+ ms$")"

# A patch that does not compile: reverted, the service stays, the incident escalates.
stop_daemon
mkdir -p "$WORK/bad"
cat >"$WORK/bad/bad.yaml" <<'EOF'
id: upstream-timeout-too-short
title: Upstream call times out before the dependency answers
version: 2
match:
  signature: FAULT_EXTERNAL_API_LATENCY
  service: shop
symptoms: |
  Calls to the upstream time out before it answers.
steps:
  - action: patch
    message: "routes: a broken edit"
    edits:
      - path: src/routes.c
        search: |
          static const int UPSTREAM_TIMEOUT_MS = 500;
        replace: |
          static const int UPSTREAM_TIMEOUT_MS = ;
verify:
  request: {method: POST, path: /test-fault/external-api}
  expect: {status: 200}
EOF
"$ASR_BIN" kb add "$WORK/bad" --state-dir "$STATE" >/dev/null || fail "kb add bad"
start_daemon
wait_for "shop healthy" 20 healthy "$SHOP_PORT"
running=$("$ASR_BIN" status --state-dir "$STATE" --json | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["services"] if s["name"]=="shop"][0]["commit"])')
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/external-api" >/dev/null
wait_for "incident" 10 db_is "select count(*) from incidents where signature='FAULT_EXTERNAL_API_LATENCY'" 1
id2=$(db "select id from incidents where signature='FAULT_EXTERNAL_API_LATENCY'")
wait_for "remediation finished" 60 db_is "select state in ('succeeded','failed','escalated','refused') from remediations where incident_id=$id2" 1
expect_eq "bad patch fails" failed "$(db "select state from remediations where incident_id=$id2")"
expect_eq "two commits on the branch: the patch and its revert" 2 \
    "$(git -C "$REPO" rev-list --count "refs/heads/asr/incident-$id2" "^$running")"
git -C "$REPO" log -1 --format=%B "refs/heads/asr/incident-$id2" | grep -q "^Asr-Reverts: " || fail "revert trailer"
now=$("$ASR_BIN" status --state-dir "$STATE" --json | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["services"] if s["name"]=="shop"][0]["commit"])')
expect_eq "the service stays on its release" "$running" "$now"
expect_eq "plan marked failed" failed "$(db "select status from plans where incident_id=$id2 order by id desc limit 1")"
expect_eq "incident still open, for a person" open "$(db "select status from incidents where id=$id2")"
grep -q "incident $id2 escalated to a person" "$WORK/daemon.log" || fail "escalation in the log"
"$ASR_BIN" audit verify --state-dir "$STATE" >/dev/null || fail "audit verify"
pass "closed loop"
