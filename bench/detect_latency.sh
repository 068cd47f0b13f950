#!/usr/bin/env bash
# shellcheck disable=SC2154  # the pipe_*, sql_*, asr_* variables come from eval "$($DU ...)"
# bench/detect_latency.sh - detection latency: a marker line written to a running service's
# stderr -> a committed incident row.
#
# The service (bench/detect_svc.c, built by asr from a temp git repo) writes FAULTS lines
#     BENCH_FAULT key=<i> t_ns=<CLOCK_REALTIME ns just before write(2)>
# to its stderr, GAP_US apart, each with its own key, so each opens a new incident alone
# (signature BENCH_FAULT, dedupe [key]; detection.group_window_ms 0s so no grouping write).
# Latency per fault = committed_us from the daemon's "incident N opened: ... committed_us=" line
# (taken after the commit) - t_ns / 1000. Split into read (asr's received_us - t) and
# detect+commit (committed - received). Every key must have exactly one incident, count 1.
#
# Baselines in the same run:
#   1. the pipe floor: the same service binary writing the same lines into a pipe read by
#      `detect_svc read`, which timestamps each line when read(2) returns it;
#   2. the SQLite floor: FAULTS x (BEGIN; INSERT of an incident-sized row; COMMIT), WAL,
#      synchronous=FULL (as asr's store), on the same disk (the temp dir), GAP_US apart (python).
#
# Targets (exit 1 if one fails): p50 <= 1 ms, p99 <= 5 ms, all FAULTS incidents present with
# count 1. PROFILE=1: afterwards, another FAULTS faults under `perf record -g` and `perf trace -s`
# on the daemon (not in the figures), reports saved to BENCH_OUT.
# Environment: ASR_BIN, BENCH_OUT (see lib.sh); FAULTS (1000), GAP_US (10000: asr's own time per
# incident on a 2-core VM disk is ~5 ms, one fdatasync, so 5 ms gaps queue faults behind each
# other), PROFILE (0), DETECTION (the config's detection map, default {group_window_ms: 0s}).

# shellcheck disable=SC2034  # BENCH_NAME, EXTRA_CLEANUP: read by lib.sh
BENCH_NAME=detect_latency
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
command -v cc >/dev/null || { echo "detect_latency: cc is not installed" >&2; exit 2; }

FAULTS=${FAULTS:-1000}
GAP_US=${GAP_US:-10000}
DETECTION=${DETECTION:-'{group_window_ms: 0s}'}
PROFILE=${PROFILE:-0}
DU="python3 $BENCH_DIR/detect_util.py"
FIRE_SECS=$((FAULTS * GAP_US / 1000000 + 30))

FLOOR_PID=""
READER_PID=""
stop_floor() {
    stop_pid "$FLOOR_PID" 50
    stop_pid "$READER_PID" 50
    FLOOR_PID=""
    READER_PID=""
}
EXTRA_CLEANUP=stop_floor

# shellcheck disable=SC2016  # the pattern is YAML, not shell
detect_setup '    signatures:
      - {id: BENCH_FAULT, pattern: '"'"'BENCH_FAULT key=(?<key>\d+) t_ns=(?<t>\d+)'"'"', severity: error, dedupe: [key]}' \
    "detection: $DETECTION"

# --- 1. the pipe floor ------------------------------------------------------------------------
read -r FLOOR_PORT <<<"$($UTIL ports 1)"
mkfifo "$TMP/floor.fifo"
"$TMP/detect_svc" read <"$TMP/floor.fifo" >"$TMP/floor.lat" &
READER_PID=$!
"$TMP/detect_svc" serve "$FLOOR_PORT" 2>"$TMP/floor.fifo" >/dev/null &
FLOOR_PID=$!
for ((i = 0; i < 50; i++)); do
    curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$FLOOR_PORT/health" 2>/dev/null && break
    sleep 0.1
done
log "pipe floor: $FAULTS lines, $GAP_US us apart, detect_svc -> pipe -> detect_svc read"
curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$FLOOR_PORT/fire?n=$FAULTS&gap_us=$GAP_US"
wait_fired "$FLOOR_PORT" "$FAULTS" "$FIRE_SECS"
sleep 0.2
stop_floor
eval "$($DU floor "$TMP/floor.lat" "$FAULTS")"

