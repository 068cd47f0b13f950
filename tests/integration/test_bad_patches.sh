# Bad patches (issue 5, acceptance): through the running daemon, three playbooks whose patch is
# bad in a different way, each for its own demo fault:
#   compile  FAULT_EXTERNAL_API_LATENCY  an edit that does not compile (the build fails)
#   tests    FAULT_SQL_INJECTION_TEST    fixes the query but drops a seeded order: it builds,
#                                        and `make test` fails (unit test count == 5)
#   nofix    FAULT_DB_TIMEOUT            builds and passes, but only a comment changes: the
#                                        replayed request still fails after the cutover
# Each must end with the patch commit reverted by a new commit (Asr-Reverts) on
# asr/incident-<id>, the service on the release it ran before (the deployed one rolled back),
# 0 failed requests from a constant load through the proxy during the whole remediation, the
# remediation and the plan failed with the reason in the journal, the incident open and
# escalated to a person, the audit chain intact and git fsck clean. The failed patch's release
# is bad, so a later `asr rollback` can never go back to it. Prints each case's figures.
source "$(dirname "$0")/lib.sh"
setup
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 500, healthy_timeout_ms: 5000,/' "$CFG"

# The test's own knowledge base: these three playbooks only, none of the demo's.
mkdir -p "$WORK/kb"
cat >"$WORK/kb/bad-compile.yaml" <<'EOF'
id: bad-patch-compile
title: Upstream call times out before the dependency answers (a patch that does not compile)
version: 1
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
cat >"$WORK/kb/bad-tests.yaml" <<'EOF'
id: bad-patch-tests
title: Malformed SQL in the orders report (a patch that breaks the tests)
version: 1
match:
  signature: FAULT_SQL_INJECTION_TEST
  service: shop
symptoms: |
  The orders report fails with a syntax error.
steps:
  - action: patch
    message: "db: fix the report query, and (wrongly) seed four orders instead of five"
    edits:
      - path: src/db.c
        search: |
          static const char ORDERS_REPORT_SQL[] = "SELECT FROM orders";
        replace: |
          static const char ORDERS_REPORT_SQL[] = "SELECT count(*) FROM orders";
      - path: src/db.c
        search: |
          " ('sprocket', 10, 250), ('gizmo', 3, 1250), ('doohickey', 5, 799))"
        replace: |
          " ('sprocket', 10, 250), ('gizmo', 3, 1250))"
verify:
  request: {method: POST, path: /test-fault/run}
  expect: {status: 200, body_contains: '"report":"ok"'}
  timeout_ms: 5000
EOF
cat >"$WORK/kb/bad-nofix.yaml" <<'EOF'
id: bad-patch-nofix
title: Database statement limit (a patch that builds and passes but fixes nothing)
version: 1
match:
  signature: FAULT_DB_TIMEOUT
  service: shop
symptoms: |
  The slow report is interrupted by its statement time limit.
steps:
  - action: patch
    message: "db: reword a comment (the limit stays 50 ms)"
    edits:
      - path: src/db.c
        search: |
          /* Time limit for one statement, in ms. Too short on purpose: the fix for fault 3. */
        replace: |
          /* Time limit for one statement, in milliseconds. */
verify:
  request: {method: POST, path: /test-fault/db-timeout}
  expect: {status: 200, body_contains: '"status":"ok"', body_not_contains: statement_timeout}
  timeout_ms: 10000
EOF
mkdir -p "$STATE"
"$ASR_BIN" kb add "$WORK/kb" --state-dir "$STATE" >/dev/null || fail "kb add"
start_daemon
wait_for "shop healthy" 20 healthy "$SHOP_PORT"

db_is() { [ "$(db "$1")" = "$2" ]; }
shop_commit() { status_field shop "s['commit']"; }
head_before=$(git -C "$REPO" rev-parse HEAD)
status_before=$(git -C "$REPO" status --porcelain)

