#!/usr/bin/env bash
# sigscan.sh - signature scan speed next to grep, in the same run on the same file.
#
# Generates 100 signatures (50 literals like FAULT_CODE_0017, 50 regexes with named captures
# like `payment (?<op>\w+) failed after (?<ms>\d+) ms`) and MB megabytes of Loghub-like log lines
# (~0.1% carry a signature hit) into DIR, then scans the file with asr's signature set (line by
# line, through the framer, and as blocks; generic detectors off and on) and with
# `grep -E -c -f` on the same patterns (named groups as plain groups, \d as [0-9]) in the
# current locale and with LC_ALL=C. Prints GB/s by CPU time and by wall time for each, and
# checks that asr's count of lines with a configured hit equals grep's count.
#
#   bench/sigscan.sh [MB] [DIR]        defaults: 1024 /tmp/asr-sigscan
#   SIGSCAN_BENCH=path/to/sigscan_bench overrides the binary (default build-sig/bench/...,
#   built there if missing). Results and how to read them: bench/sigscan.md.
set -euo pipefail

MB=${1:-1024}
DIR=${2:-/tmp/asr-sigscan}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SIGSCAN_BENCH:-$ROOT/build-sig/bench/sigscan_bench}

if [ ! -x "$BIN" ]; then
    cmake -S "$ROOT" -B "$ROOT/build-sig" >/dev/null
    cmake --build "$ROOT/build-sig" --target sigscan_bench >/dev/null
fi
mkdir -p "$DIR"
if [ ! -s "$DIR/log.txt" ] || [ "$(stat -c %s "$DIR/log.txt")" -lt $((MB * 1048576)) ]; then
    "$BIN" gen "$DIR" "$MB"
fi
LOG=$DIR/log.txt
cat "$LOG" >/dev/null # into the page cache, for every contender alike

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "file: $LOG, $(stat -c %s "$LOG") bytes, $(wc -l <"$LOG") lines"

run_asr() {
    "$BIN" scan "$@" "$DIR/sigs.tsv" "$LOG"
}
lines_off=$(run_asr) && echo "$lines_off"
run_asr --generic
run_asr --framer
block_off=$(run_asr --block) && echo "$block_off"
run_asr --generic --block

# grep: wall and CPU (user + sys) time from bash's `time`.
run_grep() {
    local label=$1 out t
    shift
    local TIMEFORMAT='%R %U %S'
    { t=$( { time "$@" grep -E -c -f "$DIR/grep.txt" "$LOG" >"$DIR/grep.count"; } 2>&1 ); } || true
    out=$(cat "$DIR/grep.count")
    read -r wall user sys <<<"$t"
    awk -v l="$label" -v c="$out" -v w="$wall" -v u="$user" -v s="$sys" -v b="$(stat -c %s "$LOG")" \
        'BEGIN { printf "%-22s hit_lines=%s wall_s=%.3f cpu_s=%.3f GB/s(cpu)=%.3f GB/s(wall)=%.3f\n",
                 l, c, w, u + s, b / (u + s) / 1e9, b / w / 1e9 }'
}
run_grep "grep-E(${LC_ALL:-${LANG:-C}})" env
run_grep "grep-E(LC_ALL=C)" env LC_ALL=C

want=$(sed -n 's/.* hit_lines=\([0-9]*\).*/\1/p' <<<"$lines_off")
blk=$(sed -n 's/.* hit_lines=\([0-9]*\).*/\1/p' <<<"$block_off")
got=$(cat "$DIR/grep.count")
if [ "$want" = "$got" ] && [ "$want" = "$blk" ]; then
    echo "counts agree: $want lines with a configured signature (asr per line, asr block, grep)"
else
    echo "COUNTS DIFFER: asr per line $want, asr block $blk, grep $got" >&2
    exit 1
fi
