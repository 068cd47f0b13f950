#!/usr/bin/env bash
# shellcheck disable=SC2154  # the *_rps, *_p50, *_median... variables come from eval "$($UTIL ...)"
# bench/cutover.sh - no dropped requests across blue/green cutovers.
#
# Runs the demo under asr on free ports, drives `wrk -t2 -c32 -d30s --latency` through asr's
# proxy on GET / while 10 `asr deploy shop` cutovers run, spread over the 30 s, and reports
# wrk's socket errors, non-2xx responses, requests/s and p50/p99, and each deploy's exit code.
# Then, in the same run, the baselines (BASE_SECS each, all against the same active slot port):
# wrk straight at the active slot's own port, through asr's proxy without deploys, and, as
# reference proxies for what a second HTTP hop costs on this machine, through nginx (one worker,
# upstream keepalive 64) and HAProxy (nbthread 1, http-reuse always), each started here in the
# foreground as a child process with a private config in the temp dir and stopped on exit; a
# reference that is not installed is skipped. Reports req/s, p50/p99 and ratio to direct.
#
# Exit status: 1 if any socket error, any non-2xx response or any failed deploy in the deploy run;
# the ratio target (>= 0.8) and the reference proxies are reported but do not change it.
# Environment: ASR_BIN, BENCH_OUT (see lib.sh); CUTOVER_SECS (30), BASE_SECS (10), DEPLOYS (10);
# NGINX_BIN, HAPROXY_BIN (default: nginx / haproxy on PATH or in /usr/sbin; "none" skips one).

# shellcheck disable=SC2034  # BENCH_NAME, EXTRA_CLEANUP: read by lib.sh
BENCH_NAME=cutover
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
command -v wrk >/dev/null || { echo "cutover: wrk is not installed" >&2; exit 2; }

CUTOVER_SECS=${CUTOVER_SECS:-30}
BASE_SECS=${BASE_SECS:-10}
DEPLOYS=${DEPLOYS:-10}
WRK_PID=""
NGINX_PID=""      # the nginx master (our child); NGINX_WORKER: its one worker
NGINX_WORKER=""
HAPROXY_PID=""
# shellcheck disable=SC2317  # called from the exit trap
stop_children() {
    [ -z "$WRK_PID" ] || stop_pid "$WRK_PID" 50
    WRK_PID=""
    if [ -n "$NGINX_PID" ]; then
        stop_pid "$NGINX_PID" 100   # SIGTERM: fast shutdown, the master stops its worker
        NGINX_PID=""
    fi
    if [ -n "$NGINX_WORKER" ] && kill -0 "$NGINX_WORKER" 2>/dev/null; then
        log "nginx worker $NGINX_WORKER outlived its master; sending SIGKILL"
        kill -KILL "$NGINX_WORKER" 2>/dev/null || true
    fi
    NGINX_WORKER=""
    [ -z "$HAPROXY_PID" ] || stop_pid "$HAPROXY_PID" 100
    HAPROXY_PID=""
}
EXTRA_CLEANUP=stop_children

# The reference proxies' binaries (/usr/sbin is not always on PATH), or "" if not installed;
# NGINX_BIN / HAPROXY_BIN in the environment override them ("" or "none" skips one).
find_sbin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
NGINX_BIN=${NGINX_BIN-$(find_sbin nginx)}
HAPROXY_BIN=${HAPROXY_BIN-$(find_sbin haproxy)}
[ "$NGINX_BIN" != none ] || NGINX_BIN=""
[ "$HAPROXY_BIN" != none ] || HAPROXY_BIN=""

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

# --- 2. baselines: direct to the active slot, the proxy with no deploys, reference proxies --------
slot_port=$(asr_field shop port)
slot_pid=$(asr_field shop pid)
out_direct="$TMP/wrk-direct.txt"
out_proxy="$TMP/wrk-proxy.txt"
HZ=$(getconf CLK_TCK)
us_per() { awk -v t="$1" -v hz="$HZ" -v n="$2" 'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }'; }
pct_of() { awk -v t="$1" -v hz="$HZ" -v d="$BASE_SECS" 'BEGIN { printf "%.0f", 100 * t / hz / d }'; }
ratio_of() { awk -v a="$1" -v b="$dir_rps" 'BEGIN { printf "%.2f", a / b }'; }