# --- 2. the SQLite floor ----------------------------------------------------------------------
log "SQLite floor: $FAULTS commits (WAL, synchronous=FULL) in $TMP"
eval "$($DU commit "$TMP" "$FAULTS" "$GAP_US")"

# --- 3. asr -----------------------------------------------------------------------------------
asr_start
sleep 1
log "asr: $FAULTS faults on the service's stderr, $GAP_US us apart (through the proxy on $SVC_PORT)"
cpu0=$($UTIL proc "$ASR_PID" | cut -d' ' -f2)
w0=$(date +%s%N)
curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$SVC_PORT/fire?n=$FAULTS&gap_us=$GAP_US"
wait_fired "$SVC_PORT" "$FAULTS" "$FIRE_SECS"
w1=$(date +%s%N)
cpu1=$($UTIL proc "$ASR_PID" | cut -d' ' -f2)
asr_cpu=$(awk -v t="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" -v w="$((w1 - w0))" -v n="$FAULTS" \
    'BEGIN { printf "%.1f %% of one core, %.2f ms CPU per fault", 100 * t / hz / (w / 1e9), 1000 * t / hz / n }')
# every incident is committed before its daemon log line; wait (bounded) for the last one
for ((i = 0; i < 100; i++)); do
    [ "$(grep -c 'incident [0-9]* opened: service=bench signature=BENCH_FAULT' "$TMP/asr.log")" -ge "$FAULTS" ] && break
    sleep 0.1
done
eval "$($DU latency "$TMP/asr.log" "$STATE/asr.db" "$FAULTS" "$TMP/asr.lat")"
cp "$TMP/asr.lat" "$BENCH_OUT/detect_latency-$STAMP-asr.lat"
cp "$TMP/floor.lat" "$BENCH_OUT/detect_latency-$STAMP-pipe.lat"
rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$ASR_PID/status")

