#!/usr/bin/env bash
# shellcheck disable=SC2154  # the *_rps, *_p50, *_median... variables come from eval "$($UTIL ...)"
# bench/cutover.sh - no dropped requests across blue/green cutovers.
#
# Runs the demo under asr on free ports, drives `wrk -t2 -c32 -d30s --latency` through asr's
# proxy on GET / while 10 `asr deploy shop` cutovers run, spread over the 30 s, and reports
# wrk's socket errors, non-2xx responses, requests/s and p50/p99, and each deploy's exit code.
# Then, in the same run, the baselines: wrk straight at the active slot's own port and through
# the proxy without deploys (10 s each), and the ratio proxy/direct.
#
# Exit status: 1 if any socket error, any non-2xx response or any failed deploy; the ratio
# target (>= 0.8) is reported but does not change the exit status.
# Environment: ASR_BIN, BENCH_OUT (see lib.sh); CUTOVER_SECS (30), BASE_SECS (10), DEPLOYS (10).

# shellcheck disable=SC2034  # BENCH_NAME, EXTRA_CLEANUP: read by lib.sh
BENCH_NAME=cutover
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
command -v wrk >/dev/null || { echo "cutover: wrk is not installed" >&2; exit 2; }

CUTOVER_SECS=${CUTOVER_SECS:-30}
BASE_SECS=${BASE_SECS:-10}
DEPLOYS=${DEPLOYS:-10}
WRK_PID=""
# shellcheck disable=SC2317  # called from the exit trap
kill_wrk() { [ -z "$WRK_PID" ] || stop_pid "$WRK_PID" 50; }
EXTRA_CLEANUP=kill_wrk

bench_setup
asr_start
PROXY_URL="http://127.0.0.1:$SHOP_PORT/"
curl -fsS --max-time 5 -o /dev/null "$PROXY_URL"
wrk -t2 -c32 -d2s "$PROXY_URL" >/dev/null   # warm-up (connections, caches); not measured

proxy_stat() { asr_field shop "proxy.$1"; }
req0=$(proxy_stat requests_total); p5xx0=$(proxy_stat proxy_5xx); retr0=$(proxy_stat retries)

# --- 1. wrk through the proxy while DEPLOYS cutovers run -------------------------------------
out_cut="$TMP/wrk-cutover.txt"
wrk -t2 -c32 -d"${CUTOVER_SECS}s" --latency "$PROXY_URL" >"$out_cut" 2>&1 &
WRK_PID=$!
t_start=$(date +%s.%N)
deploy_fail=0
deploy_ok=0
deploy_late=0
: >"$TMP/deploys.txt"
# Deploy i starts at offset + i * step seconds, e.g. 1.5, 4.3, ... 26.7 s for 30 s and 10 deploys.
step=$(awk -v d="$CUTOVER_SECS" -v n="$DEPLOYS" 'BEGIN { printf "%.3f", (d - 3) / n }')
for ((i = 0; i < DEPLOYS; i++)); do
    at=$(awk -v s="$step" -v i="$i" 'BEGIN { printf "%.3f", 1.5 + i * s }')
    now=$(awk -v t0="$t_start" -v t="$(date +%s.%N)" 'BEGIN { printf "%.3f", t - t0 }')
    wait_s=$(awk -v a="$at" -v n="$now" 'BEGIN { w = a - n; printf "%.3f", (w > 0 ? w : 0) }')
    sleep "$wait_s"
    d0=$(date +%s%N)
    set +e
    line=$(timeout 60 "$ASR_BIN" deploy shop --state-dir "$STATE" 2>>"$TMP/deploy-stderr.txt")
    drc=$?
    set -e
    d1=$(date +%s%N)
    t_rel=$(awk -v t0="$t_start" -v t="$((d0 / 1000000))" 'BEGIN { printf "%.1f", t / 1000 - t0 }')
    printf 'deploy %2d at %5s s: rc=%d in %4d ms: %s\n' "$((i + 1))" "$t_rel" "$drc" \
        "$(((d1 - d0) / 1000000))" "$line" >>"$TMP/deploys.txt"
    if [ "$drc" -eq 0 ]; then deploy_ok=$((deploy_ok + 1)); else deploy_fail=$((deploy_fail + 1)); fi
    if awk -v t="$t_rel" -v d="$CUTOVER_SECS" 'BEGIN { exit !(t + 0 >= d) }'; then
        deploy_late=$((deploy_late + 1))
    fi
done
wait "$WRK_PID" || true
WRK_PID=""
eval "$($UTIL wrk "$out_cut" cut)"
req1=$(proxy_stat requests_total); p5xx1=$(proxy_stat proxy_5xx); retr1=$(proxy_stat retries)

