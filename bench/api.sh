#!/usr/bin/env bash
# shellcheck disable=SC2154  # the *_rps, *_p99, ... variables come from eval "$(... )"
# bench/api.sh - the operator surface (issue 6): what the HTTP API costs the daemon.
#
# The demo under `asr run` with an `api: {listen, token_env}` block, on a store seeded with
# SEED (10,000) remediated incidents: bench/api_seed.py copies the rows that a real `asr demo`
# run left for its 4 incidents (incident, notes, plan, remediation, journal, and the ~20 events
# each; bench/api_seed.json) into the stopped daemon's asr.db with sqlite3, spread over 30 days
# (~210,000 events). Three parts:
#  1. Idle footprint over WINDOW (20) s: four daemons side by side in the same window: on
#     copies of the seeded store without the api block (the baseline), with it, and with it plus
#     one `curl -N .../api/v1/events` client; and with it on the demo's own store (not seeded,
#     as idle.sh runs). RSS (max of 1 s VmRSS samples) and CPU (utime+stime, and on-CPU time
#     from schedstat) in % of one core. Targets as idle.sh: < 10 MB, < 1 %.
#  2. Event-stream delivery, on the api + stream daemon: SSE_N (100) CloudWatch deliveries, one
#     every SSE_INTERVAL (40) ms, each a fault line with its own route (a harmless line writes no
#     event; each of these opens an incident, which the demo config, without playbooks,
#     escalates: incident.opened, plan.made, remediation.decided), with 1 and with 50 clients:
#     each event's arrival at each client minus its "at" (store time, whole ms: the figure is up
#     to 1 ms high), and each delivery's send to its incident.opened's arrival. Baseline in the
#     same run: api_load.py's minimal event-stream server (python, one epoll loop) answering
#     the same posts, read by the same client code.
#  3. Throughput and latency: `wrk -t2 -c10 -d${SECS}s --latency --timeout 30s` on GET
#     /api/v1/status, / (the dashboard), /metrics and /api/v1/incidents?limit=50, each next to
#     nginx (one worker, sendfile, no log) serving a static file of the same bytes (the answer
#     fetched just before), in the same run. Meanwhile api_load.py probes the shop through
#     asr's proxy (GET / every 10 ms, open loop): its p50/p99/max during each run, against the
#     same probe with nothing else running. The shop shares asr's loop with the API; with nginx
#     it only shares the CPUs. The incidents run is last: the daemon still owes wrk's last
#     requests (seconds each) when wrk ends, so it is killed rather than waited for.
#
# No exit status for the figures except the idle targets (1 if the API daemon misses them).
# Environment: ASR_BIN, BENCH_OUT (see lib.sh); SEED (10000), WINDOW (20), SECS (10),
# SSE_N (100), SSE_INTERVAL (40), NGINX_BIN (default nginx on PATH or /usr/sbin; "none" skips).

# shellcheck disable=SC2034  # BENCH_NAME, EXTRA_CLEANUP: read by lib.sh
BENCH_NAME=api
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
command -v wrk >/dev/null || { echo "api: wrk is not installed" >&2; exit 2; }

SEED=${SEED:-10000}
WINDOW=${WINDOW:-20}
SECS=${SECS:-10}
SSE_N=${SSE_N:-100}
SSE_INTERVAL=${SSE_INTERVAL:-40}
LOAD="python3 $BENCH_DIR/api_load.py"
find_sbin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }
NGINX_BIN=${NGINX_BIN-$(find_sbin nginx)}
[ "$NGINX_BIN" != none ] || NGINX_BIN=""
T_BEGIN=$(date +%s)

# The token reaches asr through the environment only.
ASR_BENCH_API_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export ASR_BENCH_API_TOKEN