# nginx or haproxy processes that this script did not start (a system instance): left alone,
# but reported, since they would share the CPUs.
foreign=""
for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null) || continue
    case $exe in */nginx | */haproxy) foreign="$foreign ${p#/proc/}($(basename "$exe"))" ;; esac
done
[ -z "$foreign" ] || log "warning: nginx/haproxy already running, not started by this benchmark:$foreign"

read -r NGINX_PORT HAPROXY_PORT <<<"$($UTIL ports 2)"
# Waits (bounded, 10 s) until a reference proxy answers 200 on GET /; 1 if it does not or died.
ref_ready() {
    local pid=$1 port=$2 i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

nginx_status="not installed (no nginx on PATH or in /usr/sbin, or NGINX_BIN=none), skipped"
if [ -n "$NGINX_BIN" ]; then
    nd="$TMP/nginx"
    mkdir -p "$nd"
    # Long keepalive_requests on both sides (the default closes a connection every 1000
    # requests; asr's proxy and HAProxy do not), so that only the hop itself is measured.
    cat >"$nd/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $nd/nginx.pid;
error_log $nd/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $nd/client_body;
    proxy_temp_path $nd/proxy;
    fastcgi_temp_path $nd/fastcgi;
    uwsgi_temp_path $nd/uwsgi;
    scgi_temp_path $nd/scgi;
    keepalive_requests 1000000;
    upstream slot {
        server 127.0.0.1:$slot_port;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://slot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    "$NGINX_BIN" -p "$nd" -c "$nd/nginx.conf" -e "$nd/error.log" >"$nd/stdout" 2>&1 &
    NGINX_PID=$!
    if ref_ready "$NGINX_PID" "$NGINX_PORT"; then
        NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1 || true)
        nginx_status="$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), master $NGINX_PID, worker ${NGINX_WORKER:-?}, 127.0.0.1:$NGINX_PORT"
    else
        nginx_status="failed to start, skipped (see $BENCH_OUT/cutover-$STAMP-nginx-error.log)"
        cat "$nd/stdout" >>"$nd/error.log" 2>/dev/null || true
        cp "$nd/error.log" "$BENCH_OUT/cutover-$STAMP-nginx-error.log" 2>/dev/null || true
        stop_pid "$NGINX_PID" 50
        NGINX_PID=""
    fi
fi

haproxy_status="not installed (no haproxy on PATH or in /usr/sbin, or HAPROXY_BIN=none), skipped"
if [ -n "$HAPROXY_BIN" ]; then
    hd="$TMP/haproxy"
    mkdir -p "$hd"
    # No log, no stats socket, no pidfile; -db keeps it in the foreground (no master-worker).
    cat >"$hd/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 1024

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend slot

backend slot
    server s1 127.0.0.1:$slot_port
EOF
    "$HAPROXY_BIN" -db -f "$hd/haproxy.cfg" >"$hd/haproxy.out" 2>&1 &
    HAPROXY_PID=$!
    if ref_ready "$HAPROXY_PID" "$HAPROXY_PORT"; then
        haproxy_status="$("$HAPROXY_BIN" -v 2>&1 | head -1 | awk '{ print $3 }'), pid $HAPROXY_PID, 127.0.0.1:$HAPROXY_PORT"
    else
        haproxy_status="failed to start, skipped (see $BENCH_OUT/cutover-$STAMP-haproxy.out)"
        cp "$hd/haproxy.out" "$BENCH_OUT/cutover-$STAMP-haproxy.out" 2>/dev/null || true
        stop_pid "$HAPROXY_PID" 50
        HAPROXY_PID=""
    fi
fi

# CPU of shop and of the proxy process during each baseline run, per request (microseconds).
s0=$(cpu_ticks "$slot_pid")
wrk -t2 -c32 -d"${BASE_SECS}s" --latency "http://127.0.0.1:$slot_port/" >"$out_direct" 2>&1
s1=$(cpu_ticks "$slot_pid"); a1=$(cpu_ticks "$ASR_PID")
wrk -t2 -c32 -d"${BASE_SECS}s" --latency "$PROXY_URL" >"$out_proxy" 2>&1
s2=$(cpu_ticks "$slot_pid"); a2=$(cpu_ticks "$ASR_PID")
eval "$($UTIL wrk "$out_direct" dir)"
eval "$($UTIL wrk "$out_proxy" px)"
ratio=$(ratio_of "$px_rps")
dir_us_shop=$(us_per $((s1 - s0)) "$dir_requests")
px_us_shop=$(us_per $((s2 - s1)) "$px_requests")
px_us_proxy=$(us_per $((a2 - a1)) "$px_requests")
px_cpu="shop $(pct_of $((s2 - s1)))%, asr $(pct_of $((a2 - a1)))%"
outs=("$out_cut" "$out_direct" "$out_proxy")

# One reference proxy: a 2 s warm-up (asr's proxy had one, and the deploy run), then the same wrk.
# ref_run PREFIX LABEL PORT PID sets PREFIX_rps, _p50, ... (from the wrk report), PREFIX_ratio, PREFIX_us_shop, PREFIX_us_proxy.
ref_run() {
    local prefix=$1 label=$2 port=$3 pid=$4 out="$TMP/wrk-$2.txt" r0 r1 t0 t1
    wrk -t2 -c32 -d2s "http://127.0.0.1:$port/" >/dev/null
    t0=$(cpu_ticks "$slot_pid"); r0=$(cpu_ticks "$pid")
    wrk -t2 -c32 -d"${BASE_SECS}s" --latency "http://127.0.0.1:$port/" >"$out" 2>&1
    t1=$(cpu_ticks "$slot_pid"); r1=$(cpu_ticks "$pid")
    eval "$($UTIL wrk "$out" "$prefix")"
    local n="${prefix}_requests" rps="${prefix}_rps"
    printf -v "${prefix}_ratio" '%s' "$(ratio_of "${!rps}")"
    printf -v "${prefix}_us_shop" '%s' "$(us_per $((t1 - t0)) "${!n}")"
    printf -v "${prefix}_us_proxy" '%s' "$(us_per $((r1 - r0)) "${!n}")"
    printf -v "${prefix}_cpu" '%s' "shop $(pct_of $((t1 - t0)))%, $label $(pct_of $((r1 - r0)))%"
    outs+=("$out")
}
# Fills a skipped reference's columns with "-".
ref_skip() {
    local k
    for k in rps requests p50 p90 p99 max connect read write timeout non2xx ratio us_shop us_proxy cpu; do
        printf -v "${1}_$k" '%s' "-"
    done
}
if [ -n "$NGINX_PID" ]; then
    # The worker does the proxying; fall back to the master's pid if it was not found.
    ref_run ngx nginx "$NGINX_PORT" "${NGINX_WORKER:-$NGINX_PID}"
else
    ref_skip ngx
fi
if [ -n "$HAPROXY_PID" ]; then ref_run hap haproxy "$HAPROXY_PORT" "$HAPROXY_PID"; else ref_skip hap; fi
[ -z "$NGINX_PID" ] || cp "$TMP/nginx/error.log" "$BENCH_OUT/cutover-$STAMP-nginx-error.log"
[ -z "$HAPROXY_PID" ] || cp "$TMP/haproxy/haproxy.out" "$BENCH_OUT/cutover-$STAMP-haproxy.out"
stop_children

for f in "${outs[@]}"; do cp "$f" "$BENCH_OUT/cutover-$STAMP-$(basename "$f")"; done
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
echo
echo "-- a second HTTP hop: the same wrk, ${BASE_SECS} s each, in this order, all to shop pid $slot_pid on port $slot_port --"
echo "nginx:   $nginx_status"
echo "haproxy: $haproxy_status"
row() { printf '%-34s %12s %12s %12s %12s\n' "$@"; }
row "" "direct" "asr proxy" "nginx" "haproxy"
row "requests/s" "$dir_rps" "$px_rps" "$ngx_rps" "$hap_rps"
row "ratio to direct" "1.00" "$ratio" "$ngx_ratio" "$hap_ratio"
row "latency p50 (ms)" "$dir_p50" "$px_p50" "$ngx_p50" "$hap_p50"
row "latency p90 (ms)" "$dir_p90" "$px_p90" "$ngx_p90" "$hap_p90"
row "latency p99 (ms)" "$dir_p99" "$px_p99" "$ngx_p99" "$hap_p99"
row "latency max (ms)" "$dir_max" "$px_max" "$ngx_max" "$hap_max"
row "socket errors c/r/w/t" "$dir_connect/$dir_read/$dir_write/$dir_timeout" \
    "$px_connect/$px_read/$px_write/$px_timeout" "$ngx_connect/$ngx_read/$ngx_write/$ngx_timeout" \
    "$hap_connect/$hap_read/$hap_write/$hap_timeout"
row "non-2xx/3xx responses" "$dir_non2xx" "$px_non2xx" "$ngx_non2xx" "$hap_non2xx"
row "CPU/request: shop (us)" "$dir_us_shop" "$px_us_shop" "$ngx_us_shop" "$hap_us_shop"
row "CPU/request: the proxy (us)" "-" "$px_us_proxy" "$ngx_us_proxy" "$hap_us_proxy"
echo "CPU used, % of a core: direct run shop $(pct_of $((s1 - s0)))%; asr run $px_cpu; nginx run $ngx_cpu; haproxy run $hap_cpu (wrk takes the rest of the $(nproc) cores)"
echo "ratio proxy/direct requests/s: $ratio (target >= 0.8)"

# The best reference proxy (highest ratio) of those that ran.
best_name=""; best_ratio=""
for r in "nginx $ngx_ratio" "haproxy $hap_ratio"; do
    read -r name val <<<"$r"
    [ "$val" != "-" ] || continue
    if [ -z "$best_ratio" ] || awk -v a="$val" -v b="$best_ratio" 'BEGIN { exit !(a > b) }'; then
        best_name=$name; best_ratio=$val
    fi
done
if [ -n "$best_name" ]; then
    ref_line="asr ratio $ratio vs best reference $best_name $best_ratio (nginx $ngx_ratio, haproxy $hap_ratio; same run, same slot): asr $(awk -v a="$ratio" -v b="$best_ratio" 'BEGIN { printf "%.2fx", a / b }') the best reference -> $(awk -v a="$ratio" -v b="$best_ratio" 'BEGIN { print (a >= b ? "asr at or above it" : "asr below it") }') (reference, not a target)"
else
    ref_line="asr ratio $ratio; no reference proxy ran (nginx: $nginx_status; haproxy: $haproxy_status)"
fi

errors=$((cut_connect + cut_read + cut_write + cut_timeout))
fail=0
[ "$errors" -eq 0 ] || fail=1
[ "$cut_non2xx" -eq 0 ] || fail=1
[ "$deploy_fail" -eq 0 ] || fail=1
ratio_ok=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.8 ? "PASS" : "FAIL") }')
echo
echo "RESULT cutover: errors=$errors non2xx=$cut_non2xx deploys_failed=$deploy_fail/$DEPLOYS rps_under_deploys=$cut_rps p50=${cut_p50}ms p99=${cut_p99}ms -> $([ $fail -eq 0 ] && echo PASS || echo FAIL)"
echo "RESULT proxy-overhead: proxy ${px_rps} req/s vs direct ${dir_rps} req/s, ratio $ratio (>= 0.8) -> $ratio_ok"
echo "RESULT proxy-reference: $ref_line"
exit "$fail"
