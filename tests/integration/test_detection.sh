# Detection through the daemon: fault lines on a slot's stderr become incidents in the store
# (one per fingerprint, repeats counted), faults close together are grouped, verification lines
# never open incidents, a crash is an incident with the last stderr lines as context, a resolved
# incident cools down before it can reopen, a restart of asr keeps deduplicating, and a reload
# with a broken signature is rejected while detection goes on.
source "$(dirname "$0")/lib.sh"
setup
cat >>"$CFG" <<'YAML'
detection: {cooldown_ms: 3s, group_window_ms: 30s, context_before: 5, context_after: 3, context_wait_ms: 500}
YAML
start_daemon
wait_for "shop healthy" 15 healthy "$SHOP_PORT"
commit=$(git -C "$REPO" rev-parse HEAD)

incidents() { "$ASR_BIN" incidents --state-dir "$STATE" --json "$@"; }
# field ID PYTHON-EXPR over the incident `i` (from `asr incident show ID --json`)
field() { # ID EXPR
    "$ASR_BIN" incident show "$1" --state-dir "$STATE" --json |
        python3 -c "import json,sys; i=json.load(sys.stdin); print($2)"
}
count_incidents() { db "select count(*) from incidents $1"; }
# db_is QUERY VALUE: for wait_for, which must run the query again on every try.
db_is() { [ "$(db "$1")" = "$2" ]; }

# 1. A signature hit on stderr opens one incident, with the slot, the release and the fields.
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "incident opened" 5 db_is "select count(*) from incidents where signature='FAULT_DB_TIMEOUT'" 1
id1=$(db "select id from incidents where signature='FAULT_DB_TIMEOUT'")
expect_eq "fingerprint" "shop:FAULT_DB_TIMEOUT:route=/test-fault/db-timeout" "$(field "$id1" "i['fingerprint']")"
expect_eq "source" stderr "$(field "$id1" "i['source']")"
expect_eq "release" "$commit" "$(field "$id1" "i['release']")"
expect_eq "slot set" True "$(field "$id1" "i['slot'] in ('blue','green')")"
expect_eq "captured reason" statement_timeout "$(field "$id1" "i['fields']['reason']")"
expect_eq "severity" error "$(field "$id1" "i['severity']")"

# 2. Repeats are absorbed: one incident, count 4.
for _ in 1 2 3; do http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null; done
wait_for "count 4" 5 db_is "select count from incidents where id=$id1" 4
expect_eq "still one incident" 1 "$(count_incidents "where signature='FAULT_DB_TIMEOUT'")"

# 3. A verification probe's fault line is recorded, never opens or counts.
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" -H "X-Asr-Verification: 1" >/dev/null
wait_for "verification recorded" 5 db_is "select verifications from incidents where id=$id1" 1
expect_eq "count unchanged by verification" 4 "$(db "select count from incidents where id=$id1")"
expect_eq "verification note" 1 "$(db "select count(*) from incident_notes where incident_id=$id1 and kind='verification'")"

# 4. Another fault of the same service soon after is grouped under the first.
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/external-api" >/dev/null
wait_for "external-api incident" 5 db_is "select count(*) from incidents where signature='FAULT_EXTERNAL_API_LATENCY'" 1
id2=$(db "select id from incidents where signature='FAULT_EXTERNAL_API_LATENCY'")
expect_eq "grouped under the first" "$id1" "$(db "select parent_id from incidents where id=$id2")"

# 5. A crash is an incident of kind exit, with the fault line before it as context.
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/crash" >/dev/null
wait_for "exit incident" 5 db_is "select count(*) from incidents where kind='exit'" 1
idx=$(db "select id from incidents where kind='exit'")
expect_eq "exit fingerprint" "shop:exit:signal=ABRT" "$(field "$idx" "i['fingerprint']")"
expect_eq "exit severity" critical "$(field "$idx" "i['severity']")"
expect_eq "crash context" True "$(field "$idx" "any('FAULT_CRASH' in l for l in i['context_before'])")"
wait_for "shop back" 5 healthy "$SHOP_PORT"

# 6. Resolve: within the cooldown the fault counts on the resolved incident; after it, it opens
#    a new incident that says which one it recurs.
"$ASR_BIN" incident resolve "$id1" --reason "fixed by hand" --state-dir "$STATE" >/dev/null
expect_eq "resolved" resolved "$(db "select status from incidents where id=$id1")"
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "counted in cooldown" 5 db_is "select count from incidents where id=$id1" 5
expect_eq "no reopen in cooldown" 1 "$(count_incidents "where signature='FAULT_DB_TIMEOUT'")"
expect_eq "recurred note" 1 "$(db "select count(*) from incident_notes where incident_id=$id1 and kind='recurred'")"
sleep 3.2
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "reopened after cooldown" 5 db_is "select count(*) from incidents where signature='FAULT_DB_TIMEOUT'" 2
id3=$(db "select max(id) from incidents where signature='FAULT_DB_TIMEOUT'")
wait_for "recurrence note" 5 db_is "select count(*) from incident_notes where incident_id=$id3 and kind='recurrence'" 1

# 7. The CLI shows it; control characters from the log never reach the terminal raw.
"$ASR_BIN" incidents --state-dir "$STATE" | grep -q "FAULT_DB_TIMEOUT" || fail "asr incidents table"
"$ASR_BIN" incident show "$id3" --state-dir "$STATE" | grep -q "fingerprint  shop:FAULT_DB_TIMEOUT" || fail "asr incident show"
n=$(incidents --status open | wc -l)
[ "$n" -ge 2 ] || fail "open incidents listed: $n"

# 8. A restart of asr keeps deduplicating against the open incident.
stop_daemon
start_daemon
wait_for "shop healthy again" 15 healthy "$SHOP_PORT"
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "absorbed after restart" 5 db_is "select count from incidents where id=$id3" 2
expect_eq "no new incident after restart" 2 "$(count_incidents "where signature='FAULT_DB_TIMEOUT'")"

# 9. A reload with a signature that does not compile is rejected; detection goes on.
cp "$CFG" "$WORK/good.yaml"
sed -i "s/pattern: 'FAULT_DB_TIMEOUT route=/pattern: '(FAULT_DB_TIMEOUT route=/" "$CFG"
"$ASR_BIN" config check -c "$CFG" >/dev/null 2>"$WORK/check.err" && fail "config check accepted a broken pattern"
grep -q "FAULT_DB_TIMEOUT" "$WORK/check.err" || fail "config check error does not name the signature: $(cat "$WORK/check.err")"
kill -HUP "$DAEMON_PID"
wait_for "reload rejected" 5 grep -q "config reload rejected" "$WORK/daemon.log"
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "still detecting after a rejected reload" 5 db_is "select count from incidents where id=$id3" 3
cp "$WORK/good.yaml" "$CFG"
pass "detection through the daemon"
