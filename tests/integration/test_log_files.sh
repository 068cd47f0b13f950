# A service's log_files are followed like `tail -F`: lines appended while asr runs become
# incidents; partial lines wait for their end; rename and copy-truncate rotations lose nothing;
# and a restart of asr resumes exactly where it stopped (no line read twice, none missed), also
# when the file was rotated while asr was down.
source "$(dirname "$0")/lib.sh"
setup
LOG=$WORK/logs/app.log
mkdir -p "$WORK/logs"
sed -i "s|^    logs: \[stdout, stderr\]$|    logs: [stdout, stderr]\n    log_files: [$LOG]|" "$CFG"
grep -q "log_files" "$CFG" || fail "could not add log_files"
# An old fault in the file before asr ever ran: a daemon meeting an old log starts at its end.
echo "FAULT_DB_TIMEOUT route=/old reason=x" >"$LOG"

marker() { echo "FAULT_DB_TIMEOUT route=$1 reason=statement_timeout"; }
count_of() { db "select coalesce(sum(count), 0) from incidents where fingerprint='shop:FAULT_DB_TIMEOUT:route=$1'"; }
count_is() { [ "$(count_of "$1")" = "$2" ]; }
expect_count() { # ROUTE N (wait_for runs count_is again on every try)
    wait_for "count of $1 = $2" 5 count_is "$1" "$2"
    pass "count of $1 = $2"
}
noise() { for i in $(seq 1 "$1"); do echo "2026-11-28 INFO GET /orders/$i 200 in ${i}ms"; done; }

start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
wait_for "tail opened" 5 grep -q "log file of shop" "$WORK/daemon.log"

# Appended lines become incidents; the old line was not read.
{ noise 5; marker /a; noise 3; marker /a; marker /a; } >>"$LOG"
expect_count /a 3
expect_eq "old line not read" 0 "$(count_of /old)"
expect_eq "source" "file:$LOG" "$(db "select source from incidents where fingerprint='shop:FAULT_DB_TIMEOUT:route=/a'")"
expect_eq "context before from the file" 5 "$(db "select json_array_length(context_before) from incidents where fingerprint='shop:FAULT_DB_TIMEOUT:route=/a'")"

# A partial line is held until its newline arrives.
printf 'FAULT_DB_TIMEOUT route=/partial' >>"$LOG"
sleep 0.5
expect_eq "partial line not taken yet" 0 "$(db "select count(*) from incidents where fingerprint like '%/partial%'")"
printf ' reason=late\n' >>"$LOG"
expect_count /partial 1

# Rename rotation: the writer keeps its descriptor on the old file for a moment.
exec 3>>"$LOG"
mv "$LOG" "$LOG.1"
{ marker /a; marker /a; } >&3
exec 3>&-
{ noise 2; marker /a; marker /a; } >"$LOG"
expect_count /a 7

# Copy-truncate rotation.
cp "$LOG" "$LOG.2"
: >"$LOG"
sleep 0.3
{ marker /a; noise 1; } >>"$LOG"
expect_count /a 8

# Restart of asr: lines written while it is down are read once, earlier ones not again.
stop_daemon
{ marker /a; marker /a; marker /b; } >>"$LOG"
start_daemon
wait_for "shop healthy again" 15 healthy "$SHOP_PORT"
expect_count /a 10
expect_count /b 1
sleep 0.5
expect_eq "no line read twice" 10 "$(count_of /a)"

# Rotated while asr was down: the rest of the old file (now app.log.1) is read, then the new one.
stop_daemon
rm -f "$LOG.1"
{ marker /c; marker /c; } >>"$LOG"
mv "$LOG" "$LOG.1"
{ marker /c; marker /c; marker /c; } >"$LOG"
start_daemon
wait_for "shop healthy again" 15 healthy "$SHOP_PORT"
expect_count /c 5
expect_count /a 10
pass "log files followed across rotation, truncation and restarts"