NOAPI_PID=""   # the daemon without the api block
SSE_PID=""     # the daemon whose API has one stream client in the idle window
FRESH_PID=""   # the daemon with the api block on the demo's own (unseeded) store
CURL_PID=""
NGINX_PID=""
NGINX_WORKER=""
FLOOR_PID=""
BG_PIDS=()     # wrk, probes and stream readers in flight
# shellcheck disable=SC2317  # called from the exit trap
stop_children() {
    local p
    for p in "${BG_PIDS[@]}"; do stop_pid "$p" 30; done
    BG_PIDS=()
    [ -z "$CURL_PID" ] || stop_pid "$CURL_PID" 30
    [ -z "$FLOOR_PID" ] || stop_pid "$FLOOR_PID" 30
    [ -z "$NOAPI_PID" ] || stop_pid "$NOAPI_PID" 200
    [ -z "$SSE_PID" ] || stop_pid "$SSE_PID" 200
    [ -z "$FRESH_PID" ] || stop_pid "$FRESH_PID" 200
    [ -z "$NGINX_PID" ] || stop_pid "$NGINX_PID" 100
    if [ -n "$NGINX_WORKER" ] && kill -0 "$NGINX_WORKER" 2>/dev/null; then
        kill -KILL "$NGINX_WORKER" 2>/dev/null || true
    fi
    CURL_PID="" FLOOR_PID="" NOAPI_PID="" SSE_PID="" FRESH_PID="" NGINX_PID="" NGINX_WORKER=""
}
EXTRA_CLEANUP=stop_children

load1() { cut -d' ' -f1 /proc/loadavg; }
elapsed() { echo $(($(date +%s) - T_BEGIN)); }

# --- 0. the demo, its store seeded, four daemons -------------------------------------------------
bench_setup
read -r API_PORT SSE_API_PORT FRESH_API_PORT B_SHOP B_UP C_SHOP C_UP D_SHOP D_UP NGINX_PORT FLOOR_PORT <<<"$($UTIL ports 11)"
api_block() {
    printf 'api:\n  listen: 127.0.0.1:%s\n  token_env: ASR_BENCH_API_TOKEN\n' "$1"
}
api_block "$API_PORT" >>"$TMP/asr.yaml"
$UTIL config "$REPO_ROOT/demo/asr.yaml" "$TMP/asr-noapi.yaml" "$B_SHOP" "$B_UP"
$UTIL config "$REPO_ROOT/demo/asr.yaml" "$TMP/asr-sse.yaml" "$C_SHOP" "$C_UP"
api_block "$SSE_API_PORT" >>"$TMP/asr-sse.yaml"
$UTIL config "$REPO_ROOT/demo/asr.yaml" "$TMP/asr-fresh.yaml" "$D_SHOP" "$D_UP"
api_block "$FRESH_API_PORT" >>"$TMP/asr-fresh.yaml"
for c in asr asr-noapi asr-sse asr-fresh; do "$ASR_BIN" config check -c "$TMP/$c.yaml" >/dev/null; done
API="http://127.0.0.1:$API_PORT"
SSE_API="http://127.0.0.1:$SSE_API_PORT"

# The first start builds and tests both releases and makes the schema. With the daemon stopped,
# a copy of that store stays as it is (the demo's, as idle.sh sees it), and the store is seeded
# and copied for two more daemons.
asr_start
stop_pid "$ASR_PID" 200
ASR_PID=""
cp -a "$STATE" "$TMP/state-fresh"
seeded=$(python3 "$BENCH_DIR/api_seed.py" seed "$STATE/asr.db" "$BENCH_DIR/api_seed.json" "$SEED")
log "seeded: $seeded ($(du -m "$STATE/asr.db" | cut -f1) MB) at $(elapsed) s"
cp -a "$STATE" "$TMP/state-noapi"
cp -a "$STATE" "$TMP/state-sse"

"$ASR_BIN" run -c "$TMP/asr-noapi.yaml" --state-dir "$TMP/state-noapi" >/dev/null 2>"$TMP/noapi.log" &
NOAPI_PID=$!
"$ASR_BIN" run -c "$TMP/asr-sse.yaml" --state-dir "$TMP/state-sse" >/dev/null 2>"$TMP/sse.log" &
SSE_PID=$!
"$ASR_BIN" run -c "$TMP/asr-fresh.yaml" --state-dir "$TMP/state-fresh" >/dev/null 2>"$TMP/fresh.log" &
FRESH_PID=$!
asr_start
for d in noapi sse fresh; do $UTIL wait-healthy "$ASR_BIN" "$TMP/state-$d" 60 >/dev/null; done
curl -fsS --max-time 10 -o /dev/null "$API/api/v1/status"
log "four daemons up at $(elapsed) s: api $ASR_PID, api+stream $SSE_PID, no api $NOAPI_PID (seeded), api $FRESH_PID (demo store)"

