# shellcheck shell=bash
# bench/lib.sh - sourced by the benchmarks: a private copy of the demo in a temp dir, asr
# started on free ports with its stderr saved, and cleanup (SIGTERM, bounded wait) on exit.
#
# Environment:
#   ASR_BIN    the asr binary (default: build/asr relative to the repo root)
#   BENCH_OUT  where daemon logs and raw wrk output are kept (default: bench/out)

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
ASR_BIN=${ASR_BIN:-$REPO_ROOT/build/asr}
case $ASR_BIN in /*) ;; *) ASR_BIN=$REPO_ROOT/$ASR_BIN ;; esac
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/out}
UTIL="python3 $BENCH_DIR/util.py"
BENCH_NAME=${BENCH_NAME:-$(basename "$0" .sh)}
STAMP=$(date +%Y%m%d-%H%M%S)

TMP=""
ASR_PID=""
EXTRA_CLEANUP=""   # name of a function the benchmark wants run first on exit

for tool in python3 curl git make; do
    command -v "$tool" >/dev/null || { echo "$BENCH_NAME: $tool is not installed" >&2; exit 2; }
done
[ -x "$ASR_BIN" ] || { echo "$BENCH_NAME: no asr binary at $ASR_BIN (set ASR_BIN or run make build)" >&2; exit 2; }
mkdir -p "$BENCH_OUT"

log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }

# Waits (bounded, tenths of a second) for a child process to exit, then SIGKILLs it.
stop_pid() {
    local pid=$1 tenths=${2:-150} i
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < tenths; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIGTERM within $((tenths / 10)) s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Processes still running from a binary inside our temp dir (orphaned slots, if asr died).
kill_leftovers() {
    local p exe
    [ -n "$TMP" ] || return 0
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        case $exe in "$TMP"/*)
            log "killing leftover pid ${p#/proc/} ($exe)"
            kill -KILL "${p#/proc/}" 2>/dev/null || true ;;
        esac
    done
}

bench_cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$EXTRA_CLEANUP" ]; then "$EXTRA_CLEANUP" || true; fi
    if [ -n "$ASR_PID" ]; then
        stop_pid "$ASR_PID" 200
        ASR_PID=""
    fi
    kill_leftovers
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        [ -f "$TMP/asr.log" ] && cp "$TMP/asr.log" "$BENCH_OUT/$BENCH_NAME-$STAMP-asr.log"
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Makes $TMP: demo/app, demo/upstream and asr.yaml committed in a fresh git repo, the config
# listening on free ports ($SHOP_PORT for shop, $UP_PORT for upstream).
bench_setup() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/asr-bench-$BENCH_NAME.XXXXXX")
    cp -r "$REPO_ROOT/demo/app" "$REPO_ROOT/demo/upstream" "$TMP/"
    read -r SHOP_PORT UP_PORT <<<"$($UTIL ports 2)"
    $UTIL config "$REPO_ROOT/demo/asr.yaml" "$TMP/asr.yaml" "$SHOP_PORT" "$UP_PORT"
    (
        cd "$TMP"
        git init -q
        git -c user.name=bench -c user.email=bench@localhost add -A
        git -c user.name=bench -c user.email=bench@localhost commit -q -m "bench: demo"
    )
    STATE="$TMP/state"
    "$ASR_BIN" config check -c "$TMP/asr.yaml" >/dev/null
    log "temp dir $TMP, shop on 127.0.0.1:$SHOP_PORT, upstream on 127.0.0.1:$UP_PORT"
}

# Starts the daemon (stderr to $TMP/asr.log, copied to $BENCH_OUT on exit) and waits until every
# service is healthy (bounded: 180 s covers building and testing both services).
asr_start() {
    "$ASR_BIN" run -c "$TMP/asr.yaml" --state-dir "$STATE" >"$TMP/asr.stdout" 2>"$TMP/asr.log" &
    ASR_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [ -S "$STATE/asr.sock" ] && break
        kill -0 "$ASR_PID" 2>/dev/null || { log "asr exited at start:"; tail -20 "$TMP/asr.log" >&2; return 1; }
        sleep 0.1
    done
    $UTIL wait-healthy "$ASR_BIN" "$STATE" 180 >/dev/null
    log "asr (pid $ASR_PID) is up, both services healthy"
}

asr_field() { $UTIL status "$ASR_BIN" "$STATE" "$1" "$2"; }

machine_line() {
    printf 'machine: %s, %s cores, %s; asr %s\n' "$(uname -m)" "$(nproc)" \
        "$(sed -n 's/^model name\s*:\s*//p' /proc/cpuinfo | head -1)" "$ASR_BIN"
    printf 'load average at start %s, at end %s (other work on the machine skews the figures)\n' \
        "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# CPU ticks (utime+stime, all threads, exited ones included) of a process.
