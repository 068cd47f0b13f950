#!/usr/bin/env bash
# shellcheck disable=SC2154  # the *_rps, *_p50, *_median... variables come from eval "$($UTIL ...)"
# bench/crash.sh - crash recovery: SIGKILL the shop process, time kill -> first HTTP 200.
#
# 1. floor: the shop binary's own start time, exec -> first 200 on GET /health (KILLS times);
# 2. asr: KILLS x SIGKILL of the active shop slot, kill -> first 200 on GET /health through
#    asr's proxy (which holds requests while the slot restarts);
# 3. supervisord: the same shop binary (the one asr built) under a private supervisord with
#    autorestart=true on a fixed free port, KILLS x SIGKILL, kill -> first 200 on that port.
# ~1.5 s between kills, so the restarted process is healthy and stable before the next one.
#
# Targets (exit 1 if either fails): asr median < supervisord median, and
# asr median < floor median + 100 ms.
# Environment: ASR_BIN, BENCH_OUT (see lib.sh); KILLS (20).

# shellcheck disable=SC2034  # BENCH_NAME, EXTRA_CLEANUP: read by lib.sh
BENCH_NAME=crash
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
if ! command -v supervisord >/dev/null || ! command -v supervisorctl >/dev/null; then
    echo "crash: supervisor (supervisord, supervisorctl) is not installed" >&2
    exit 2
fi

KILLS=${KILLS:-20}
POLL="python3 $BENCH_DIR/crash_poll.py"
EXTRA_CLEANUP=stop_supervisord

bench_setup
asr_start
read -r SV_PORT FLOOR_PORT <<<"$($UTIL ports 2)"

# The shop binary asr built for the active release, copied so that nothing asr does touches it.
commit=$(asr_field shop commit)
built="$STATE/releases/shop/$commit/app/shop"
[ -x "$built" ] || { log "no built shop binary at $built"; exit 2; }
mkdir -p "$TMP/floor" "$TMP/sv"
cp "$built" "$TMP/shop"

# --- 1. floor ---------------------------------------------------------------------------------
log "floor: $KILLS starts of $TMP/shop on 127.0.0.1:$FLOOR_PORT"
$POLL floor "$KILLS" "$TMP/shop" "$FLOOR_PORT" "$TMP/floor" >"$TMP/floor.ms"

# --- 2. asr -----------------------------------------------------------------------------------
restarts0=$(asr_field shop restarts)
log "asr: $KILLS kills of the active shop slot, polling through the proxy on 127.0.0.1:$SHOP_PORT"
$POLL asr "$KILLS" "$ASR_BIN" "$STATE" "$SHOP_PORT" >"$TMP/asr.ms"
restarts1=$(asr_field shop restarts)

# --- 3. supervisord ---------------------------------------------------------------------------
start_supervisord
log "supervisord (pid $SV_PID, $(supervisord --version)): $KILLS kills of shop on 127.0.0.1:$SV_PORT"
$POLL supervisord "$KILLS" "$SV_CONF" "$SV_PORT" >"$TMP/sv.ms"
cp "$TMP/sv/supervisord.log" "$BENCH_OUT/crash-$STAMP-supervisord.log"
stop_supervisord

# --- report -----------------------------------------------------------------------------------
eval "$($UTIL stats floor "$TMP/floor.ms")"
eval "$($UTIL stats asr "$TMP/asr.ms")"
eval "$($UTIL stats sv "$TMP/sv.ms")"
for f in floor asr sv; do cp "$TMP/$f.ms" "$BENCH_OUT/crash-$STAMP-$f.ms"; done

echo "== crash: SIGKILL shop, time to the first HTTP 200 on GET /health, $KILLS kills each ($(date -u +%Y-%m-%dT%H:%MZ)) =="
machine_line
echo
printf '%-52s %10s %10s %10s\n' "how shop is kept up (ms)" median p90 max
printf '%-52s %10s %10s %10s\n' "floor: shop's own start, exec -> first 200" "$floor_median" "$floor_p90" "$floor_max"
printf '%-52s %10s %10s %10s\n' "asr: kill -> first 200 through the proxy" "$asr_median" "$asr_p90" "$asr_max"
printf '%-52s %10s %10s %10s\n' "supervisord autorestart: kill -> first 200" "$sv_median" "$sv_p90" "$sv_max"
echo
echo "asr restarts counter: $restarts0 -> $restarts1 ($((restarts1 - restarts0)) for $KILLS kills)"

t1=$(awk -v a="$asr_median" -v s="$sv_median" 'BEGIN { print (a < s ? "PASS" : "FAIL") }')
t2=$(awk -v a="$asr_median" -v f="$floor_median" 'BEGIN { print (a < f + 100 ? "PASS" : "FAIL") }')
echo
echo "RESULT crash: asr median ${asr_median} ms < supervisord median ${sv_median} ms -> $t1"
echo "RESULT crash: asr median ${asr_median} ms < floor median ${floor_median} ms + 100 ms -> $t2"
[ "$t1" = PASS ] && [ "$t2" = PASS ]
