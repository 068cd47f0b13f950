#!/usr/bin/env bash
# shellcheck disable=SC2154  # the rss_*, check_* variables come from eval "$($DU ...)"
# bench/detect_flood.sh - a flood through the file tailer: exactly one incident per dedupe key,
# counts that add up to the lines sent, flat memory.
#
# One service (bench/detect_svc.c, idle and healthy) with log_files: [$TMP/flood.log] and the
# signature {id: FLOOD, pattern: 'FLOOD key=(?<key>k\d+)', dedupe: [key]}. A writer
# (`detect_svc flood`, C) appends to the file for DURATION s: RATE marker lines a second over KEYS
# keys (k0..k9, in a fixed pseudo-random order, so the keys' counts differ), each followed by
# NOISE realistic INFO lines (method, path, status, duration, bytes, request id vary), one
# write(2) per line, on an absolute 1 ms schedule. It prints how many markers it wrote per key.
#
# Two phases on the same daemon, each DURATION s:
#   plain:   the writer appends to flood.log;
#   rotated: the same, but halfway through the writer renames flood.log to flood.log.1 and
#            creates a new flood.log (a rename rotation: asr must read the old file to its end).
# After each phase: wait until the store's FLOOD counts stop changing (flushes every 100 ms), then
# check exactly KEYS incidents with signature FLOOD and, per key, the count added in the phase ==
# the markers written. The daemon's VmRSS and CPU are sampled once a second.
#
# Baseline in the same run: `tail -F -n 0` on the same file (output to /dev/null), what a plain
# follower costs: its CPU and RSS over the same window.
#
# Targets (exit 1 if one fails): exactly KEYS incidents and exact per-key counts in both phases;
# RSS growth < 10 % from the sample at WARM s to the end of each phase.
# Environment: ASR_BIN, BENCH_OUT (see lib.sh); DURATION (60 s per phase; use 10 for a quick
# check), RATE (1000), NOISE (9), KEYS (10), WARM (5).

# shellcheck disable=SC2034  # BENCH_NAME, EXTRA_CLEANUP: read by lib.sh
BENCH_NAME=detect_flood
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
command -v cc >/dev/null || { echo "detect_flood: cc is not installed" >&2; exit 2; }
command -v tail >/dev/null || { echo "detect_flood: tail is not installed" >&2; exit 2; }

DURATION=${DURATION:-60}
RATE=${RATE:-1000}
NOISE=${NOISE:-9}
KEYS=${KEYS:-10}
WARM=${WARM:-5}
DU="python3 $BENCH_DIR/detect_util.py"
HZ=$(getconf CLK_TCK)

TAIL_PID=""
SAMPLER_PID=""
stop_helpers() {
    [ -z "$TMP" ] || touch "$TMP/sample.stop"
    stop_pid "$SAMPLER_PID" 30
    stop_pid "$TAIL_PID" 30
    SAMPLER_PID=""
    TAIL_PID=""
}
EXTRA_CLEANUP=stop_helpers

# shellcheck disable=SC2016  # the pattern is YAML, not shell
detect_setup '    log_files: [@TMP@/flood.log]
    signatures:
      - {id: FLOOD, pattern: '"'"'FLOOD key=(?<key>k\d+)'"'"', severity: warning, dedupe: [key]}' ''
: >"$TMP/flood.log"   # exists and empty: asr follows it from its (empty) end
asr_start
tail -F -n 0 "$TMP/flood.log" >/dev/null 2>"$TMP/tail.err" &
TAIL_PID=$!
sleep 1
log "sampling asr (pid $ASR_PID) and tail -F (pid $TAIL_PID) once a second"
$DU sample "$TMP/samples.txt" "$TMP/sample.stop" $((DURATION * 2 + 300)) "$ASR_PID" "$TAIL_PID" &
SAMPLER_PID=$!
sched_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
ticks() { $UTIL proc "$1" | cut -d' ' -f2; }

