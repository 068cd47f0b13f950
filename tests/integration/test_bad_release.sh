# A commit that builds and passes its tests but whose /health fails: the old release keeps
# serving throughout (no failed request), the new slot is stopped, the release is marked bad and
# the deployment is recorded as rolled back.
source "$(dirname "$0")/lib.sh"
setup
# Give up on an unhealthy slot after 2 s instead of 10 s, to keep the test short.
sed -i 's/healthy_timeout_ms: [0-9]*/healthy_timeout_ms: 2000/' "$CFG"
grep -q "healthy_timeout_ms: 2000" "$CFG" || fail "could not set the deploy timeout"
start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
good=$(git -C "$REPO" rev-parse HEAD)

# The bad commit: /health answers 503, and the test that would catch it is skipped.
replace_once "$REPO/app/src/routes.c" 'reply_str(app, conn, MHD_HTTP_OK, "{\"status\":\"ok\"}")' \
    'reply_str(app, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "{\"status\":\"broken\"}")'
replace_once "$REPO/app/Makefile" $'\t./tests/run.sh\n' $'\t@echo integration tests skipped\n'
bad=$(git_commit "break /health")

start_load /health
if "$ASR_BIN" deploy shop --state-dir "$STATE" > "$WORK/deploy.txt" 2>&1; then
    fail "deploy of a release with failing health succeeded: $(cat "$WORK/deploy.txt")"
fi
grep -q "did not become healthy" "$WORK/deploy.txt" || fail "unclear deploy error: $(cat "$WORK/deploy.txt")"
pass "deploy refused: $(tail -n 1 "$WORK/deploy.txt")"
stop_load
ok=$LOAD_OK
bad_count=$LOAD_FAILED
[ "$ok" -gt 50 ] || fail "too few requests ($ok)"
expect_eq "failed requests while the bad release was tried ($ok ok)" 0 "$bad_count"

expect_eq "still serving the good commit" "$good" "$(status_field shop "s['commit']")"
expect_eq "health" healthy "$(status_field shop "s['health']")"
expect_eq "idle slot stopped" empty "$(status_field shop "[x for x in s['slots'] if not x['active']][0]['state']")"
expect_eq "bad release state" bad "$(db "select state from releases where commit_sha='$bad'")"
db "select reason from releases where commit_sha='$bad'" | grep -q "not healthy within 2000 ms" || fail "release reason: $(db "select reason from releases where commit_sha='$bad'")"
expect_eq "deployment outcome" rolled_back "$(db "select outcome from deployments where to_release=(select id from releases where commit_sha='$bad')")"
expect_eq "last deployment in status" rolled_back "$(status_field shop "s['last_deployment']['outcome']")"

# A commit whose build fails is recorded as failed with its output; nothing changes either.
echo 'this is not C' >> "$REPO/app/src/main.c"
broken=$(git_commit "does not compile")
if "$ASR_BIN" deploy shop --state-dir "$STATE" > "$WORK/deploy2.txt" 2>&1; then fail "broken build deployed"; fi
grep -q "build failed" "$WORK/deploy2.txt" || fail "unclear build error: $(cat "$WORK/deploy2.txt")"
expect_eq "failed build outcome" failed "$(db "select outcome from deployments where to_release=(select id from releases where commit_sha='$broken')")"
db "select build_output from releases where commit_sha='$broken'" > "$WORK/build_output.txt"
grep -q "error" "$WORK/build_output.txt" || fail "build output not stored"
expect_eq "still serving the good commit" "$good" "$(status_field shop "s['commit']")"
[ ! -e "$STATE/releases/shop/$broken.partial" ] || fail "partial release dir left behind"
pass "failed build left no partial release"