# --- 2. baselines: direct to the active slot, then the proxy with no deploys ------------------
slot_port=$(asr_field shop port)
slot_pid=$(asr_field shop pid)
out_direct="$TMP/wrk-direct.txt"
out_proxy="$TMP/wrk-proxy.txt"
# CPU of asr and of the shop process during each baseline run, per request (microseconds).
HZ=$(getconf CLK_TCK)
s0=$(cpu_ticks "$slot_pid")
wrk -t2 -c32 -d"${BASE_SECS}s" --latency "http://127.0.0.1:$slot_port/" >"$out_direct" 2>&1
s1=$(cpu_ticks "$slot_pid"); a1=$(cpu_ticks "$ASR_PID")
wrk -t2 -c32 -d"${BASE_SECS}s" --latency "$PROXY_URL" >"$out_proxy" 2>&1
s2=$(cpu_ticks "$slot_pid"); a2=$(cpu_ticks "$ASR_PID")
eval "$($UTIL wrk "$out_direct" dir)"
eval "$($UTIL wrk "$out_proxy" px)"
ratio=$(awk -v a="$px_rps" -v b="$dir_rps" 'BEGIN { printf "%.2f", a / b }')
us_per() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }'; }
pct_of() { awk -v t="$1" -v hz="$HZ" -v d="$BASE_SECS" 'BEGIN { printf "%.0f", 100 * t / hz / d }'; }

for f in "$out_cut" "$out_direct" "$out_proxy"; do cp "$f" "$BENCH_OUT/cutover-$STAMP-$(basename "$f")"; done
cp "$TMP/deploys.txt" "$BENCH_OUT/cutover-$STAMP-deploys.txt"

# --- report -----------------------------------------------------------------------------------
echo "== cutover: wrk -t2 -c32 GET / ($(date -u +%Y-%m-%dT%H:%MZ)) =="
machine_line
echo
cat "$TMP/deploys.txt"
echo
printf '%-34s %14s %14s %14s\n' "" "proxy+deploys" "proxy" "direct (slot)"
printf '%-34s %14s %14s %14s\n' "duration" "${CUTOVER_SECS} s" "${BASE_SECS} s" "${BASE_SECS} s"
printf '%-34s %14s %14s %14s\n' "requests" "$cut_requests" "$px_requests" "$dir_requests"
printf '%-34s %14s %14s %14s\n' "requests/s" "$cut_rps" "$px_rps" "$dir_rps"
printf '%-34s %14s %14s %14s\n' "latency p50 (ms)" "$cut_p50" "$px_p50" "$dir_p50"
printf '%-34s %14s %14s %14s\n' "latency p90 (ms)" "$cut_p90" "$px_p90" "$dir_p90"
printf '%-34s %14s %14s %14s\n' "latency p99 (ms)" "$cut_p99" "$px_p99" "$dir_p99"
printf '%-34s %14s %14s %14s\n' "latency max (ms)" "$cut_max" "$px_max" "$dir_max"
printf '%-34s %14s %14s %14s\n' "socket errors connect/read/write/timeout" \
    "$cut_connect/$cut_read/$cut_write/$cut_timeout" "$px_connect/$px_read/$px_write/$px_timeout" \
    "$dir_connect/$dir_read/$dir_write/$dir_timeout"
printf '%-34s %14s %14s %14s\n' "non-2xx/3xx responses" "$cut_non2xx" "$px_non2xx" "$dir_non2xx"
echo
echo "deploys: $deploy_ok ok, $deploy_fail failed (of $DEPLOYS; $deploy_late started after wrk ended)"
echo "proxy counters during the deploy run: requests $((req1 - req0)), proxy-made 5xx $((p5xx1 - p5xx0)), retries $((retr1 - retr0))"
echo "direct run: shop pid $slot_pid, port $slot_port"
echo "CPU per request: shop $(us_per $((s1 - s0)) "$dir_requests") us direct, $(us_per $((s2 - s1)) "$px_requests") us behind the proxy; asr proxy $(us_per $((a2 - a1)) "$px_requests") us"
echo "CPU used: direct run shop $(pct_of $((s1 - s0)))% of a core; proxy run shop $(pct_of $((s2 - s1)))%, asr $(pct_of $((a2 - a1)))% (wrk takes the rest of the $(nproc) cores)"
echo "ratio proxy/direct requests/s: $ratio (target >= 0.8)"

errors=$((cut_connect + cut_read + cut_write + cut_timeout))
fail=0
[ "$errors" -eq 0 ] || fail=1
[ "$cut_non2xx" -eq 0 ] || fail=1
[ "$deploy_fail" -eq 0 ] || fail=1
ratio_ok=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.8 ? "PASS" : "FAIL") }')
echo
echo "RESULT cutover: errors=$errors non2xx=$cut_non2xx deploys_failed=$deploy_fail/$DEPLOYS rps_under_deploys=$cut_rps p50=${cut_p50}ms p99=${cut_p99}ms -> $([ $fail -eq 0 ] && echo PASS || echo FAIL)"
echo "RESULT proxy-overhead: proxy ${px_rps} req/s vs direct ${dir_rps} req/s, ratio $ratio (>= 0.8) -> $ratio_ok"
exit "$fail"
