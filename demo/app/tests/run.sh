#!/usr/bin/env bash
# run.sh - the shop's integration test: the real binary, real requests.
#
# Starts ./shop twice on free ports (with ../upstream as its slow API),
# exercises every route with curl, checks each fault's status code and its
# exact stderr line (with and without "X-Asr-Verification: 1"), checks the
# graceful SIGTERM stop and the crash, and cleans up after itself.
#
# Each planted fault may be present (the code as shipped) or fixed (after
# asr's patch): the release build runs this test on both. A fault's answer
# and its log lines must agree with each other; EXPECT_FAULTS=present or
# EXPECT_FAULTS=fixed makes the test demand one state for all three.
#
# Environment: SHOP (default ./shop), UPSTREAM_DIR (default ../upstream),
# EXPECT_FAULTS (any|present|fixed, default any).

set -u

SHOP=${SHOP:-./shop}
UPSTREAM_DIR=${UPSTREAM_DIR:-../upstream}
EXPECT_FAULTS=${EXPECT_FAULTS:-any}
# The upstream's delay in this test: longer than the faulty 500 ms timeout,
# shorter than any sensible fix (e.g. 3000 ms), and short enough to keep
# the test quick.
UPSTREAM_DELAY_MS=700

TMP=$(mktemp -d "${TMPDIR:-/tmp}/shop-test.XXXXXX") || exit 1
PIDS=()
failures=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -c 0 # the crash test aborts on purpose: no core file

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

ok() {
    echo "ok: $*"
}

# start NAME LINE-PREFIX CMD...: runs CMD with stdout/stderr in $TMP/NAME.out
# and .err, waits for its "<prefix> listening on HOST:PORT" line and sets
# the variables <NAME>_PID and <NAME>_PORT.
start() {
    local name=$1 prefix=$2 pid line port i
    shift 2
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    pid=$!
    PIDS+=("$pid")
    for ((i = 0; i < 200; i++)); do
        line=$(head -n 1 "$TMP/$name.out" 2>/dev/null)
        if [[ $line =~ ^$prefix\ listening\ on\ .*:([0-9]+)$ ]]; then
            port=${BASH_REMATCH[1]}
            printf -v "${name}_PID" %s "$pid"
            printf -v "${name}_PORT" %s "$port"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.025
    done
    echo "FAIL: $name did not start: $(cat "$TMP/$name.out" "$TMP/$name.err")" >&2
    exit 1
}

