#!/usr/bin/env bash
# bench/run-all.sh - runs bench/cutover.sh, bench/crash.sh and bench/idle.sh one after the
# other and summarises their RESULT lines. Exit status 1 if any of them failed.
# First it installs what is missing of the benchmarks' packages (scripts/install-deps.sh --bench:
# the build/test packages plus nginx-light and haproxy, the reference proxies of cutover.sh);
# `make demo` and `make test` do not install those two.
# Environment: ASR_BIN (default build/asr), BENCH_OUT (default bench/out); see README.md.

set -uo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
ASR_BIN=${ASR_BIN:-$REPO_ROOT/build/asr}
case $ASR_BIN in /*) ;; *) ASR_BIN=$REPO_ROOT/$ASR_BIN ;; esac
export ASR_BIN
export BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/out}
mkdir -p "$BENCH_OUT"
if ! "$REPO_ROOT/scripts/install-deps.sh" --bench; then
    echo "run-all: scripts/install-deps.sh --bench failed; going on (cutover.sh skips a reference proxy that is not installed)" >&2
fi
stamp=$(date +%Y%m%d-%H%M%S)
summary="$BENCH_OUT/run-all-$stamp.txt"

declare -A rc
for b in cutover crash idle; do
    echo "=== bench/$b.sh ==="
    # Each benchmark bounds its own loops; the timeout is a last resort.
    timeout 900 "$BENCH_DIR/$b.sh" 2>&1 | tee "$BENCH_OUT/$b-$stamp.txt"
    rc[$b]=${PIPESTATUS[0]}
    echo
done
# The detection benchmarks of issue 3 (results in bench/detection.md), in the same way.
for b in detect_latency detect_flood; do
    echo "=== bench/$b.sh ==="
    timeout 900 "$BENCH_DIR/$b.sh" 2>&1 | tee "$BENCH_OUT/$b-$stamp.txt"
    rc[$b]=${PIPESTATUS[0]}
    echo
done

{
    echo "=== summary ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, asr $ASR_BIN) ==="
    for b in cutover crash idle; do
        printf '%-8s exit %d\n' "$b" "${rc[$b]}"
        grep '^RESULT ' "$BENCH_OUT/$b-$stamp.txt" | sed 's/^RESULT /    /'
    done
} | tee "$summary"
for b in detect_latency detect_flood; do
    printf '%-8s exit %d\n' "$b" "${rc[$b]}"
    grep '^RESULT ' "$BENCH_OUT/$b-$stamp.txt" | sed 's/^RESULT /    /'
done | tee -a "$summary"
for b in detect_latency detect_flood; do
    [ "${rc[$b]}" -eq 0 ] || exit 1
done

for b in cutover crash idle; do
    [ "${rc[$b]}" -eq 0 ] || exit 1
done
exit 0