# --- 1. idle footprint ----------------------------------------------------------------------------
curl -sN "$SSE_API/api/v1/events" >"$TMP/idle-stream.txt" 2>/dev/null &
CURL_PID=$!
sleep 1
HZ=$(getconf CLK_TCK)
sched_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# Resident kB of the mappings whose path matches a pattern.
rss_of() { awk -v re="$2" '/^[0-9a-f]+-[0-9a-f]+ / { m = ($6 ~ re) } /^Rss:/ && m { s += $2 } END { print s + 0 }' "/proc/$1/smaps"; }
IDLE_LOAD=$(load1)
declare -A t0 ns0 rmax
names=(noapi api sse fresh)
declare -A pid_of=([noapi]=$NOAPI_PID [api]=$ASR_PID [sse]=$SSE_PID [fresh]=$FRESH_PID)
for n in "${names[@]}"; do
    t0[$n]=$(cpu_ticks "${pid_of[$n]}"); ns0[$n]=$(sched_ns "${pid_of[$n]}"); rmax[$n]=$(rss_kb "${pid_of[$n]}")
done
w0=$(date +%s%N)
for ((i = 0; i < WINDOW + 5; i++)); do
    [ $((($(date +%s%N) - w0) / 1000000)) -lt $((WINDOW * 1000 - 1000)) ] || break
    sleep 1
    for n in "${names[@]}"; do
        r=$(rss_kb "${pid_of[$n]}")
        [ "$r" -le "${rmax[$n]}" ] || rmax[$n]=$r
    done
done
while [ $((($(date +%s%N) - w0) / 1000000)) -lt $((WINDOW * 1000)) ]; do sleep 0.02; done
w1=$(date +%s%N)
wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
declare -A cpu cpu_ns anon heap tls
for n in "${names[@]}"; do
    p=${pid_of[$n]}
    cpu[$n]=$(awk -v t="$(($(cpu_ticks "$p") - t0[$n]))" -v hz="$HZ" -v w="$wall" 'BEGIN { printf "%.2f", 100 * t / hz / w }')
    cpu_ns[$n]=$(awk -v t="$(($(sched_ns "$p") - ns0[$n]))" -v w="$wall" 'BEGIN { printf "%.3f", 100 * t / 1e9 / w }')
    anon[$n]=$(sed -n 's/^RssAnon:\s*\([0-9]*\).*/\1/p' "/proc/$p/status")
    heap[$n]=$(rss_of "$p" '^\[heap\]$')
    tls[$n]=$(rss_of "$p" 'libmicrohttpd|libgnutls|libnettle|libhogweed|libgmp|libp11-kit|libtasn1|libunistring|libidn2|libffi')
done
stream_bytes=$(wc -c <"$TMP/idle-stream.txt")
stream_ok=$(grep -c '^retry: 1000' "$TMP/idle-stream.txt" || true)
stop_pid "$CURL_PID" 30; CURL_PID=""
stop_pid "$NOAPI_PID" 200; NOAPI_PID=""
stop_pid "$FRESH_PID" 200; FRESH_PID=""
log "idle window done at $(elapsed) s"

