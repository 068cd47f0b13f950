# GET /metrics on a running daemon (issue 6 scope 3, docs/metrics.md): one crash of the demo's
# shop is remediated by a blue/green restart; then the scrape passes `promtool check metrics`,
# and its MTTR histogram is the store's: _count and _sum equal the resolved incidents whose
# remediation succeeded (SQL on the same asr.db) and `asr incident show --json`'s MTTR.
source "$(dirname "$0")/lib.sh"
setup
API_PORT=$(free_port)
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 800, healthy_timeout_ms: 5000,/' "$CFG"
printf 'playbooks: %s\napi: {listen: "127.0.0.1:%s"}\n' "$ASR_SOURCE_DIR/demo/playbooks" "$API_PORT" >>"$CFG"
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "config check: $("$ASR_BIN" config check -c "$CFG" 2>&1)"
start_daemon
wait_for "shop healthy" 20 healthy "$SHOP_PORT"
api_up() { [ "$(http GET "http://127.0.0.1:$API_PORT/metrics")" = 200 ]; }
wait_for "the API answering" 10 api_up
scrape() { # FILE: GET /metrics into FILE; fails unless 200 with the exposition format's type
    local code
    code=$(curl -s -m 5 -o "$1" -D "$1.headers" -w '%{http_code}' "http://127.0.0.1:$API_PORT/metrics") || true
    [ "$code" = 200 ] || fail "GET /metrics answered $code: $(head -c 300 "$1")"
    grep -qi '^content-type: text/plain; version=0.0.4' "$1.headers" ||
        fail "GET /metrics content type: $(grep -i '^content-type' "$1.headers")"
}
promcheck() { # FILE
    if [ ! -x /usr/bin/promtool ]; then
        log "skipped: promtool check metrics (/usr/bin/promtool not found; Debian package prometheus)"
        return 0
    fi
    local out
    out=$(/usr/bin/promtool check metrics <"$1" 2>&1) || fail "promtool check metrics: $out"
    [ -z "$out" ] || fail "promtool check metrics: $out"
    pass "promtool check metrics accepts the scrape ($(wc -l <"$1") lines)"
}
sample() { # FILE SERIES: the value of the sample named exactly SERIES
    awk -v s="$2" 'substr($0, 1, length(s) + 1) == s " " { print substr($0, length(s) + 2) }' "$1"
}

# Before any fault: valid, an empty MTTR histogram, the services up.
scrape "$WORK/m0.txt"
promcheck "$WORK/m0.txt"
expect_eq "no recovery yet" 0 "$(sample "$WORK/m0.txt" asr_mttr_seconds_count)"
expect_eq "shop up" 1 "$(sample "$WORK/m0.txt" 'asr_service_up{service="shop"}')"

# One crash, remediated by the crash-loop playbook's restart.
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/crash" >/dev/null
db_is() { [ "$(db "$1")" = "$2" ]; }
wait_for "the crash remediated" 20 db_is "select count(*) from incidents i join remediations r on r.incident_id = i.id where i.status = 'resolved' and r.state = 'succeeded'" 1
wait_for "shop healthy again" 20 healthy "$SHOP_PORT"
id=$(db "select id from incidents where kind = 'exit'")

scrape "$WORK/m1.txt"
promcheck "$WORK/m1.txt"
# The MTTR histogram against the store, read by SQL on the same file...
# (in whole ms: _sum is the ms sum written with three decimals, exactly)
want=$(db "select count(*) || ' ' || printf('%d.%03d', sum(ms) / 1000, sum(ms) % 1000) from (select i.resolved_at - i.first_seen as ms from incidents i where i.status = 'resolved' and (select state from remediations r where r.incident_id = i.id order by r.id desc limit 1) = 'succeeded')")
expect_eq "MTTR _count and _sum = the store's" "$want" \
    "$(sample "$WORK/m1.txt" asr_mttr_seconds_count) $(sample "$WORK/m1.txt" asr_mttr_seconds_sum)"
# ... and by asr itself.
mttr_ms=$("$ASR_BIN" incident show "$id" --state-dir "$STATE" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["remediation"]["mttr_ms"])')
expect_eq "MTTR _sum = asr incident show's MTTR" \
    "$(python3 -c "print('%d.%03d' % divmod($mttr_ms, 1000))")" "$(sample "$WORK/m1.txt" asr_mttr_seconds_sum)"
expect_eq "+Inf bucket = count" 1 "$(sample "$WORK/m1.txt" 'asr_mttr_seconds_bucket{le="+Inf"}')"
expect_eq "the incident" 1 \
    "$(sample "$WORK/m1.txt" 'asr_incidents{service="shop",signature="exit",state="resolved"}')"
expect_eq "the remediation" 1 \
    "$(sample "$WORK/m1.txt" 'asr_remediations{service="shop",action="restart",outcome="succeeded"}')"
expect_eq "its verification" 1 "$(sample "$WORK/m1.txt" 'asr_stage_duration_seconds_count{stage="verify"}')"
expect_eq "the restart's deployment" 1 \
    "$(sample "$WORK/m1.txt" 'asr_deployments_total{service="shop",kind="deploy",outcome="succeeded"}')"
expect_eq "the detector opened it" 1 "$(sample "$WORK/m1.txt" asr_detector_incidents_opened_total)"
expect_eq "shop up again" 1 "$(sample "$WORK/m1.txt" 'asr_service_up{service="shop"}')"
pass "GET /metrics"