# --- optional: where the time goes ------------------------------------------------------------
# Two more rounds of FAULTS faults (new keys), not in the figures: one under `perf record -g`
# (on-CPU samples), one under `perf trace -s` (time in each syscall: fdatasync is off-CPU time).
profile_round() { # KEY0 TOOL ARGS...
    local key0=$1 pid
    shift
    "$@" >/dev/null 2>>"$TMP/perf.err" &
    pid=$!
    sleep 1
    curl -fsS --max-time 5 -o /dev/null "http://127.0.0.1:$SVC_PORT/fire?n=$FAULTS&gap_us=$GAP_US&key0=$key0"
    wait_fired "$SVC_PORT" "$FAULTS" "$FIRE_SECS"
    sleep 0.5
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
    log "profile: 2 x $FAULTS more faults, under perf record -g, then perf trace -s (not in the figures)"
    profile_round "$FAULTS" perf record -g -o "$TMP/perf.data" -p "$ASR_PID"
    profile_round $((2 * FAULTS)) perf trace -s -p "$ASR_PID" -o "$TMP/perf-trace.txt"
    perf report -i "$TMP/perf.data" --no-children --stdio -g none --percent-limit 0.5 2>/dev/null \
        >"$BENCH_OUT/detect_latency-$STAMP-perf-report.txt" || true
    perf report -i "$TMP/perf.data" --children --stdio -g none --percent-limit 2 2>/dev/null \
        >"$BENCH_OUT/detect_latency-$STAMP-perf-children.txt" || true
    perf report -i "$TMP/perf.data" --no-children --stdio -g none --sort dso 2>/dev/null \
        >"$BENCH_OUT/detect_latency-$STAMP-perf-dso.txt" || true
    cp "$TMP/perf-trace.txt" "$BENCH_OUT/detect_latency-$STAMP-perf-trace.txt" 2>/dev/null || true
    log "profile saved: $BENCH_OUT/detect_latency-$STAMP-perf-*.txt"
fi

# --- report -----------------------------------------------------------------------------------
echo "== detect_latency: marker line on stderr -> committed incident, $FAULTS faults ${GAP_US} us apart ($(date -u +%Y-%m-%dT%H:%MZ)) =="
machine_line
echo "detection: $DETECTION"
echo "state dir on: $(df -T "$STATE" | awk 'NR == 2 { print $2 " " $1 }'); asr RSS after the run ${rss} kB"
echo
printf '%-58s %8s %8s %8s %8s %8s\n' "latency (ms)" p50 p90 p99 max n
printf '%-58s %8s %8s %8s %8s %8s\n' "floor: write -> read by a trivial pipe reader" "$pipe_p50" "$pipe_p90" "$pipe_p99" "$pipe_max" "$pipe_n"
printf '%-58s %8s %8s %8s %8s %8s\n' "floor: one SQLite commit (WAL, synchronous=FULL)" "$sql_p50" "$sql_p90" "$sql_p99" "$sql_max" "$sql_n"
printf '%-58s %8s %8s %8s %8s %8s\n' "asr: write -> committed incident row" "$asr_p50" "$asr_p90" "$asr_p99" "$asr_max" "$asr_n"
printf '%-58s %8s %8s %8s %8s %8s\n' "  of which write -> read by asr (received_us)" "$asr_read_p50" "$asr_read_p90" "$asr_read_p99" "$asr_read_max" "$asr_read_n"
printf '%-58s %8s %8s %8s %8s %8s\n' "  of which read -> committed (detect + commit)" "$asr_commit_p50" "$asr_commit_p90" "$asr_commit_p99" "$asr_commit_max" "$asr_commit_n"
echo
echo "faults over 1 ms: $asr_over1, over 5 ms: $asr_over5; asr CPU while firing (utime+stime): $asr_cpu"
if [ -s "$BENCH_OUT/detect_latency-$STAMP-perf-dso.txt" ]; then
    printf 'profile (another %d faults, perf record, on-CPU samples by object): %s\n' "$FAULTS" \
        "$(grep -E '^ +[0-9.]+%' "$BENCH_OUT/detect_latency-$STAMP-perf-dso.txt" | head -6 | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $2, $1 }')"
fi
if [ -s "$BENCH_OUT/detect_latency-$STAMP-perf-trace.txt" ]; then
    awk -v n="$FAULTS" '$1 == "fdatasync" || $1 == "fsync" || $1 == "pwrite64" || $1 == "epoll_wait" {
        printf "profile (another %d faults, perf trace -s): %s %d calls (%.1f per fault), %.0f ms in all, avg %.2f ms, max %.2f ms\n", n, $1, $2, $2 / n, $4, $6, $7 }' \
        "$BENCH_OUT/detect_latency-$STAMP-perf-trace.txt"
fi
echo "store: $asr_incidents BENCH_FAULT incidents; missing keys $asr_missing${asr_missing_keys:+ ($asr_missing_keys)}, keys with more than one incident $asr_dup, count != 1 $asr_badcount, unexpected keys $asr_extra, without a daemon log line $asr_nolog"

t1=$(awk -v a="$asr_p50" 'BEGIN { print (a <= 1 ? "PASS" : "FAIL") }')
t2=$(awk -v a="$asr_p99" 'BEGIN { print (a <= 5 ? "PASS" : "FAIL") }')
t3=FAIL
[ "$asr_incidents" -eq "$FAULTS" ] && [ "$asr_missing" -eq 0 ] && [ "$asr_dup" -eq 0 ] &&
    [ "$asr_badcount" -eq 0 ] && [ "$asr_n" -eq "$FAULTS" ] && t3=PASS
echo
echo "RESULT detect_latency: p50 ${asr_p50} ms <= 1 ms (SQLite commit floor p50 ${sql_p50} ms) -> $t1"
echo "RESULT detect_latency: p99 ${asr_p99} ms <= 5 ms (SQLite commit floor p99 ${sql_p99} ms) -> $t2"
echo "RESULT detect_latency: $asr_incidents/$FAULTS incidents, each once with count 1 -> $t3"
[ "$t1" = PASS ] && [ "$t2" = PASS ] && [ "$t3" = PASS ]