# --- 2. event-stream delivery, on the api + stream daemon's own copy of the store ------------------
# (Before the throughput runs on the other daemon: the incidents these deliveries open would be
# the newest 50, which have no remediation, and make GET /api/v1/incidents?limit=50 cheap.)
$LOAD serve "$FLOOR_PORT" 2>"$TMP/floor.err" &
FLOOR_PID=$!
SSE_LOAD=$(load1)
# sse_run PREFIX STREAM_URL POST_URL CLIENTS TAG EVENTS_PER_POST: sets PREFIX_median ...
# (api_load.py report) and PREFIX_cpu (the stream daemon's CPU ticks meanwhile).
sse_run() {
    local prefix=$1 stream=$2 post=$3 n=$4 tag=$5 per=$6 d="$TMP/sse-$1" c0 c1
    mkdir -p "$d"
    $LOAD sse "$stream" "$n" "$d/ready" "$d/stop" "$d/events.jsonl" 120 &
    BG_PIDS=($!)
    for ((i = 0; i < 100; i++)); do [ -f "$d/ready" ] && break; sleep 0.1; done
    [ -f "$d/ready" ] || { log "$prefix: the $n stream clients were not ready within 10 s"; return 1; }
    c0=$(cpu_ticks "$SSE_PID")
    $LOAD post "$post" ASR_BENCH_API_TOKEN "$SSE_N" "$SSE_INTERVAL" "$tag" "$d/posts.jsonl"
    # Until every client has every event, at most 30 s more.
    local want=$((n * SSE_N * per))
    for ((i = 0; i < 300; i++)); do
        [ "$(wc -l <"$d/events.jsonl")" -ge "$want" ] && break
        sleep 0.1
    done
    sleep 0.2
    c1=$(cpu_ticks "$SSE_PID")
    : >"$d/stop"
    wait "${BG_PIDS[0]}" || true
    BG_PIDS=()
    eval "$($LOAD report "$d/events.jsonl" "$d/posts.jsonl" "$n" "$prefix")"
    printf -v "${prefix}_cpu" '%s' "$((c1 - c0))"
    cp "$d/events.jsonl" "$BENCH_OUT/api-$STAMP-sse-$prefix.jsonl"
}
for ((i = 0; i < 50; i++)); do
    curl -fsS --max-time 1 -o /dev/null -X POST "http://127.0.0.1:$FLOOR_PORT/warm" 2>/dev/null && break
    sleep 0.1
done
INGEST="$SSE_API/api/v1/ingest/cloudwatch?service=shop"
sse_run s1 "$SSE_API/api/v1/events" "$INGEST" 1 one 3
sse_run s50 "$SSE_API/api/v1/events" "$INGEST" 50 fifty 3
sse_run f1 "http://127.0.0.1:$FLOOR_PORT/" "http://127.0.0.1:$FLOOR_PORT/post" 1 one 1
sse_run f50 "http://127.0.0.1:$FLOOR_PORT/" "http://127.0.0.1:$FLOOR_PORT/post" 50 fifty 1
stop_pid "$FLOOR_PID" 30; FLOOR_PID=""
stop_pid "$SSE_PID" 200; SSE_PID=""
log "event stream done at $(elapsed) s"

# --- 3. throughput, latency and the shop next to it -----------------------------------------------
WWW="$TMP/www"
mkdir -p "$WWW"
curl -fsS --max-time 30 -o "$WWW/status.json" "$API/api/v1/status"
curl -fsS --max-time 30 -o "$WWW/incidents.json" "$API/api/v1/incidents?limit=50"
curl -fsS --max-time 30 -o "$WWW/metrics.txt" "$API/metrics"
curl -fsS --max-time 30 -o "$WWW/index.html" "$API/"
chmod a+x "$TMP"   # nginx's worker may run as another user: it must reach and read $WWW
chmod -R a+rX "$WWW"
nginx_status="not installed (no nginx on PATH or in /usr/sbin, or NGINX_BIN=none): skipped"
if [ -n "$NGINX_BIN" ]; then
    nd="$TMP/nginx"
    mkdir -p "$nd"
    cat >"$nd/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $nd/nginx.pid;
error_log $nd/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { application/json json; text/plain txt; text/html html; }
    client_body_temp_path $nd/client_body;
    proxy_temp_path $nd/proxy;
    fastcgi_temp_path $nd/fastcgi;
    uwsgi_temp_path $nd/uwsgi;
    scgi_temp_path $nd/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WWW;
    }
}
EOF
    "$NGINX_BIN" -p "$nd" -c "$nd/nginx.conf" -e "$nd/error.log" >"$nd/stdout" 2>&1 &
    NGINX_PID=$!
    for ((i = 0; i < 100; i++)); do
        curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$NGINX_PORT/index.html" 2>/dev/null && break
        sleep 0.1
    done
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1 || true)
    nginx_status="$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), one worker (pid ${NGINX_WORKER:-?}), sendfile, no access log"
fi

