#!/usr/bin/env bash
# bench/idle.sh - idle footprint of the asr daemon.
#
# Starts the demo under asr, waits until both services are healthy, lets it settle, then over a
# WINDOW-second window (no traffic; health checks keep running: shop every 200 ms, upstream
# every 500 ms) samples the daemon's RSS (VmRSS, /proc/PID/status, once a second) and its CPU
# (utime+stime from /proc/PID/stat at both ends, as % of one core).
# Baseline in the same window: a private supervisord (autorestart=true) keeping the same shop
# binary up, sampled the same way.
#
# Targets (exit 1 if either fails): asr RSS < 10 MB (the largest sample), CPU < 1 %.
# Environment: ASR_BIN, BENCH_OUT (see lib.sh); WINDOW (30), SETTLE (5).

# shellcheck disable=SC2034  # BENCH_NAME, EXTRA_CLEANUP: read by lib.sh
BENCH_NAME=idle
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"

WINDOW=${WINDOW:-30}
SETTLE=${SETTLE:-5}
EXTRA_CLEANUP=stop_supervisord

bench_setup
asr_start

# Baseline: supervisord keeping the same shop binary up (skipped if supervisord is missing).
if command -v supervisord >/dev/null; then
    read -r SV_PORT <<<"$($UTIL ports 1)"
    commit=$(asr_field shop commit)
    cp "$STATE/releases/shop/$commit/app/shop" "$TMP/shop"
    start_supervisord
    for ((i = 0; i < 100; i++)); do
        curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$SV_PORT/health" 2>/dev/null && break
        sleep 0.1
    done
fi

log "settling $SETTLE s, then sampling for $WINDOW s"
sleep "$SETTLE"
HZ=$(getconf CLK_TCK)
# On-CPU nanoseconds of all threads (/proc/PID/task/*/schedstat): a cross-check of the
# tick-sampled utime+stime, which can miss many short wake-ups.
sched_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
read -r a_rss0 a_t0 <<<"$($UTIL proc "$ASR_PID")"
a_ns0=$(sched_ns "$ASR_PID")
[ -z "$SV_PID" ] || { read -r s_rss0 s_t0 <<<"$($UTIL proc "$SV_PID")"; s_ns0=$(sched_ns "$SV_PID"); }
w0=$(date +%s%N)
a_max=$a_rss0
s_max=${s_rss0:-0}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# One RSS sample a second until WINDOW seconds have passed (at most WINDOW + 5 samples).
for ((i = 0; i < WINDOW + 5; i++)); do
    [ $(( ($(date +%s%N) - w0) / 1000000 )) -lt $((WINDOW * 1000 - 1000)) ] || break
    sleep 1
    r=$(rss_kb "$ASR_PID")
    [ "$r" -gt "$a_max" ] && a_max=$r
    if [ -n "$SV_PID" ]; then
        r=$(rss_kb "$SV_PID")
        [ "$r" -gt "$s_max" ] && s_max=$r
    fi
done
for ((i = 0; i < 100; i++)); do   # the last second, to the millisecond
    [ $(( ($(date +%s%N) - w0) / 1000000 )) -lt $((WINDOW * 1000)) ] || break
    sleep 0.02
done
a_ns1=$(sched_ns "$ASR_PID")
read -r a_rss1 a_t1 <<<"$($UTIL proc "$ASR_PID")"
[ -z "$SV_PID" ] || { s_ns1=$(sched_ns "$SV_PID"); read -r s_rss1 s_t1 <<<"$($UTIL proc "$SV_PID")"; }
w1=$(date +%s%N)
wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
a_cpu=$(awk -v t="$((a_t1 - a_t0))" -v hz="$HZ" -v w="$wall" 'BEGIN { printf "%.2f", 100 * t / hz / w }')
pct_ns() { awk -v n="$1" -v w="$wall" 'BEGIN { printf "%.3f", 100 * n / 1e9 / w }'; }
a_cpu_ns=$(pct_ns "$((a_ns1 - a_ns0))")
a_hwm=$(sed -n 's/^VmHWM:\s*//p' "/proc/$ASR_PID/status")
a_thr=$(sed -n 's/^Threads:\s*//p' "/proc/$ASR_PID/status")
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
health=$(asr_field shop health)
restarts=$(asr_field shop restarts)