# wait_exit PID SECONDS: waits for PID to end and sets EXIT_STATUS to its
# exit status, or to "timeout" after SECONDS (the process is then killed).
# (Not a $(...) function: only this shell can wait for its children.)
wait_exit() {
    local pid=$1 i
    for ((i = 0; i < $2 * 50; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            EXIT_STATUS=$?
            return
        fi
        sleep 0.02
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    EXIT_STATUS=timeout
}

# req NAME METHOD URL [curl args...]: the status goes to $TMP/NAME.code,
# the body to $TMP/NAME.body, curl's exit status to $TMP/NAME.rc.
req() {
    local name=$1 method=$2 url=$3
    shift 3
    curl -s --max-time 10 -X "$method" -o "$TMP/$name.body" -w '%{http_code}' "$@" "$url" \
        >"$TMP/$name.code" 2>/dev/null
    echo $? >"$TMP/$name.rc"
}

# expect NAME STATUS BODY-PATTERN: checks a finished req.
expect() {
    local name=$1 want=$2 pattern=$3 code body
    code=$(cat "$TMP/$name.code")
    body=$(cat "$TMP/$name.body" 2>/dev/null)
    if [[ $code != "$want" ]]; then
        fail "$name: status $code, want $want (body: $body)"
    elif [[ ! $body =~ $pattern ]]; then
        fail "$name: body $body does not match $pattern"
    else
        ok "$name: $code ${body%%$'\r'*}"
    fi
}

# count_lines FILE LINE: how many lines of FILE are exactly LINE.
count_lines() {
    grep -cFx -- "$2" "$1"
}

# check_fault NAME STATE-SEEN: applies EXPECT_FAULTS to one fault's state.
check_state() {
    if [[ $EXPECT_FAULTS != any && $EXPECT_FAULTS != "$2" ]]; then
        fail "fault $1 is $2, EXPECT_FAULTS=$EXPECT_FAULTS"
    else
        ok "fault $1 is $2"
    fi
}

# fault_lines FILE LINE STATE: the fault's line must appear exactly once
# plain and once with " verification=1" when present, never when fixed.
fault_lines() {
    local file=$1 line=$2 state=$3 want=1
    [[ $state == fixed ]] && want=0
    if [[ $(count_lines "$file" "$line") != "$want" ]]; then
        fail "want $want line(s) \"$line\" in stderr, got: $(cat "$file")"
    fi
    if [[ $(count_lines "$file" "$line verification=1") != "$want" ]]; then
        fail "want $want line(s) \"$line verification=1\" in stderr, got: $(cat "$file")"
    fi
}

# --- start: the upstream, shop A (most tests) and shop B (unreachable, crash)
HAVE_UPSTREAM=0
if [[ -f $UPSTREAM_DIR/Makefile ]] && make -s -C "$UPSTREAM_DIR" >"$TMP/upstream-build.log" 2>&1; then
    HAVE_UPSTREAM=1
    start UP upstream "$UPSTREAM_DIR/upstream" --port 0 --delay-ms "$UPSTREAM_DELAY_MS"
    UPSTREAM_URL=http://127.0.0.1:$UP_PORT/slow
else
    echo "SKIP: upstream tests: $UPSTREAM_DIR cannot be built ($(cat "$TMP/upstream-build.log" 2>/dev/null))"
    UPSTREAM_URL=http://127.0.0.1:9/slow
fi
start A shop "$SHOP" --port 0 --db "$TMP/a.db" --upstream "$UPSTREAM_URL"
start B shop "$SHOP" --port 0 --db "$TMP/b.db" --upstream "$UPSTREAM_URL"
BASE=http://127.0.0.1:$A_PORT

# --- the plain routes
req root GET "$BASE/"
expect root 200 '^\{"service":"shop","version":"[^"]+"\}$'
req version GET "$BASE/version"
expect version 200 '^\{"commit":"[^"]+"\}$'
if [[ $(sed 's/.*"version":"\([^"]*\)".*/\1/' "$TMP/root.body") != \
    $(sed 's/.*"commit":"\([^"]*\)".*/\1/' "$TMP/version.body") ]]; then
    fail "GET / and GET /version name different commits"
fi
req health GET "$BASE/health"
expect health 200 '^\{"status":"ok"\}$'
req orders GET "$BASE/orders"
expect orders 200 '^\{"orders":5\}$'
req head HEAD "$BASE/" --head
expect head 200 '^HTTP/1.1 200 ' 
req notfound GET "$BASE/no-such-page"
expect notfound 404 '"error":"not_found"'
req post_health POST "$BASE/health"
expect post_health 405 '"error":"method_not_allowed"'
req get_fault GET "$BASE/test-fault/run"
expect get_fault 405 '"error":"method_not_allowed"'

# --- the three faults, each plain and with the verification header, all at
# once; /health must stay fast while they run.
V=(-H 'X-Asr-Verification: 1')
bg=()
req run POST "$BASE/test-fault/run" & bg+=($!)
req run_v POST "$BASE/test-fault/run" "${V[@]}" & bg+=($!)
req db POST "$BASE/test-fault/db-timeout" & bg+=($!)
req db_v POST "$BASE/test-fault/db-timeout" "${V[@]}" & bg+=($!)
if ((HAVE_UPSTREAM)); then
    req ext POST "$BASE/test-fault/external-api" & bg+=($!)
    req ext_v POST "$BASE/test-fault/external-api" "${V[@]}" & bg+=($!)
fi
sleep 0.1
# Served behind the external call (500 ms when faulty, 700 ms fixed), /health would take 0.4 s or
# more from here; 0.35 s leaves room for a loaded machine (a busy CI runner starts curl slowly).
t=$(curl -s -o /dev/null -w '%{time_total}' --max-time 5 "$BASE/health")
if awk -v t="$t" 'BEGIN { exit !(t < 0.35) }'; then
    ok "GET /health took ${t}s while the slow routes ran"
else
    fail "GET /health took ${t}s while the slow routes ran"
fi
wait "${bg[@]}"

# Fault 1: malformed SQL.
line='FAULT_SQL_INJECTION_TEST route=/test-fault/run reason=invalid_sql_executed'
if [[ $(cat "$TMP/run.code") == 500 ]]; then state=present; else state=fixed; fi
check_state run $state
if [[ $state == present ]]; then
    expect run 500 '"error":"invalid_sql"'
    expect run_v 500 '"error":"invalid_sql"'
else
    expect run 200 '"report":"ok"'
    expect run_v 200 '"report":"ok"'
fi
fault_lines "$TMP/A.err" "$line" $state

# Fault 3: statement time limit.
line='FAULT_DB_TIMEOUT route=/test-fault/db-timeout reason=statement_timeout'
if [[ $(cat "$TMP/db.code") == 500 ]]; then state=present; else state=fixed; fi
check_state db-timeout $state
if [[ $state == present ]]; then
    expect db 500 '"error":"statement_timeout"'
    expect db_v 500 '"error":"statement_timeout"'
else
    expect db 200 '"status":"ok","value":[0-9]+'
    expect db_v 200 '"status":"ok","value":[0-9]+'
fi
fault_lines "$TMP/A.err" "$line" $state

# Fault 2: upstream timeout. The latency is checked against the timeout
# the shop reports in its answer.
if ((HAVE_UPSTREAM)); then
    if [[ $(cat "$TMP/ext.code") == 504 ]]; then state=present; else state=fixed; fi
    check_state external-api $state
    if [[ $state == present ]]; then
        expect ext 504 '"error":"upstream_timeout"'
        expect ext_v 504 '"error":"upstream_timeout"'
        timeout_ms=$(sed -n 's/.*"timeout_ms":\([0-9]*\).*/\1/p' "$TMP/ext.body")
        re='^FAULT_EXTERNAL_API_LATENCY route=/test-fault/external-api reason=external_timeout latency=([0-9]+\.[0-9]{3})( verification=1)?$'
        n=0
        nv=0
        while IFS= read -r l; do
            [[ $l =~ $re ]] || continue
            if [[ -n ${BASH_REMATCH[2]} ]]; then nv=$((nv + 1)); else n=$((n + 1)); fi
            if ! awk -v l="${BASH_REMATCH[1]}" -v t="$timeout_ms" \
                'BEGIN { exit !(l * 1000 >= t - 5 && l * 1000 < t + 500) }'; then
                fail "latency ${BASH_REMATCH[1]} s is not about the ${timeout_ms} ms timeout"
            fi
        done <"$TMP/A.err"
        if ((n != 1 || nv != 1)); then
            fail "want one FAULT_EXTERNAL_API_LATENCY line plain and one with verification=1, got: $(cat "$TMP/A.err")"
        fi
    else
        expect ext 200 "^\\{\"upstream\":\"ok\",\"delay_ms\":$UPSTREAM_DELAY_MS\\}\$"
        expect ext_v 200 '"upstream":"ok"'
        if grep -q '^FAULT_EXTERNAL_API_LATENCY' "$TMP/A.err"; then
            fail "fixed, yet a FAULT_EXTERNAL_API_LATENCY line: $(cat "$TMP/A.err")"
        fi
    fi
fi

# --- graceful stop of A. Three connections are open when SIGTERM comes:
#   - a slow fault request (the upstream call when there is one), in flight;
#   - fd 4: a request whose headers are sent but whose body is held back, so
#     it stays in flight until the test finishes it, however fast the rest;
#   - fd 3: an idle keep-alive connection.
# While stopping, new connections must be refused and the answers on fd 3
# and fd 4 must say "Connection: close". When both finish, A exits 0.
slow=db
slow_url=$BASE/test-fault/db-timeout
if ((HAVE_UPSTREAM)); then
    slow=ext
    slow_url=$BASE/test-fault/external-api
fi
want_slow=$(cat "$TMP/$slow.code")
trap '' PIPE # a write to a connection the shop closed must fail, not kill the test

# read_reply FD: reads one response; headers in REPLY_HEADERS, status in REPLY_STATUS.
read_reply() {
    local fd=$1 l len=0 body first=1
    REPLY_HEADERS=""
    REPLY_STATUS=""
    while IFS= read -r -t 2 l <&"$fd"; do
        l=${l%$'\r'}
        [[ -z $l ]] && break
        if ((first)); then
            REPLY_STATUS=${l#HTTP/1.1 }
            REPLY_STATUS=${REPLY_STATUS%% *}
            first=0
        fi
        REPLY_HEADERS+="$l"$'\n'
        if [[ ${l,,} =~ ^content-length:\ *([0-9]+) ]]; then len=${BASH_REMATCH[1]}; fi
    done
    if ((len > 0)); then
        IFS= read -r -t 2 -N "$len" body <&"$fd"
    fi
}

exec 3<>"/dev/tcp/127.0.0.1/$A_PORT"
printf 'GET /health HTTP/1.1\r\nHost: shop\r\n\r\n' >&3
read_reply 3
if [[ $REPLY_STATUS != 200 || ${REPLY_HEADERS,,} == *"connection: close"* ]]; then
    fail "keep-alive GET /health before the stop: status $REPLY_STATUS, headers: $REPLY_HEADERS"
fi
exec 4<>"/dev/tcp/127.0.0.1/$A_PORT"
printf 'POST /test-fault/no-such HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\n\r\n' >&4
req inflight POST "$slow_url" &
inflight_pid=$!
sleep 0.15
kill -TERM "$A_PID"
for ((i = 0; i < 100; i++)); do
    grep -qx 'shop stopping' "$TMP/A.out" && break
    sleep 0.01
done
if grep -qx 'shop stopping' "$TMP/A.out"; then ok "A printed 'shop stopping'"; else fail "no 'shop stopping' line"; fi
curl -s -o /dev/null --max-time 2 "$BASE/health"
rc=$?
if [[ $rc == 7 ]]; then
    ok "new connections are refused while stopping"
else
    fail "a new connection while stopping: curl exit $rc, want 7 (refused)"
fi
printf 'GET /health HTTP/1.1\r\nHost: shop\r\n\r\n' >&3
read_reply 3
if [[ $REPLY_STATUS == 200 && ${REPLY_HEADERS,,} == *"connection: close"* ]]; then
    ok "a keep-alive request while stopping is answered 200 with Connection: close"
else
    fail "keep-alive GET /health while stopping: status $REPLY_STATUS, headers: $REPLY_HEADERS"
fi
exec 3>&-
printf 'body' >&4
read_reply 4
if [[ $REPLY_STATUS == 404 && ${REPLY_HEADERS,,} == *"connection: close"* ]]; then
    ok "a request in flight at SIGTERM completes (404, Connection: close)"
else
    fail "request in flight at SIGTERM: status $REPLY_STATUS, headers: $REPLY_HEADERS"
fi
exec 4>&-
wait "$inflight_pid"
expect inflight "$want_slow" ''
wait_exit "$A_PID" 5
if [[ $EXIT_STATUS == 0 ]]; then ok "A exited 0 after SIGTERM"; else fail "A after SIGTERM: exit $EXIT_STATUS"; fi
if grep -qx 'shop stopped' "$TMP/A.out"; then ok "A printed 'shop stopped'"; else fail "no 'shop stopped' line"; fi

# --- B: an unreachable upstream (the upstream stopped), then the crash.
if ((HAVE_UPSTREAM)); then
    kill -TERM "$UP_PID"
    wait_exit "$UP_PID" 5
    if [[ $EXIT_STATUS == 0 ]]; then ok "upstream exited 0 after SIGTERM"; else fail "upstream after SIGTERM: exit $EXIT_STATUS"; fi
    req unreach POST "http://127.0.0.1:$B_PORT/test-fault/external-api" "${V[@]}"
    expect unreach 502 '"error":"upstream_unreachable"'
    if [[ $(count_lines "$TMP/B.err" 'UPSTREAM_UNREACHABLE route=/test-fault/external-api reason=connect_failed verification=1') != 1 ]]; then
        fail "want one UPSTREAM_UNREACHABLE line, got: $(cat "$TMP/B.err")"
    fi
fi
# bash reports B's death ("... Aborted ...") on its own: that line is expected.
req crash POST "http://127.0.0.1:$B_PORT/test-fault/crash"
if [[ $(cat "$TMP/crash.rc") == 52 ]]; then ok "crash: empty reply"; else fail "crash: curl exit $(cat "$TMP/crash.rc"), want 52 (empty reply)"; fi
wait_exit "$B_PID" 5
if [[ $EXIT_STATUS == 134 ]]; then ok "B aborted (exit 134)"; else fail "B after /test-fault/crash: exit $EXIT_STATUS, want 134 (SIGABRT)"; fi
if [[ $(count_lines "$TMP/B.err" 'FAULT_CRASH route=/test-fault/crash reason=abort') != 1 ]]; then
    fail "want one FAULT_CRASH line, got: $(cat "$TMP/B.err")"
fi

# Nothing but fault lines may reach stderr (libmicrohttpd's complaints would).
if grep -vE '^(FAULT_[A-Z_]+|UPSTREAM_[A-Z_]+) route=' "$TMP/A.err" "$TMP/B.err"; then
    fail "unexpected stderr lines (above)"
fi

if ((failures)); then
    echo "shop integration test: $failures failures" >&2
    exit 1
fi
echo "shop integration test: ok"