SHOP_URL="http://127.0.0.1:$SHOP_PORT/"
THR_LOAD=$(load1)
# The shop with nothing else running.
eval "$($LOAD probe "$SHOP_URL" "$SECS" 10 idle)"

# run_pair PREFIX URL PID: wrk on URL for SECS s with the shop probe alongside; sets PREFIX_rps,
# _p50 ... (wrk), PREFIX_shop_p50/_p99/_max/_late (probe), PREFIX_us (CPU of PID per request)
# and PREFIX_cpu (% of a core).
run_pair() {
    local prefix=$1 url=$2 pid=$3 out="$TMP/wrk-$1.txt" c0 c1 probe_out="$TMP/probe-$1.txt"
    # Warm-up: one request (asr's slow ones would queue); not for asr's incidents page, which
    # was fetched just before (nginx's copy) and takes seconds.
    [ "$prefix" = ainc ] || curl -fsS --max-time 60 -o /dev/null "$url"
    c0=$(cpu_ticks "$pid")
    $LOAD probe "$SHOP_URL" "$SECS" 10 "${prefix}_shop" >"$probe_out" &
    BG_PIDS=($!)
    wrk -t2 -c10 -d"${SECS}s" --latency --timeout 30s "$url" >"$out" 2>&1
    c1=$(cpu_ticks "$pid")
    wait "${BG_PIDS[0]}" || true
    BG_PIDS=()
    eval "$($UTIL wrk "$out" "$prefix")"
    eval "$(cat "$probe_out")"
    local n="${prefix}_requests"
    printf -v "${prefix}_us" '%s' "$(awk -v t="$((c1 - c0))" -v hz="$HZ" -v n="${!n}" \
        'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "-" }')"
    printf -v "${prefix}_cpu" '%s' "$(awk -v t="$((c1 - c0))" -v hz="$HZ" -v d="$SECS" 'BEGIN { printf "%.0f", 100 * t / hz / d }')"
    cp "$out" "$BENCH_OUT/api-$STAMP-wrk-$prefix.txt"
}
skip_pair() {
    local k
    for k in rps requests p50 p90 p99 max timeout non2xx us cpu shop_p50 shop_p99 shop_max shop_late; do
        printf -v "${1}_$k" '%s' "-"
    done
}
# Waits (bounded, 60 s) until asr answers GET /api/v1/status in < 0.5 s again: the requests wrk
# left in flight are still answered, one after another, on the loop. Prints the seconds.
drain() {
    local d0 t i
    d0=$(date +%s%N)
    for ((i = 0; i < 60; i++)); do
        t=$(curl -s -o /dev/null --max-time 10 -w '%{time_total}' "$API/api/v1/status" || echo 10)
        awk -v t="$t" 'BEGIN { exit !(t < 0.5) }' && break
    done
    awk -v a="$d0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'
}
declare -A path_of=([st]=/api/v1/status [dash]=/ [met]=/metrics [inc]="/api/v1/incidents?limit=50")
declare -A file_of=([st]=status.json [dash]=index.html [met]=metrics.txt [inc]=incidents.json)
declare -A drain_s
for e in st dash met inc; do
    if [ -n "$NGINX_PID" ]; then
        run_pair "n$e" "http://127.0.0.1:$NGINX_PORT/${file_of[$e]}" "${NGINX_WORKER:-$NGINX_PID}"
    else
        skip_pair "n$e"
    fi
    run_pair "a$e" "$API${path_of[$e]}" "$ASR_PID"
    [ "$e" = inc ] || drain_s[$e]=$(drain)
done
ASR_RSS_AFTER=$(rss_kb "$ASR_PID")
ASR_HWM=$(sed -n 's/^VmHWM:\s*\([0-9]*\).*/\1/p' "/proc/$ASR_PID/status")
ASR_HEAP=$(rss_of "$ASR_PID" '^\[heap\]$')
# After the incidents run the loop still owes wrk's last requests (seconds each): the daemon is
# killed instead of waited for (its slots end with it: PR_SET_PDEATHSIG).
kill -KILL "$ASR_PID" 2>/dev/null || true
wait "$ASR_PID" 2>/dev/null || true
ASR_PID=""
[ -z "$NGINX_PID" ] || stop_pid "$NGINX_PID" 100
NGINX_PID=""
log "throughput done at $(elapsed) s"