echo "== idle: asr daemon with the demo (2 services) idle for $wall s ($(date -u +%Y-%m-%dT%H:%MZ)) =="
machine_line
echo
printf '%-40s %14s %14s\n' "" "asr daemon" "supervisord"
printf '%-40s %14s %14s\n' "pid" "$ASR_PID" "${SV_PID:--}"
printf '%-40s %14s %14s\n' "RSS at start of window (MB)" "$(mb "$a_rss0")" "$([ -n "$SV_PID" ] && mb "$s_rss0" || echo -)"
printf '%-40s %14s %14s\n' "RSS max over window, 1 s samples (MB)" "$(mb "$a_max")" "$([ -n "$SV_PID" ] && mb "$s_max" || echo -)"
printf '%-40s %14s %14s\n' "RSS at end of window (MB)" "$(mb "$a_rss1")" "$([ -n "$SV_PID" ] && mb "$s_rss1" || echo -)"
if [ -n "$SV_PID" ]; then
    s_cpu=$(awk -v t="$((s_t1 - s_t0))" -v hz="$HZ" -v w="$wall" 'BEGIN { printf "%.2f", 100 * t / hz / w }')
    printf '%-40s %14s %14s\n' "CPU, % of one core" "$a_cpu" "$s_cpu"
    printf '%-40s %14s %14s\n' "CPU ticks (1/$HZ s)" "$((a_t1 - a_t0))" "$((s_t1 - s_t0))"
    printf '%-40s %14s %14s\n' "CPU by schedstat, % of one core" "$a_cpu_ns" "$(pct_ns "$((s_ns1 - s_ns0))")"
else
    printf '%-40s %14s %14s\n' "CPU, % of one core" "$a_cpu" "-"
    printf '%-40s %14s %14s\n' "CPU ticks (1/$HZ s)" "$((a_t1 - a_t0))" "-"
    printf '%-40s %14s %14s\n' "CPU by schedstat, % of one core" "$a_cpu_ns" "-"
fi
echo
echo "asr: peak RSS since start (VmHWM, includes build/test of the releases) $a_hwm, threads $a_thr"
echo "asr: RSS at the end: $(sed -n 's/^RssAnon:\s*/anonymous /p' "/proc/$ASR_PID/status"), $(sed -n 's/^RssFile:\s*/file-backed (binary and shared libraries) /p' "/proc/$ASR_PID/status"); largest mappings:"
awk '/^[0-9a-f]+-[0-9a-f]+ / { name = ($6 == "" ? "[anon]" : $6) } /^Rss:/ { r[name] += $2 }
     END { for (n in r) printf "    %6d kB  %s\n", r[n], n }' "/proc/$ASR_PID/smaps" | sort -rn | head -8
echo "asr: health checks ran all along (shop every 200 ms, upstream every 500 ms); shop health=$health, restarts=$restarts"
echo "supervisord does no health checks: it only waits for its child to exit"

t1=$(awk -v k="$a_max" 'BEGIN { print (k < 10 * 1024 ? "PASS" : "FAIL") }')
t2=$(awk -v c="$a_cpu" 'BEGIN { print (c < 1 ? "PASS" : "FAIL") }')
echo
echo "RESULT idle: asr RSS max $(mb "$a_max") MB ($a_max kB) < 10 MB (10240 kB) -> $t1"
echo "RESULT idle: asr CPU $a_cpu % (schedstat $a_cpu_ns %) < 1 % -> $t2"
[ "$t1" = PASS ] && [ "$t2" = PASS ]
