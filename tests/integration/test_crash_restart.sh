# A crashed slot is restarted at once and serves again within a fraction of a second; repeated
# crashes back off exponentially; past the restart budget the service is marked failed, and a
# deploy brings it back. The crashing request itself gets a 502, never a retry.
source "$(dirname "$0")/lib.sh"
setup
# Every crash counts as part of a loop (stable_ms is long), budget of 3 restarts per minute.
sed -i 's/^    restart: .*$/    restart: {backoff_initial_ms: 100, backoff_max_ms: 30000, stable_ms: 60000, budget: 3, window_ms: 60000}/' "$CFG"
grep -q "budget: 3," "$CFG" || fail "could not set the restart policy"
start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"

pid0=$(status_field shop "s['pid']")
# The crash route aborts the process mid-request: the client gets 502 from the proxy.
expect_eq "status of the crashing request" 502 "$(http POST "http://127.0.0.1:$SHOP_PORT/test-fault/crash")"
wait_for "shop back after crash 1" 5 healthy "$SHOP_PORT"
pid1=$(status_field shop "s['pid']")
[ "$pid1" != "$pid0" ] || fail "pid did not change"
expect_eq "restarts" 1 "$(status_field shop "s['restarts']")"

# SIGKILL: measure kill to first 200 through the proxy.
for i in 2 3; do
    pid=$(status_field shop "s['pid']")
    t0=$(date +%s%N)
    kill -KILL "$pid"
    wait_for "shop back after crash $i" 5 healthy "$SHOP_PORT"
    pass "crash $i: serving again after $((($(date +%s%N) - t0) / 1000000)) ms"
done
expect_eq "restarts" 3 "$(status_field shop "s['restarts']")"
# Back-off: the loop's delays were 0 (not applicable here: stable_ms is long), 100, 200 +-20%.
grep -o 'slot.restart_scheduled: slot=[a-z]* in [0-9]* ms (streak [0-9]*)' "$WORK/daemon.log" > "$WORK/delays.txt"
python3 - "$WORK/delays.txt" <<'PY' || fail "back-off delays wrong: $(cat "$WORK/delays.txt")"
import re, sys
d = [(int(a), int(b)) for a, b in re.findall(r"in (\d+) ms \(streak (\d+)\)", open(sys.argv[1]).read())]
assert [s for _, s in d] == [1, 2, 3], d
for (ms, s) in d:
    base = 100 * 2 ** (s - 1)
    assert 0.8 * base <= ms <= 1.2 * base, (ms, base)
print("delays", d)
PY
pass "exponential back-off: $(tr '\n' ';' < "$WORK/delays.txt")"

# The fourth crash within the window exceeds the budget: the service is failed, not restarted.
pid=$(status_field shop "s['pid']")
kill -KILL "$pid"
wait_for "service marked failed" 5 bash -c "[ \"\$(\"$ASR_BIN\" status --state-dir \"$STATE\" --json | python3 -c \"import json,sys; print([s for s in json.load(sys.stdin)['services'] if s['name']=='shop'][0]['health'])\")\" = failed ]"
pass "service failed after the budget"
grep -q "service.failed: 3 restarts within 60000 ms" "$WORK/daemon.log" || fail "failure event not logged"
expect_eq "event recorded" 1 "$(db "select count(*) from events where kind='service.failed' and service='shop'")"
expect_eq "no backend while failed" 503 "$(http GET "http://127.0.0.1:$SHOP_PORT/health")"

# A deploy brings a failed service back.
"$ASR_BIN" deploy shop --state-dir "$STATE" >/dev/null 2>&1 || fail "deploy after failure"
wait_for "shop healthy after deploy" 5 healthy "$SHOP_PORT"
expect_eq "health after deploy" healthy "$(status_field shop "s['health']")"