# --- report -----------------------------------------------------------------------------------------
echo "== api: the operator surface on the demo, store seeded with $SEED incidents ($(date -u +%Y-%m-%dT%H:%MZ)) =="
machine_line
echo "store: $seeded"
echo
echo "-- 1. idle, $wall s, four daemons side by side (load $IDLE_LOAD at the start) --"
row4() { printf '%-44s %13s %13s %15s %16s\n' "$@"; }
row4 "" "no api block" "api" "api + 1 stream" "api, demo store"
row4 "store" "seeded" "seeded" "seeded" "not seeded"
row4 "RSS max, 1 s samples (MB)" "$(mb "${rmax[noapi]}")" "$(mb "${rmax[api]}")" "$(mb "${rmax[sse]}")" "$(mb "${rmax[fresh]}")"
row4 "RSS anonymous at the end (MB)" "$(mb "${anon[noapi]}")" "$(mb "${anon[api]}")" "$(mb "${anon[sse]}")" "$(mb "${anon[fresh]}")"
row4 "  of which [heap] (MB)" "$(mb "${heap[noapi]}")" "$(mb "${heap[api]}")" "$(mb "${heap[sse]}")" "$(mb "${heap[fresh]}")"
row4 "libmicrohttpd + its TLS libraries (MB)" "$(mb "${tls[noapi]}")" "$(mb "${tls[api]}")" "$(mb "${tls[sse]}")" "$(mb "${tls[fresh]}")"
row4 "CPU, utime+stime, % of one core" "${cpu[noapi]}" "${cpu[api]}" "${cpu[sse]}" "${cpu[fresh]}"
row4 "CPU by schedstat, % of one core" "${cpu_ns[noapi]}" "${cpu_ns[api]}" "${cpu_ns[sse]}" "${cpu_ns[fresh]}"
echo "the stream client (curl -N, connected 1 s before the window) read $stream_bytes bytes ($([ "$stream_ok" -ge 1 ] && echo "its stream opened" || echo "NO stream"))"
echo "(libmicrohttpd + TLS: the resident pages of libmicrohttpd, libgnutls and the libraries gnutls needs, mapped in every asr process)"
echo
echo "-- 2. event stream: $SSE_N deliveries, one every $SSE_INTERVAL ms, on the api + stream daemon (load $SSE_LOAD at the start) --"
row5() { printf '%-44s %12s %12s %14s %14s\n' "$@"; }
row5 "" "asr, 1" "asr, 50" "floor, 1" "floor, 50"
row5 "events x clients received" "$s1_n" "$s50_n" "$f1_n" "$f50_n"
row5 "missed (event, client) pairs" "$s1_missing" "$s50_missing" "$f1_missing" "$f50_missing"
row5 "at -> arrival median (ms)" "$s1_median" "$s50_median" "$f1_median" "$f50_median"
row5 "at -> arrival p99 (ms)" "$s1_p99" "$s50_p99" "$f1_p99" "$f50_p99"
row5 "at -> arrival max (ms)" "$s1_max" "$s50_max" "$f1_max" "$f50_max"
row5 "POST sent -> its opened event, median (ms)" "$s1_post_median" "$s50_post_median" "$f1_post_median" "$f50_post_median"
row5 "POST sent -> its opened event, p99 (ms)" "$s1_post_p99" "$s50_post_p99" "$f1_post_p99" "$f50_post_p99"
row5 "POST sent -> its opened event, max (ms)" "$s1_post_max" "$s50_post_max" "$f1_post_max" "$f50_post_max"
row5 "POSTs not answered 200" "$s1_post_bad" "$s50_post_bad" "$f1_post_bad" "$f50_post_bad"
echo "at -> arrival median by kind: 1 client: $s1_kinds; 50 clients: $s50_kinds"
echo "asr CPU during the asr runs: $(awk -v t="$s1_cpu" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') s (1 client), $(awk -v t="$s50_cpu" -v hz="$HZ" 'BEGIN { printf "%.2f", t / hz }') s (50 clients)"
echo "floor: api_load.py serve, a python event-stream server stamping whole ms like asr's at; the same client code reads both"
echo
echo "-- 3. wrk -t2 -c10 -d${SECS}s --latency --timeout 30s (load $THR_LOAD at the start) --"
echo "nginx: $nginx_status; bodies: status $(wc -c <"$WWW/status.json") B, dashboard $(wc -c <"$WWW/index.html") B, metrics $(wc -c <"$WWW/metrics.txt") B, incidents $(wc -c <"$WWW/incidents.json") B"
row() { printf '%-30s %11s %11s %11s %11s %11s %11s %11s %11s\n' "$@"; }
row "" "status" "nginx" "dashboard" "nginx" "metrics" "nginx" "incidents" "nginx"
for k in rps requests p50 p99 max timeout non2xx us cpu shop_p50 shop_p99 shop_max shop_late; do
    case $k in
        rps) label="requests/s" ;;
        requests) label="requests answered" ;;
        p50 | p99 | max) label="latency $k (ms)" ;;
        timeout) label="timeouts (30 s)" ;;
        non2xx) label="non-2xx" ;;
        us) label="server CPU per request (us)" ;;
        cpu) label="server CPU (% of a core)" ;;
        shop_late) label="shop: unanswered at +3 s" ;;
        *) label="shop via proxy ${k#shop_} (ms)" ;;
    esac
    vals=()
    for e in st dash met inc; do a="a${e}_$k"; n="n${e}_$k"; vals+=("${!a}" "${!n}"); done
    row "$label" "${vals[@]}"
