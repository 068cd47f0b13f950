# `asr deploy` builds a new commit, cuts over blue/green with no failed request, and drains the
# old slot; deploying the active commit again is a forced redeploy without a rebuild; and
# `asr rollback` returns to the previous good release without rebuilding.
source "$(dirname "$0")/lib.sh"
setup
start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
c1=$(git -C "$REPO" rev-parse HEAD)
old_pid=$(status_field shop "s['pid']")

# A new commit: the service now answers GET / with an "edition" field (code and test change).
replace_once "$REPO/app/src/routes.c" '{\"service\":\"shop\",' '{\"service\":\"shop\",\"edition\":\"two\",'
replace_once "$REPO/app/tests/run.sh" "'^\{\"service\":\"shop\"," "'^\{\"service\":\"shop\",\"edition\":\"two\","
c2=$(git_commit "second edition")

# Keep requests flowing during the cutovers and count every non-200.
start_load /
"$ASR_BIN" deploy shop --state-dir "$STATE" > "$WORK/deploy1.txt" 2>&1 || { cat "$WORK/deploy1.txt"; fail "deploy of $c2 failed"; }
grep -q "built and tested" "$WORK/deploy1.txt" || fail "deploy did not build: $(cat "$WORK/deploy1.txt")"
expect_eq "commit after deploy" "$c2" "$(status_field shop "s['commit']")"
expect_eq "slot after deploy" green "$(status_field shop "s['active_slot']")"
curl -s "http://127.0.0.1:$SHOP_PORT/" | grep -q '"edition":"two"' || fail "new code not served"
pass "new code served"
wait_for "old slot stopped" 10 bash -c "! kill -0 $old_pid"
pass "old slot process $old_pid stopped after draining"

# Forced redeploy of the active commit: full cutover, no rebuild.
"$ASR_BIN" deploy shop --state-dir "$STATE" > "$WORK/deploy2.txt" 2>&1 || fail "redeploy failed: $(cat "$WORK/deploy2.txt")"
grep -q "already built" "$WORK/deploy2.txt" || fail "redeploy rebuilt: $(cat "$WORK/deploy2.txt")"
expect_eq "slot after redeploy" blue "$(status_field shop "s['active_slot']")"
expect_eq "commit after redeploy" "$c2" "$(status_field shop "s['commit']")"

# Rollback: back to c1 without a rebuild.
"$ASR_BIN" rollback shop --state-dir "$STATE" > "$WORK/rollback.txt" 2>&1 || fail "rollback failed: $(cat "$WORK/rollback.txt")"
grep -q "already built" "$WORK/rollback.txt" || fail "rollback rebuilt"
expect_eq "commit after rollback" "$c1" "$(status_field shop "s['commit']")"
curl -s "http://127.0.0.1:$SHOP_PORT/" | grep -q '"edition"' && fail "old code not restored"
pass "old code served again"

# Deploying by --ref works too, and an unknown ref is a clear error.
"$ASR_BIN" deploy shop --ref "${c2:0:10}" --state-dir "$STATE" >/dev/null 2>&1 || fail "deploy --ref failed"
expect_eq "commit after deploy --ref" "$c2" "$(status_field shop "s['commit']")"
if "$ASR_BIN" deploy shop --ref no-such-branch --state-dir "$STATE" 2> "$WORK/err.txt"; then fail "unknown ref accepted"; fi
grep -q "cannot resolve 'no-such-branch'" "$WORK/err.txt" || fail "unclear error: $(cat "$WORK/err.txt")"
pass "unknown ref rejected: $(cat "$WORK/err.txt")"

stop_load
ok=$LOAD_OK
bad=$LOAD_FAILED
[ "$ok" -gt 100 ] || fail "too few requests during the deploys ($ok)"
expect_eq "failed requests during 4 cutovers ($ok ok)" 0 "$bad"
expect_eq "deployments recorded" "start:succeeded deploy:succeeded deploy:succeeded rollback:succeeded deploy:succeeded" \
    "$(db "select kind||':'||outcome from deployments where service='shop' order by id" | tr '\n' ' ' | sed 's/ $//')"
