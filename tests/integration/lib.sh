# lib.sh - helpers for the integration tests: a private copy of the demo in its own git
# repository, free ports, a real `asr run` daemon, and checks that fail loudly.
#
# Every test sources this file, calls `setup`, and gets: $WORK (temp dir), $REPO (git repo with
# app/ and upstream/), $CFG (config with free ports), $STATE (state dir), $SHOP_PORT and
# $UPSTREAM_PORT (proxy ports). The EXIT trap stops the daemon and removes $WORK.
set -euo pipefail

ASR_SOURCE_DIR=${ASR_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
ASR_BIN=${ASR_BIN:-$ASR_SOURCE_DIR/build/asr}
DAEMON_PID=""
FAILURES=0

log() { printf '[%s] %s\n' "$(date +%H:%M:%S.%3N)" "$*" >&2; }
fail() {
    log "FAIL: $*"
    if [ -n "${WORK:-}" ] && [ -f "$WORK/daemon.log" ]; then
        log "--- last lines of the daemon log ---"
        tail -n 40 "$WORK/daemon.log" >&2
    fi
    exit 1
}
pass() { log "ok: $*"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

git_commit() { # message
    git -C "$REPO" add -A
    git -C "$REPO" -c user.name=asr-test -c user.email=test@asr.invalid commit -qm "$1"
    git -C "$REPO" rev-parse HEAD
}

# Writes $CFG from the demo config with the proxy ports replaced; extra YAML for the shop
# service can be passed as $1 (indented by 4 spaces).
write_config() {
    sed -e "s/127.0.0.1:8080/127.0.0.1:$SHOP_PORT/" -e "s/127.0.0.1:8081/127.0.0.1:$UPSTREAM_PORT/g" \
        "$ASR_SOURCE_DIR/demo/asr.yaml" > "$CFG"
    if [ -n "${1:-}" ]; then
        printf '%s\n' "$1" >> "$CFG"
    fi
}

setup() {
    WORK=$(mktemp -d /tmp/asr-it.XXXXXX)
    trap teardown EXIT
    REPO=$WORK/repo
    STATE=$WORK/state
    mkdir -p "$REPO"
    cp -r "$ASR_SOURCE_DIR/demo/app" "$ASR_SOURCE_DIR/demo/upstream" "$REPO/"
    make -s -C "$REPO/app" clean >/dev/null 2>&1 || true
    make -s -C "$REPO/upstream" clean >/dev/null 2>&1 || true
    git -C "$REPO" init -q
    git_commit "demo service" >/dev/null
    SHOP_PORT=$(free_port)
    UPSTREAM_PORT=$(free_port)
    CFG=$REPO/asr.yaml
    write_config
}

teardown() {
    local rc=$?
    stop_daemon || true
    # Nothing the test started may outlive it.
    pkill -KILL -f "$WORK/" 2>/dev/null || true
    rm -rf "$WORK"
    return $rc
}

start_daemon() {
    "$ASR_BIN" run -c "$CFG" --state-dir "$STATE" >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
}

stop_daemon() {
    [ -n "$DAEMON_PID" ] || return 0
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    local rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=""
    return $rc
}

# http METHOD URL [extra curl args...]: prints the status code (000 on connection failure).
http() {
    local m=$1 u=$2
    shift 2
    curl -s -o /dev/null -w '%{http_code}' -m 5 -X "$m" "$@" "$u" || true
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls every 50 ms until COMMAND succeeds.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s waiting for: $what"
        sleep 0.05
    done
}

healthy() { [ "$(http GET "http://127.0.0.1:$1/health")" = 200 ]; }

# status_field SERVICE PYTHON-EXPR: evaluates an expression over the service's status JSON `s`.
status_field() {
    "$ASR_BIN" status --state-dir "$STATE" --json |
        python3 -c "import json,sys; d=json.load(sys.stdin); s=[x for x in d['services'] if x['name']=='$1'][0]; print($2)"
}

# db QUERY: runs a read-only SQL query on the state database (python's sqlite3).
db() {
    python3 -c "import sqlite3,sys; c=sqlite3.connect('file:$STATE/asr.db?mode=ro', uri=True); [print('|'.join(map(str,r))) for r in c.execute(sys.argv[1])]" "$1"
}

expect_eq() { # what expected actual
    [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
    pass "$1 = $3"
}

# replace_once FILE OLD NEW: replaces the single occurrence of OLD in FILE; fails if OLD is not
# there exactly once (so a test never edits the demo silently wrong).
replace_once() {
    python3 - "$@" <<'PY' || fail "could not edit $1"
import pathlib, sys
path, old, new = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
text = path.read_text()
if text.count(old) != 1:
    sys.exit(f"{path}: expected one occurrence of {old!r}, found {text.count(old)}")
path.write_text(text.replace(old, new))
PY
}

# start_load PATH: sends GET PATH to the shop's proxy over one keep-alive connection, in a loop,
# until stop_load, which sets LOAD_OK and LOAD_FAILED (a failure is any non-200 or connection
# error). Call stop_load directly, not in $(...): only this shell can wait for the loader.
start_load() {
    rm -f "$WORK/load.txt" "$WORK/load.stop"
    python3 - "$SHOP_PORT" "$1" "$WORK/load" <<'PY' &
import http.client, os, sys, time
port, path, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ok = bad = 0
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
end = time.time() + 120
while time.time() < end and not os.path.exists(out + ".stop"):
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.status == 200:
            ok += 1
        else:
            bad += 1
    except Exception:
        bad += 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
open(out + ".txt", "w").write(f"{ok} {bad}\n")
PY
    LOAD_PID=$!
    sleep 0.3
}

stop_load() {
    touch "$WORK/load.stop"
    wait "$LOAD_PID" || fail "the load generator failed"
    read -r LOAD_OK LOAD_FAILED < "$WORK/load.txt" || fail "the load generator wrote no result"
}