done
echo "shop via asr's proxy with nothing else running (GET / every 10 ms, open loop, ${SECS} s): p50 $idle_p50 / p99 $idle_p99 / max $idle_max ms ($idle_n requests, $idle_errors errors)"
echo "after the wrk runs, asr answered GET /api/v1/status in < 0.5 s again after: status ${drain_s[st]} s, dashboard ${drain_s[dash]} s, metrics ${drain_s[met]} s (after incidents: killed, not waited for)"
echo "asr RSS after the runs $(mb "$ASR_RSS_AFTER") MB (heap $(mb "$ASR_HEAP") MB), peak since start (VmHWM) $(mb "$ASR_HWM") MB"
echo "whole run: $(elapsed) s"

t1=$(awk -v k="${rmax[api]}" -v s="${rmax[sse]}" 'BEGIN { print (k < 10240 && s < 10240 ? "PASS" : "FAIL") }')
t2=$(awk -v c="${cpu[api]}" -v s="${cpu[sse]}" 'BEGIN { print (c < 1 && s < 1 ? "PASS" : "FAIL") }')
echo
echo "RESULT api-idle: RSS max $(mb "${rmax[api]}") MB (api), $(mb "${rmax[sse]}") MB (api + stream) vs $(mb "${rmax[noapi]}") MB without the api block (seeded store), $(mb "${rmax[fresh]}") MB with it on the demo store; < 10 MB -> $t1"
echo "RESULT api-idle: CPU ${cpu[api]} % (api), ${cpu[sse]} % (api + stream) vs ${cpu[noapi]} % without, ${cpu[fresh]} % on the demo store; < 1 % -> $t2"
echo "RESULT api-throughput: status $ast_rps req/s (nginx $nst_rps), dashboard $adash_rps (nginx $ndash_rps), metrics $amet_rps (nginx $nmet_rps), incidents?limit=50 $ainc_rps req/s, p50 $ainc_p50 ms (nginx $ninc_rps)"
echo "RESULT api-interference: shop p99 $idle_p99 ms with the API idle; while wrk hammers status $ast_shop_p99, metrics $amet_shop_p99, incidents $ainc_shop_p99 ms (nginx's copies: $nst_shop_p99, $nmet_shop_p99, $ninc_shop_p99 ms)"
echo "RESULT api-events: at -> arrival median/p99/max $s1_median/$s1_p99/$s1_max ms (1 client), $s50_median/$s50_p99/$s50_max ms (50 clients); floor $f1_median/$f1_p99/$f1_max and $f50_median/$f50_p99/$f50_max ms"
[ "$t1" = PASS ] && [ "$t2" = PASS ]