cpu_ticks() { $UTIL proc "$1" | cut -d' ' -f2; }

# --- supervisord, the baseline that crash.sh and idle.sh measure asr against ----------------------
# start_supervisord: a private supervisord (own socket, pid and log files under $TMP/sv, in the
# foreground as our child) keeping $TMP/shop up on 127.0.0.1:$SV_PORT with autorestart=true.
# Sets SV_PID and SV_CONF; stop_supervisord undoes it (safe to call twice, and from cleanup).
SV_PID=""
SV_CONF=""
start_supervisord() {
    mkdir -p "$TMP/sv"
    SV_CONF="$TMP/sv/supervisord.conf"
    cat >"$SV_CONF" <<EOF
[unix_http_server]
file=$TMP/sv/supervisor.sock

[supervisord]
nodaemon=true
pidfile=$TMP/sv/supervisord.pid
logfile=$TMP/sv/supervisord.log
childlogdir=$TMP/sv

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$TMP/sv/supervisor.sock

[program:shop]
command=$TMP/shop --port $SV_PORT --db $TMP/sv/shop.db --upstream http://127.0.0.1:$UP_PORT/slow
directory=$TMP/sv
autostart=true
autorestart=true
stdout_logfile=$TMP/sv/shop.out
stderr_logfile=$TMP/sv/shop.err
EOF
    supervisord -c "$SV_CONF" >"$TMP/sv/supervisord.stdout" 2>&1 &
    SV_PID=$!
}

stop_supervisord() {
    [ -n "$SV_PID" ] || return 0
    command -v supervisorctl >/dev/null &&
        { timeout 10 supervisorctl -c "$SV_CONF" shutdown >/dev/null 2>&1 || true; }
    stop_pid "$SV_PID" 150
    SV_PID=""
}

# --- the detection benchmarks (detect_latency.sh, detect_flood.sh) ------------------------------
# detect_setup SERVICE_YAML TOP_YAML: makes $TMP with bench/detect_svc.c committed in a fresh git
# repo (asr builds it with cc, as a release), $TMP/detect_svc built the same way for the
# baselines, and $TMP/asr.yaml running one service `bench` (detect_svc serve) behind asr's proxy
# on the free port $SVC_PORT. SERVICE_YAML (keys of the service, indented by 4) and TOP_YAML
# (top-level keys) are added to the config; @TMP@ in them stands for $TMP.
detect_setup() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/asr-bench-$BENCH_NAME.XXXXXX")
    local svc_yaml=${1//@TMP@/$TMP} top_yaml=${2//@TMP@/$TMP}
    mkdir -p "$TMP/svc"
    cp "$BENCH_DIR/detect_svc.c" "$TMP/svc/"
    cc -std=c11 -O2 -o "$TMP/detect_svc" "$BENCH_DIR/detect_svc.c"
    read -r SVC_PORT <<<"$($UTIL ports 1)"
    cat >"$TMP/asr.yaml" <<EOF2
log_level: info
services:
  - name: bench
    repo: ./svc
    build: [cc, -std=c11, -O2, -o, detect_svc, detect_svc.c]
    start: [./detect_svc, serve, "\${PORT}"]
    listen: 127.0.0.1:$SVC_PORT
    health: {path: /health, interval_ms: 1000, timeout_ms: 1000, rise: 1, fall: 3}
$svc_yaml
$top_yaml
llm: {provider: none}
EOF2
    (
        cd "$TMP"
        git init -q
        git -c user.name=bench -c user.email=bench@localhost add asr.yaml svc
        git -c user.name=bench -c user.email=bench@localhost commit -q -m "bench: detect_svc"
    )
    STATE="$TMP/state"
    "$ASR_BIN" config check -c "$TMP/asr.yaml" >/dev/null
    log "temp dir $TMP, service bench behind 127.0.0.1:$SVC_PORT"
}

# wait_fired PORT N SECONDS: polls detect_svc's GET /status until it says "sent N of N" (bounded).
wait_fired() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(curl -fsS --max-time 1 "http://127.0.0.1:$1/status" 2>/dev/null)" = "sent $2 of $2" ] && return 0
        sleep 0.1
    done
    log "detect_svc on port $1 did not send its $2 lines within $3 s"
    return 1
}