# phase NAME ROTATE_AT: one writer run, then the checks. Sets NAME_* result variables.
phase() {
    local name=$1 rot=$2 a0 a1 t0 t1 an0 an1 w0 w1 wall sum waited
    $DU counts "$STATE/asr.db" FLOOD >"$TMP/$name.before"
    a0=$(ticks "$ASR_PID"); t0=$(ticks "$TAIL_PID"); an0=$(sched_ns "$ASR_PID")
    local s0 s1
    s0=$(awk 'END { print $1 }' "$TMP/samples.txt")
    w0=$(date +%s%N)
    log "$name: writer for $DURATION s, $RATE markers/s over $KEYS keys + $NOISE noise lines each${rot:+, rotation at $rot s}"
    "$TMP/detect_svc" flood "$TMP/flood.log" "$DURATION" "$RATE" "$NOISE" "$KEYS" "${rot:-0}" \
        >"$TMP/$name.written"
    w1=$(date +%s%N)
    a1=$(ticks "$ASR_PID"); t1=$(ticks "$TAIL_PID"); an1=$(sched_ns "$ASR_PID")
    s1=$(awk 'END { print $1 }' "$TMP/samples.txt")
    wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    local expect
    expect=$(awk '$1 == "markers" { print $2 }' "$TMP/$name.written")
    expect=$((expect + $(awk '$1 == "incidents" { next } { s += $2 } END { print s + 0 }' "$TMP/$name.before")))
    read -r sum waited <<<"$($DU wait-stable "$STATE/asr.db" FLOOD "$expect" 60)"
    sleep 0.5   # one more flush period: nothing may arrive after the sum is reached
    $DU counts "$STATE/asr.db" FLOOD >"$TMP/$name.after"
    log "$name: store sum $sum (expected $expect) after waiting $waited s"
    # samples of this phase only (the sampler's clock: seconds since it started)
    awk -v a="$s0" -v b="$s1" '$1 >= a && $1 <= b + 1' "$TMP/samples.txt" | awk -v a="$s0" '{ $1 = $1 - a; print }' >"$TMP/$name.samples"
    eval "$($DU rss-report "$TMP/$name.samples" "$ASR_PID" "$WARM")"
    local tr
    tr=$($DU rss-report "$TMP/$name.samples" "$TAIL_PID" "$WARM" | sed 's/rss_/tail_rss_/g')
    eval "$tr"
    {
        echo "-- $name: ${DURATION} s (writer wall $wall s)${rot:+, flood.log renamed to flood.log.1 at $rot s} --"
        $DU flood-check "$TMP/$name.written" "$TMP/$name.before" "$TMP/$name.after" 2>"$TMP/$name.check"
    } >"$TMP/$name.report"
    eval "$(cat "$TMP/$name.check")"
    printf -v "${name}_wall" '%s' "$wall"
    printf -v "${name}_cpu" '%s' "$(awk -v t="$((a1 - a0))" -v hz="$HZ" -v w="$wall" 'BEGIN { printf "%.1f", 100 * t / hz / w }')"
    printf -v "${name}_cpu_ns" '%s' "$(awk -v n="$((an1 - an0))" -v w="$wall" 'BEGIN { printf "%.1f", 100 * n / 1e9 / w }')"
    printf -v "${name}_tail_cpu" '%s' "$(awk -v t="$((t1 - t0))" -v hz="$HZ" -v w="$wall" 'BEGIN { printf "%.1f", 100 * t / hz / w }')"
    local v
    for v in rss_warm rss_end rss_max rss_growth tail_rss_warm tail_rss_end tail_rss_max \
        check_incidents check_badkeys check_extra check_written check_counted check_noise check_late_ms; do
        printf -v "${name}_$v" '%s' "${!v}"
    done
    cp "$TMP/$name.samples" "$BENCH_OUT/detect_flood-$STAMP-$name.samples"
}

phase plain ""
phase rotated $((DURATION / 2))
stop_helpers
lines_s=$((RATE * (NOISE + 1)))
size_mb=$(du -cm "$TMP"/flood.log* | awk 'END { print $1 }')

echo "== detect_flood: $RATE markers/s over $KEYS keys + $NOISE noise lines each ($lines_s lines/s) through the file tailer, $DURATION s per phase ($(date -u +%Y-%m-%dT%H:%MZ)) =="
machine_line
echo "log files written: $size_mb MB in all"
echo
for p in plain rotated; do
    cat "$TMP/$p.report"
    echo
done
printf '%-44s %14s %14s\n' "" plain rotated
row() { printf '%-44s %14s %14s\n' "$1" "$2" "$3"; }
row "marker lines written (noise lines)" "$plain_check_written ($plain_check_noise)" "$rotated_check_written ($rotated_check_noise)"
row "writer fell behind its schedule by, max ms" "$plain_check_late_ms" "$rotated_check_late_ms"
row "FLOOD incidents in the store" "$plain_check_incidents" "$rotated_check_incidents"
row "counted in the phase" "$plain_check_counted" "$rotated_check_counted"
row "asr CPU % of one core (schedstat)" "$plain_cpu ($plain_cpu_ns)" "$rotated_cpu ($rotated_cpu_ns)"
row "tail -F CPU % of one core" "$plain_tail_cpu" "$rotated_tail_cpu"
row "asr RSS kB at ${WARM} s / end / max" "$plain_rss_warm/$plain_rss_end/$plain_rss_max" "$rotated_rss_warm/$rotated_rss_end/$rotated_rss_max"
row "asr RSS growth % (${WARM} s -> end)" "$plain_rss_growth" "$rotated_rss_growth"
row "tail -F RSS kB at ${WARM} s / end / max" "$plain_tail_rss_warm/$plain_tail_rss_end/$plain_tail_rss_max" "$rotated_tail_rss_warm/$rotated_tail_rss_end/$rotated_tail_rss_max"

rc=0
echo
for p in plain rotated; do
    inc="${p}_check_incidents" bad="${p}_check_badkeys" ex="${p}_check_extra" w="${p}_check_written" c="${p}_check_counted" g="${p}_rss_growth"
    t1=FAIL
    [ "${!inc}" -eq "$KEYS" ] && [ "${!bad}" -eq 0 ] && [ "${!ex}" -eq 0 ] && [ "${!w}" -eq "${!c}" ] && t1=PASS
    t2=$(awk -v g="${!g}" 'BEGIN { print (g < 10 ? "PASS" : "FAIL") }')
    echo "RESULT detect_flood: $p: ${!inc} incidents (want $KEYS), counted ${!c} of ${!w} marker lines, $((${!bad})) keys off -> $t1"
    echo "RESULT detect_flood: $p: asr RSS growth ${!g} % < 10 % -> $t2"
    [ "$t1" = PASS ] && [ "$t2" = PASS ] || rc=1
done
exit $rc
