#!/usr/bin/env bash
# run.sh - the upstream's test: the real binary on a free port, real requests.
#
# Checks /health, the /slow delay, the --fail-rate share of 503s, 404/405,
# refused flags and the graceful SIGTERM stop with a request in flight.
# Cleans up its processes and files whatever happens.

set -u

UPSTREAM=${UPSTREAM:-./upstream}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/upstream-test.XXXXXX") || exit 1
PID=""
failures=0

cleanup() {
    if [[ -n $PID ]]; then
        kill -KILL "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

ok() {
    echo "ok: $*"
}

# req NAME METHOD PATH: status to $TMP/NAME.code, body to .body, seconds to .time.
req() {
    curl -s --max-time 10 -X "$2" -o "$TMP/$1.body" -w '%{http_code} %{time_total}' \
        "http://127.0.0.1:$PORT$3" >"$TMP/$1.res" 2>/dev/null
    cut -d' ' -f1 <"$TMP/$1.res" >"$TMP/$1.code"
    cut -d' ' -f2 <"$TMP/$1.res" >"$TMP/$1.time"
}

# expect NAME STATUS BODY-PATTERN
expect() {
    local code body
    code=$(cat "$TMP/$1.code")
    body=$(cat "$TMP/$1.body" 2>/dev/null)
    if [[ $code != "$2" ]]; then
        fail "$1: status $code, want $2 (body: $body)"
    elif [[ ! $body =~ $3 ]]; then
        fail "$1: body $body does not match $3"
    else
        ok "$1: $code $body"
    fi
}

# took NAME MIN MAX: the request's time must lie in [MIN, MAX) seconds.
took() {
    local t
    t=$(cat "$TMP/$1.time")
    if awk -v t="$t" -v lo="$2" -v hi="$3" 'BEGIN { exit !(t >= lo && t < hi) }'; then
        ok "$1 took ${t}s"
    else
        fail "$1 took ${t}s, want $2 to $3"
    fi
}

# Refused flags exit 2 without starting.
for bad in "--fail-rate 2" "--fail-rate x" "--delay-ms -1" "--port 70000" "--host nowhere" "--bogus 1"; do
    # shellcheck disable=SC2086 # the flag and its value are two words on purpose
    "$UPSTREAM" $bad >/dev/null 2>&1
    rc=$?
    if [[ $rc == 2 ]]; then ok "refused $bad"; else fail "$bad: exit $rc, want 2"; fi
done

"$UPSTREAM" --port 0 --delay-ms 300 --fail-rate 0.5 >"$TMP/out" 2>"$TMP/err" &
PID=$!
PORT=""
for ((i = 0; i < 200; i++)); do
    line=$(head -n 1 "$TMP/out" 2>/dev/null)
    if [[ $line =~ ^upstream\ listening\ on\ 127\.0\.0\.1:([0-9]+)$ ]]; then
        PORT=${BASH_REMATCH[1]}
        break
    fi
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.025
done
if [[ -z $PORT ]]; then
    echo "FAIL: upstream did not start: $(cat "$TMP/out" "$TMP/err")" >&2
    exit 1
fi

req health GET /health
expect health 200 '^\{"status":"ok"\}$'
req notfound GET /nope
expect notfound 404 '"error":"not_found"'
req post POST /slow
expect post 405 '"error":"method_not_allowed"'

# Two /slow at once with --fail-rate 0.5: one 200 and one 503, each after
# the delay, while /health stays fast.
req slow1 GET /slow &
s1=$!
req slow2 GET /slow &
s2=$!
sleep 0.1
req health_busy GET /health
took health_busy 0 0.1
wait $s1 $s2
took slow1 0.3 1
took slow2 0.3 1
codes=$(sort "$TMP/slow1.code" "$TMP/slow2.code" | tr '\n' ' ')
if [[ $codes == "200 503 " ]]; then ok "fail-rate 0.5: one 200, one 503"; else fail "fail-rate 0.5: statuses $codes"; fi
for n in slow1 slow2; do
    if [[ $(cat "$TMP/$n.code") == 200 ]]; then
        expect $n 200 '^\{"upstream":"ok","delay_ms":300\}$'
    else
        expect $n 503 '"error":"unavailable"'
    fi
done

# SIGTERM with a /slow in flight: it completes, then the process exits 0.
req inflight GET /slow &
s1=$!
sleep 0.1
kill -TERM "$PID"
wait $s1
if [[ $(cat "$TMP/inflight.code") =~ ^(200|503)$ ]]; then ok "in-flight /slow completed during stop"; else fail "in-flight /slow: status $(cat "$TMP/inflight.code")"; fi
status=timeout
for ((i = 0; i < 250; i++)); do
    if ! kill -0 "$PID" 2>/dev/null; then
        wait "$PID"
        status=$?
        break
    fi
    sleep 0.02
done
PID_DONE=$PID
PID=""
if [[ $status == timeout ]]; then
    kill -KILL "$PID_DONE" 2>/dev/null
    wait "$PID_DONE" 2>/dev/null
fi
if [[ $status == 0 ]]; then ok "exit 0 after SIGTERM"; else fail "after SIGTERM: exit $status"; fi
if [[ $(cat "$TMP/out") == $'upstream listening on 127.0.0.1:'"$PORT"$'\nupstream stopping\nupstream stopped' ]]; then
    ok "stdout: listening, stopping, stopped"
else
    fail "stdout: $(cat "$TMP/out")"
fi
if [[ -s $TMP/err ]]; then fail "stderr: $(cat "$TMP/err")"; fi

if ((failures)); then
    echo "upstream test: $failures failures" >&2
    exit 1
fi
echo "upstream test: ok"
