# The daemon builds, tests and serves the demo on its proxy within 10 s of start, reports it in
# `asr status`, keeps release/deployment rows, and stops everything cleanly on SIGTERM.
source "$(dirname "$0")/lib.sh"
setup
t0=$(date +%s%N)
start_daemon
wait_for "shop healthy through the proxy" 10 healthy "$SHOP_PORT"
ms=$((($(date +%s%N) - t0) / 1000000))
pass "shop served /health 200 ${ms} ms after start, build and tests included"
[ "$ms" -lt 10000 ] || fail "took ${ms} ms (> 10 s)"

head=$(git -C "$REPO" rev-parse HEAD)
version=$(curl -s "http://127.0.0.1:$SHOP_PORT/version")
case "$version" in *"$head"*) pass "GET /version names the deployed commit" ;; *) fail "version '$version' does not name $head" ;; esac
expect_eq "root status" 200 "$(http GET "http://127.0.0.1:$SHOP_PORT/")"
wait_for "upstream healthy" 10 healthy "$UPSTREAM_PORT"

expect_eq "status health" healthy "$(status_field shop "s['health']")"
expect_eq "status commit" "$head" "$(status_field shop "s['commit']")"
expect_eq "status slot" blue "$(status_field shop "s['active_slot']")"
pid=$(status_field shop "s['pid']")
kill -0 "$pid" || fail "status pid $pid is not running"
expect_eq "last deployment" "start succeeded" "$(status_field shop "s['last_deployment']['kind']+' '+s['last_deployment']['outcome']")"
expect_eq "release state" good "$(db "select state from releases where service='shop'")"
expect_eq "build output stored" 1 "$(db "select length(build_output) > 0 and build_status = 0 and test_status = 0 from releases where service='shop'")"
# The human table names the service and its health.
"$ASR_BIN" status --state-dir "$STATE" | grep -Eq "^shop +healthy +blue" || fail "status table"
pass "status table"

# SIGTERM: the daemon exits 0, its services are stopped gracefully, the socket is gone.
stop_daemon || fail "daemon exited non-zero on SIGTERM"
kill -0 "$pid" 2>/dev/null && fail "service pid $pid still running after asr stopped"
grep -q "shop stopped" "$WORK/daemon.log" || fail "shop did not stop gracefully"
[ ! -e "$STATE/asr.sock" ] || fail "control socket left behind"
pass "clean stop"

# Status without a daemon reads the store.
"$ASR_BIN" status --state-dir "$STATE" | grep -q "daemon: not running" || fail "offline status"
pass "offline status"

# A restart of asr resumes the last release without rebuilding it.
start_daemon
wait_for "shop healthy after restart" 10 healthy "$SHOP_PORT"
grep -q "already built" "$WORK/daemon.log" || fail "restart rebuilt the release"
pass "restart resumed the built release"

# The proxy answers "Expect: 100-continue" itself (it reads bodies whole before forwarding), so a
# client that waits for the invitation is not stalled.
head -c 4096 /dev/zero | tr '\0' 'x' > "$WORK/body"
t0=$(date +%s%N)
code=$(curl -s -o /dev/null -w '%{http_code}' -m 10 --expect100-timeout 8 -H 'Expect: 100-continue' \
    --data-binary @"$WORK/body" "http://127.0.0.1:$SHOP_PORT/test-fault/run")
ms=$((($(date +%s%N) - t0) / 1000000))
expect_eq "POST with Expect: 100-continue" 500 "$code"
[ "$ms" -lt 2000 ] || fail "the client waited ${ms} ms for 100 Continue"
pass "body sent after 100 Continue in ${ms} ms"
