# The CLI contract: --help exits 0, usage errors exit 2, failures exit 1, errors read
# "asr: <what>: <why>" on stderr.
source "$(dirname "$0")/lib.sh"
setup
code() { local rc=0; "$@" >/dev/null 2>"$WORK/err.txt" || rc=$?; echo "$rc"; }
expect_eq "asr --help" 0 "$(code "$ASR_BIN" --help)"
for c in run status deploy rollback config; do
    expect_eq "asr $c --help" 0 "$(code "$ASR_BIN" "$c" --help)"
done
expect_eq "no command" 2 "$(code "$ASR_BIN")"
expect_eq "unknown command" 2 "$(code "$ASR_BIN" frobnicate)"
grep -q "^asr: usage: unknown command 'frobnicate'" "$WORK/err.txt" || fail "message: $(cat "$WORK/err.txt")"
expect_eq "unknown option" 2 "$(code "$ASR_BIN" status --frob)"
expect_eq "run without -c" 2 "$(code "$ASR_BIN" run)"
expect_eq "deploy without service" 2 "$(code "$ASR_BIN" deploy --state-dir "$STATE")"
expect_eq "option without value" 2 "$(code "$ASR_BIN" deploy shop --ref)"
expect_eq "deploy without daemon" 1 "$(code "$ASR_BIN" deploy shop --state-dir "$STATE")"
grep -q "^asr: deploy: no daemon is running for state dir" "$WORK/err.txt" || fail "message: $(cat "$WORK/err.txt")"
pass "$(cat "$WORK/err.txt")"
expect_eq "config check of a missing file" 1 "$(code "$ASR_BIN" config check -c "$WORK/nope.yaml")"
grep -q "^asr: config: " "$WORK/err.txt" || fail "message: $(cat "$WORK/err.txt")"

# With a daemon: unknown service, a second daemon on the same state dir.
start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
expect_eq "deploy of an unknown service" 1 "$(code "$ASR_BIN" deploy nosuch --state-dir "$STATE")"
grep -q "unknown service 'nosuch'" "$WORK/err.txt" || fail "message: $(cat "$WORK/err.txt")"
expect_eq "second daemon on the same state dir" 1 "$(code "$ASR_BIN" run -c "$CFG" --state-dir "$STATE")"
grep -q "another asr daemon is already running" "$WORK/err.txt" || fail "message: $(cat "$WORK/err.txt")"
healthy "$SHOP_PORT" || fail "first daemon disturbed"
# A deploy while another is running is refused with a clear error.
"$ASR_BIN" deploy upstream --state-dir "$STATE" >/dev/null 2>&1 &
first=$!
sleep 0.05
rc=$(code "$ASR_BIN" deploy upstream --state-dir "$STATE")
wait "$first" || fail "first deploy failed"
if [ "$rc" = 1 ]; then
    grep -q "already in progress" "$WORK/err.txt" || fail "message: $(cat "$WORK/err.txt")"
    pass "concurrent deploy refused: $(cat "$WORK/err.txt")"
else
    pass "second deploy ran after the first finished (it was fast)"
fi