# A constant load through the proxy: GET / and GET /orders in turn over a keep-alive connection,
# and every 10th request on a new connection (so the listener is exercised through the cutovers
# too). A failure is any non-2xx answer or a connection error. Stopped by stop_mixed_load, which
# sets LOAD_OK and LOAD_FAILED (and the first failures go to $WORK/load.err).
start_mixed_load() {
    rm -f "$WORK/load.txt" "$WORK/load.stop" "$WORK/load.err"
    python3 - "$SHOP_PORT" "$WORK/load" <<'PY' &
import http.client, os, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
ok = bad = 0
errs = []
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
paths = ["/", "/orders"]
n = 0
end = time.time() + 120
while time.time() < end and not os.path.exists(out + ".stop"):
    path = paths[n % 2]
    fresh = n % 10 == 9
    n += 1
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5) if fresh else conn
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        if 200 <= r.status < 300:
            ok += 1
        else:
            bad += 1
            errs.append(f"{time.time():.3f} GET {path}: {r.status}")
    except Exception as e:
        bad += 1
        errs.append(f"{time.time():.3f} GET {path}{' (new connection)' if fresh else ''}: {e!r}")
        if not fresh:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    finally:
        if fresh:
            c.close()
open(out + ".err", "w").write("\n".join(errs[:20]) + "\n")
open(out + ".txt", "w").write(f"{ok} {bad}\n")
PY
    LOAD_PID=$!
    wait_for "load running" 5 test "$(http GET "http://127.0.0.1:$SHOP_PORT/")" = 200
    sleep 0.2
}
stop_mixed_load() {
    touch "$WORK/load.stop"
    wait "$LOAD_PID" || fail "the load generator failed"
    read -r LOAD_OK LOAD_FAILED <"$WORK/load.txt" || fail "the load generator wrote no result"
}

