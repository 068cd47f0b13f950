# Invalid configs give one clear line each and exit 1; SIGHUP with an invalid config keeps the
# daemon running on the old one; a valid SIGHUP adds and removes services.
source "$(dirname "$0")/lib.sh"
setup

check_rejected() { # name yaml expected-fragment
    printf '%s\n' "$2" > "$REPO/$1.yaml"
    local out rc=0
    out=$("$ASR_BIN" config check -c "$REPO/$1.yaml" 2>&1) || rc=$?
    expect_eq "$1: exit status" 1 "$rc"
    [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$1: expected one line, got: $out"
    case "$out" in *"$3"*) pass "$1: $out" ;; *) fail "$1: expected '$3' in: $out" ;; esac
}
base='services:
  - name: shop
    repo: ./app
    start: [./shop, --port, "${PORT}"]
    listen: 127.0.0.1:18080'
check_rejected unknown-key "$base
    colour: blue" "unknown-key.yaml:6: services[0].colour: unknown key"
check_rejected wrong-type "$base
    health: {rise: two}" "wrong-type.yaml:6: services[0].health.rise: expected a positive integer, got 'two'"
check_rejected missing-field 'services:
  - name: shop
    repo: ./app
    listen: 127.0.0.1:18080' "missing-field.yaml:2: services[0]: missing required key 'start'"
check_rejected malformed "$base
    build: [make" "malformed.yaml:"
check_rejected no-command "$base
    build: [no-such-build-tool]" "services[0].build: command 'no-such-build-tool' not found in PATH"
check_rejected bad-listen 'services:
  - name: shop
    repo: ./app
    start: [./shop]
    listen: 127.0.0.1:99999' "services[0].listen"
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "the demo config is rejected"
pass "the demo config is valid"
# `asr run` refuses an invalid config before doing anything.
rc=0
"$ASR_BIN" run -c "$REPO/unknown-key.yaml" --state-dir "$STATE" 2> "$WORK/run-err.txt" || rc=$?
expect_eq "asr run with an invalid config" 1 "$rc"
grep -q "unknown-key.yaml:6: services\[0\].colour: unknown key" "$WORK/run-err.txt" || fail "run error: $(cat "$WORK/run-err.txt")"

start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
wait_for "upstream healthy" 15 healthy "$UPSTREAM_PORT"
cp "$CFG" "$WORK/good.yaml"

# SIGHUP with an invalid config: rejected, logged, everything keeps running.
printf 'services: [\n' > "$CFG"
kill -HUP "$DAEMON_PID"
wait_for "reload rejection logged" 5 grep -q "config reload rejected" "$WORK/daemon.log"
kill -0 "$DAEMON_PID" || fail "daemon died on an invalid reload"
healthy "$SHOP_PORT" || fail "shop stopped serving after an invalid reload"
expect_eq "services still running" "shop upstream" "$("$ASR_BIN" status --state-dir "$STATE" --json | python3 -c 'import json,sys; print(" ".join(sorted(s["name"] for s in json.load(sys.stdin)["services"])))')"
expect_eq "rejection recorded" 1 "$(db "select count(*) from events where kind='config.reload_rejected'")"

# A valid config without the upstream: it is stopped and removed.
python3 - "$WORK/good.yaml" "$CFG" <<'PY'
import sys
text = open(sys.argv[1]).read()
head, rest = text.split("  - name: upstream", 1)
_, shop = rest.split("  - name: shop", 1)
open(sys.argv[2], "w").write(head + "  - name: shop" + shop)
PY
kill -HUP "$DAEMON_PID"
wait_for "upstream removed" 10 bash -c "! curl -s -m 1 -o /dev/null http://127.0.0.1:$UPSTREAM_PORT/health"
expect_eq "services after removal" "shop" "$("$ASR_BIN" status --state-dir "$STATE" --json | python3 -c 'import json,sys; print(" ".join(sorted(s["name"] for s in json.load(sys.stdin)["services"])))')"
healthy "$SHOP_PORT" || fail "shop stopped serving after a reload"

# And back: the upstream is added again and deployed.
cp "$WORK/good.yaml" "$CFG"
kill -HUP "$DAEMON_PID"
wait_for "upstream added back" 15 healthy "$UPSTREAM_PORT"
pass "upstream added back by reload"
stop_daemon || fail "daemon exit status"