FIGURES=""
PATCHES=""
# bad_patch NAME SIGNATURE FAULT-PATH REASON-PATTERN: triggers the fault under load, waits for its
# remediation to end, and checks everything the acceptance item asks.
bad_patch() {
    local name=$1 sig=$2 path=$3 why=$4
    local before id rid t0 t1 tip patch reverted now journal
    before=$(shop_commit)
    [ ${#before} = 40 ] || fail "$name: no active release before the case: '$before'"
    start_mixed_load
    t0=$(date +%s%3N)
    http POST "http://127.0.0.1:$SHOP_PORT$path" >/dev/null
    wait_for "$name: incident" 10 db_is "select count(*) from incidents where signature='$sig'" 1
    id=$(db "select id from incidents where signature='$sig'")
    wait_for "$name: remediation finished" 50 db_is \
        "select state in ('succeeded','failed','escalated','refused') from remediations where incident_id=$id" 1
    t1=$(date +%s%3N)
    # Keep the load on while the rollback's old slot drains and stops.
    sleep 0.5
    stop_mixed_load
    [ "$LOAD_FAILED" = 0 ] || fail "$name: $LOAD_FAILED of $((LOAD_OK + LOAD_FAILED)) requests failed during the remediation: $(cat "$WORK/load.err")"
    [ "$LOAD_OK" -gt 50 ] || fail "$name: the load served only $LOAD_OK requests"
    pass "$name: $LOAD_OK requests served, 0 failed"

    rid=$(db "select id from remediations where incident_id=$id")
    expect_eq "$name: playbook" "bad-patch-$name" \
        "$(db "select json_extract(body, '$.playbook') from plans where incident_id=$id order by id desc limit 1")"
    expect_eq "$name: remediation" failed "$(db "select state from remediations where id=$rid")"
    # The branch: the patch commit on the release's commit, then its revert.
    tip=$(git -C "$REPO" rev-parse "refs/heads/asr/incident-$id") || fail "$name: no branch asr/incident-$id"
    expect_eq "$name: the patch and its revert on asr/incident-$id" 2 \
        "$(git -C "$REPO" rev-list --count "$tip" "^$before")"
    patch=$(git -C "$REPO" rev-parse "$tip^")
    expect_eq "$name: the patch's parent is the release's commit" "$before" "$(git -C "$REPO" rev-parse "$patch^")"
    git -C "$REPO" log -1 --format=%B "$patch" | grep -q "^Asr-Incident: $id$" || fail "$name: patch trailers"
    [ -n "$(git -C "$REPO" diff "$before" "$patch")" ] || fail "$name: the patch commit changes nothing"
    reverted=$(git -C "$REPO" log -1 --format=%B "$tip" | sed -n 's/^Asr-Reverts: //p')
    expect_eq "$name: Asr-Reverts names the patch" "$patch" "$reverted"
    expect_eq "$name: the revert restores the release's tree" "" "$(git -C "$REPO" diff "$before" "$tip")"
    # The service: on the release it ran before, healthy.
    now=$(shop_commit)
    expect_eq "$name: shop still on its last good release" "$before" "$now"
    expect_eq "$name: shop healthy" healthy "$(status_field shop "s['health']")"
    expect_eq "$name: that release is good" good \
        "$(db "select state from releases where service='shop' and commit_sha='$before'")"
    expect_eq "$name: the patch's release is bad" bad \
        "$(db "select state from releases where service='shop' and commit_sha='$patch'")"
    # The plan and the reason.
    expect_eq "$name: plan marked failed" failed "$(db "select status from plans where incident_id=$id order by id desc limit 1")"
    journal=$(db "select detail from journal where remediation_id=$rid and phase='result' order by id")
    grep -qE "$why" <<<"$journal" || fail "$name: the journal should say why ($why): $journal"
    grep -q "reverted by commit $tip" <<<"$journal" || fail "$name: the journal should record the revert: $journal"
    # The incident: open, for a person.
    expect_eq "$name: incident still open" open "$(db "select status from incidents where id=$id")"
    grep -q "incident $id escalated to a person: remediation $rid failed" "$WORK/daemon.log" ||
        fail "$name: the escalation should be in the log"
    "$ASR_BIN" audit verify --state-dir "$STATE" >/dev/null || fail "$name: audit verify"
    git -C "$REPO" fsck --strict >/dev/null 2>&1 || fail "$name: git fsck"
    FIGURES+="$(printf '  %-8s remediation %5d ms, %6d requests served, %d failed' \
        "$name" "$((t1 - t0))" "$LOAD_OK" "$LOAD_FAILED")"$'\n'
    REM_ID=$rid
    PATCHES+=" $patch"
}

# 1. Does not compile: the build fails, nothing is deployed.
bad_patch compile FAULT_EXTERNAL_API_LATENCY /test-fault/external-api 'build failed'
# 2. Fails the tests: built, `make test` fails, nothing is deployed.
bad_patch tests FAULT_SQL_INJECTION_TEST /test-fault/run 'test failed'
rid=$REM_ID
db "select detail from journal where remediation_id=$rid and phase='result'" | grep -q 'build failed' &&
    fail "tests: the build should have passed"
# 3. Builds and passes, but the fault stays: deployed, verified not fixed, rolled back.
last_deploy=$(db "select coalesce(max(id), 0) from deployments where service='shop'")
bad_patch nofix FAULT_DB_TIMEOUT /test-fault/db-timeout 'replay of POST /test-fault/db-timeout: status 500, want 200'
rid=$REM_ID
expect_eq "nofix: the patch was deployed, then rolled back" "deploy:succeeded,rollback:succeeded" \
    "$(db "select group_concat(kind || ':' || outcome) from (select * from deployments where service='shop' and id > $last_deploy order by id)")"
expect_eq "nofix: the rollback succeeded" 1 \
    "$(db "select ok from journal where remediation_id=$rid and idem_key like 'rem:%:rollback:%' and phase='result'")"

# A later rollback (an operator's, or a plan's rollback step) must never pick a failed patch's
# release as the last good one.
"$ASR_BIN" rollback shop --state-dir "$STATE" >/dev/null 2>&1 || true
now=$(shop_commit)
case "$PATCHES " in *" $now "*) fail "asr rollback went to a failed patch's release $now" ;; esac
pass "asr rollback never picks a failed patch's release (shop on ${now:0:12})"

expect_eq "operator's HEAD untouched" "$head_before" "$(git -C "$REPO" rev-parse HEAD)"
expect_eq "operator's work tree untouched" "$status_before" "$(git -C "$REPO" status --porcelain)"
log "figures (remediation: from the fault to its final state, load through the proxy):"
printf '%s' "$FIGURES" >&2
pass "bad patches: reverted, rolled back, 0 failed requests, escalated"
