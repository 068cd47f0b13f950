# The operator's HTTP API against the running daemon (issue 6 acceptance): every route of
# src/api/api.c's table plus /metrics, the event stream, the dashboard's files and the control
# socket's form of the same calls. One daemon serves the demo shop with the demo playbooks, an
# `api:` block with a token and a 4 KiB body cap, and a policy that wants approval for restarts:
#   - reads are open on loopback; a call that acts needs the token: 401 without it or with a
#     wrong one (WWW-Authenticate), and 403 once a reload leaves no token configured
#   - bodies: malformed JSON, a non-object, an unknown field, a non-string value are 400; over
#     the cap 413, declared (Content-Length) or chunked; exactly at the cap accepted
#   - unknown ids, names and paths are 404, a wrong method 405; every error is {error, status}
#   - a patch-class fault (POST /test-fault/run on the shop) is remediated end to end and
#     GET /incidents/ID shows every stage in order, the diff, the build and test output and the
#     verification; the event stream carried it live and resumes after Last-Event-ID
#   - crashes wait for approval: approved by plan and by incident (the CLI), rejected by plan
#     and by incident, then resolved by hand
#   - deploy and rollback over HTTP move the service's commit and slot; the CLI's deploy too
#   - incidents: filters, limit and before paging (following "next"), bad queries 400
#   - CloudWatch ingest: garbage 400, CONTROL_MESSAGE accepted with 0, a delivery with a fault
#     line of a configured signature opens an incident
#   - GET /audit is ok; /metrics passes promtool and its MTTR count and sum equal the store's
# With API_EXAMPLES=DIR it also writes each call and its answer there, one file per call (the
# token replaced by $TOKEN), and the event stream as events.txt: docs/api.md's examples come
# from such a run.
source "$(dirname "$0")/lib.sh"

# The sanitizers slow the daemon down several times: waits are scaled.
SLOW=1
[ -n "${ASAN_OPTIONS:-}" ] && SLOW=4

setup
API_PORT=$(free_port)
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 800, healthy_timeout_ms: 5000,/' "$CFG"
sed -i 's|^    policy: .*|    policy: {patch_paths: ["src/**"], approval: [restart, patch], budget: {remediations: 20, per: 1h}, cooldown: 0s}|' "$CFG"
cat >>"$CFG" <<EOF
detection: {cooldown_ms: 500ms}
playbooks: $ASR_SOURCE_DIR/demo/playbooks
api:
  listen: 127.0.0.1:$API_PORT
  token_env: ASR_TEST_TOKEN
  max_body_bytes: 4096
EOF
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "config check: $("$ASR_BIN" config check -c "$CFG" 2>&1)"
# The token reaches asr through the environment only.
ASR_TEST_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
export ASR_TEST_TOKEN
AUTH=(-H "Authorization: Bearer $ASR_TEST_TOKEN")
B=http://127.0.0.1:$API_PORT
EXAMPLE=0
TIMEOUT=$((20 * SLOW))

start_daemon
wait_for "shop healthy" $((20 * SLOW)) healthy "$SHOP_PORT"
wait_for "the API" $((10 * SLOW)) sh -c "curl -sf -m 2 $B/api/v1/status"

# One Python for every question about an answer or the store: a python3 per question costs
# 0.1-0.4 s on a busy 2-core machine, and the test asks a few hundred. q KIND ARG sends one line
# ("j EXPR": a Python expression over the last answer's JSON, d; "d SQL": a read-only query, rows
# as a|b|c) and reads "ok|error N" and N lines back.
cat >"$WORK/q.py" <<'PY'
import json, sqlite3, sys
body, dbfile = sys.argv[1], sys.argv[2]
con = None
for line in sys.stdin:
    kind, _, arg = line.rstrip("\n").partition(" ")
    try:
        if kind == "j":
            v = eval(arg, {"d": json.load(open(body))})
            out = " ".join(map(str, v)) if isinstance(v, tuple) else str(v)  # as print() would
        else:
            if con is None:
                con = sqlite3.connect(f"file:{dbfile}?mode=ro", uri=True)
            out = "\n".join("|".join(map(str, r)) for r in con.execute(arg))
        status = "ok"
    except Exception as e:
        status, out = "error", f"{type(e).__name__}: {e}"
    lines = out.split("\n")
    sys.stdout.write(f"{status} {len(lines)}\n" + "\n".join(lines) + "\n")
    sys.stdout.flush()
PY
coproc QPY { exec python3 -u "$WORK/q.py" "$WORK/body" "$STATE/asr.db"; }
q() {
    local status n line i out=()
    printf '%s %s\n' "$1" "${2//$'\n'/ }" >&"${QPY[1]}"
    read -r status n <&"${QPY[0]}" || fail "the query helper is gone (asked: $1 $2)"
    for ((i = 0; i < n; i++)); do
        IFS= read -r line <&"${QPY[0]}"
        out+=("$line")
    done
    [ "$status" = ok ] || fail "$1 $2: ${out[*]} (the answer: $(head -c 300 "$WORK/body"))"
    printf '%s\n' "${out[@]}"
}
j() { q j "$1"; }
db() { q d "$1"; } # lib.sh's, without a python3 per query

# call METHOD PATH [curl args...]: the answer's body goes to $WORK/body, its headers to
# $WORK/headers; prints the status (000 when there was no answer).
call() {
    local m=$1 p=$2
    shift 2
    curl -s -m "$TIMEOUT" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' -X "$m" "$@" "$B$p" ||
        true
}
# check WHAT STATUS METHOD PATH [curl args...]: the call must answer STATUS; an error's body must be
# {"error": "...", "status": STATUS, ...} (a failed deploy adds what it did: "service", "result").
check() {
    local what=$1 want=$2 m=$3 p=$4
    shift 2
    local got
    got=$(call "$@")
    [ "$got" = "$want" ] || fail "$what: $m $p answered $got, expected $want: $(head -c 400 "$WORK/body")"
    if [ "$want" -ge 400 ] && [ "$m" != HEAD ]; then
        local re='^\{"error":"([^"\\]|\\.)+","status":'$want'[,}]'
        [[ $(<"$WORK/body") =~ $re ]] || fail "$what: the error's shape: $(head -c 400 "$WORK/body")"
    fi
    if [ -n "${API_EXAMPLES:-}" ]; then
        EXAMPLE=$((EXAMPLE + 1))
        {
            printf '%s\n' "$what" "$got" "${*//$ASR_TEST_TOKEN/\$TOKEN}"
            cat "$WORK/body"
        } >"$API_EXAMPLES/$(printf %03d $EXAMPLE).txt"
    fi
    pass "$what: $m $p $got"
}
is() { # WHAT EXPECTED PYTHON-EXPR: the expression over the last answer must print EXPECTED
    expect_eq "$1" "$2" "$(j "$3")"
}
header() { grep -i "^$1:" "$WORK/headers" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
db_is() { [ "$(db "$1")" = "$2" ]; }
# says WHAT TEXT VALUE: VALUE contains TEXT. (q's answers are read in this shell: not in a pipe.)
says() {
    [[ $3 == *"$2"* ]] || fail "$1: '$3' does not say '$2'"
}

# ---- 1. Reads, the dashboard's files, unknown paths and methods ----------------------------
check "status" 200 GET /api/v1/status
is "status: the daemon's pid" "$DAEMON_PID" 'd["daemon"]["pid"]'
is "status: detection counters and services" "True True" \
    '"lines" in d["daemon"]["detection"], sorted(s["name"] for s in d["services"]) == ["shop", "upstream"]'
check "services" 200 GET /api/v1/services
is "services: both" "shop upstream" '" ".join(sorted(s["name"] for s in d["services"]))'
check "one service" 200 GET /api/v1/services/shop
is "service: key fields" "shop healthy True True 2 True" \
    'd["name"], d["health"], d["active_slot"] in ("blue", "green"), len(d["commit"]) == 40, len(d["slots"]), "requests_total" in d["proxy"]'
SHOP_COMMIT0=$(j 'd["commit"]')
check "HEAD is a GET" 200 HEAD /api/v1/services/shop -I
check "unknown service" 404 GET /api/v1/services/nosuch
check "unknown incident" 404 GET /api/v1/incidents/999999
check "an id that is not a number" 404 GET /api/v1/incidents/abc
check "unknown plan" 404 GET /api/v1/plans/999999
check "unknown path under the API" 404 GET /api/v1/nosuch
check "unknown path outside it" 404 GET /nosuch
check "wrong method (GET on an action)" 405 GET /api/v1/incidents/1/resolve
says "405 should name the allowed method" "allowed: POST" "$(j 'd["error"]')"
check "wrong method (DELETE, with the token)" 405 DELETE /api/v1/services/shop "${AUTH[@]}"
check "wrong method (POST on the stream)" 405 POST /api/v1/events "${AUTH[@]}"
check "the stream and /metrics answer GET only" 405 HEAD /metrics -I
check "dashboard" 200 GET /
header Content-Type | grep -q "text/html" || fail "/ is not HTML: $(header Content-Type)"
header Content-Security-Policy | grep -q "default-src 'self'" || fail "/ has no CSP"
for asset in app.js app.css; do
    check "dashboard asset $asset" 200 GET "/assets/$asset"
done
header Content-Type | grep -q "text/css" || fail "app.css's type: $(header Content-Type)"
check "unknown asset" 404 GET /assets/nosuch.js
check "the dashboard is read-only" 405 POST / "${AUTH[@]}"

# ---- 2. Auth ------------------------------------------------------------------------------
check "POST without a token" 401 POST /api/v1/incidents/999999/resolve
header WWW-Authenticate | grep -q '^Bearer realm="asr"' || fail "401 without WWW-Authenticate: $(cat "$WORK/headers")"
check "POST with a wrong token" 401 POST /api/v1/incidents/999999/resolve -H "Authorization: Bearer x$ASR_TEST_TOKEN"
says "a wrong token's error" "not right" "$(j 'd["error"]')"
check "POST with a token of another scheme" 401 POST /api/v1/incidents/999999/resolve -H "Authorization: Basic $ASR_TEST_TOKEN"
check "deploy without a token" 401 POST /api/v1/services/shop/deploy
check "ingest without a token" 401 POST /api/v1/ingest/cloudwatch -d '{}'
check "GET from loopback needs no token" 200 GET /api/v1/audit
check "GET with the token" 200 GET /api/v1/audit "${AUTH[@]}"
check "GET with a wrong token on loopback" 200 GET /api/v1/audit -H "Authorization: Bearer nope"
# DNS rebinding: a loopback read is open only when the request names this machine.
check "a loopback read naming another host" 403 GET /api/v1/status -H "Host: evil.example"
check "a loopback read naming another host, with the token" 200 GET /api/v1/status -H "Host: evil.example" "${AUTH[@]}"
check "a name that only starts like an address" 403 GET /metrics -H "Host: 127.0.0.1.nip.io:$API_PORT"
check "Host: localhost" 200 GET /api/v1/status -H "Host: localhost:$API_PORT"
if grep -q -- "$ASR_TEST_TOKEN" "$WORK/daemon.log" "$CFG"; then fail "the token is in the log or the config"; fi
pass "the token is in neither the daemon's log nor the config"

# ---- 3. Bodies ----------------------------------------------------------------------------
R=/api/v1/incidents/999999/resolve # a body is read before the incident is looked up
check "malformed JSON" 400 POST $R "${AUTH[@]}" -d '{bad'
says "malformed JSON's error" "not valid JSON" "$(j 'd["error"]')"
check "a JSON array" 400 POST $R "${AUTH[@]}" -d '["reason"]'
check "a JSON string" 400 POST $R "${AUTH[@]}" -d '"x"'
check "an unknown field" 400 POST $R "${AUTH[@]}" -d '{"reason": "x", "force": "yes"}'
says "unknown field's error" 'unknown field "force" (expected: reason)' "$(j 'd["error"]')"
check "a number where a string goes" 400 POST $R "${AUTH[@]}" -d '{"reason": 5}'
check "a duplicate key" 400 POST $R "${AUTH[@]}" -d '{"reason": "a", "reason": "b"}'
check "a field of another route" 400 POST /api/v1/services/shop/rollback "${AUTH[@]}" -d '{"ref": "HEAD"}'
# The cap is 4096 bytes: exactly that much is read, one byte more is refused.
python3 -c 'import json; s=json.dumps({"reason": ""}); print(json.dumps({"reason": "x" * (4096 - len(s))}), end="")' >"$WORK/at_cap.json"
expect_eq "a body at the cap" 4096 "$(wc -c <"$WORK/at_cap.json")"
check "a body of exactly the cap" 404 POST $R "${AUTH[@]}" -H 'Content-Type: application/json' --data-binary @"$WORK/at_cap.json"
printf ' ' >>"$WORK/at_cap.json"
check "one byte over the cap (Content-Length)" 413 POST $R "${AUTH[@]}" --data-binary @"$WORK/at_cap.json"
says "413's error" "limit of 4096 bytes" "$(j 'd["error"]')"
head -c 2000000 /dev/zero >"$WORK/big"
check "2 MB (Content-Length)" 413 POST $R "${AUTH[@]}" --data-binary @"$WORK/big"
check "one byte over the cap (chunked)" 413 POST $R "${AUTH[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/at_cap.json"
check "2 MB (chunked)" 413 POST $R "${AUTH[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$WORK/big"
# The cap is checked as the body arrives, before the token: an oversize body is 413 either way.
check "2 MB without a token" 413 POST $R --data-binary @"$WORK/big"
check "a small body without a token" 401 POST $R -d '{"reason": "x"}'
check "the daemon still answers" 200 GET /api/v1/status

# ---- 4. A patch-class fault, remediated end to end, seen live on the event stream -----------
EVENTS_AT=$(db "select coalesce(max(id), 0) from events")
curl -s -N -m $((60 * SLOW)) "$B/api/v1/events" >"$WORK/sse.txt" &
SSE_PID=$!
wait_for "the event stream's first bytes" 10 test -s "$WORK/sse.txt"
expect_eq "the fault route" 500 "$(http POST "http://127.0.0.1:$SHOP_PORT/test-fault/run")"
# Patches need approval here: the plan waits, and the incident's own route approves it.
wait_for "incident 1's plan waits" $((20 * SLOW)) db_is "select state from remediations where incident_id=1" awaiting_approval
check "the patch waits for approval" 200 GET "/api/v1/plans?status=awaiting_approval"
is "the waiting plan" "1 1 patch True" \
    'len(d["plans"]), d["plans"][0]["incident_id"], d["plans"][0]["steps"][0]["action"], d["plans"][0]["diff"].startswith("--- a/src/db.c")'
check "approve incident 1's plan" 200 POST /api/v1/incidents/1/approve "${AUTH[@]}" -d '{"by": "api-test", "reason": "diff read"}'
is "approve's answer" "1 approved" 'd["incident"], d["decision"]'
wait_for "incident 1 resolved" $((40 * SLOW)) db_is "select status from incidents where id=1" resolved
check "the remediated incident" 200 GET /api/v1/incidents/1
is "incident 1" "FAULT_SQL_INJECTION_TEST resolved shop succeeded" \
    'd["signature"], d["status"], d["service"], d["remediation"]["state"]'
python3 - "$WORK/body" <<'PY' || fail "incident 1's detail: $(head -c 2000 "$WORK/body")"
import json, sys
d = json.load(open(sys.argv[1]))
names = ["first_seen", "detected", "planned", "committed", "built", "tested", "deployed", "verified", "resolved"]
st = d["stages"]
assert list(st) == names, list(st)
assert all(isinstance(st[n], int) for n in names), st
assert all(st[a] <= st[b] for a, b in zip(names, names[1:])), st
assert st["first_seen"] < st["resolved"], st
assert d["mttr_ms"] == st["resolved"] - st["first_seen"] == d["remediation"]["mttr_ms"], d["mttr_ms"]
assert d["detection_ms"] == st["detected"] - st["first_seen"]
p = d["patch"]
assert p["diff"].startswith("--- a/src/") and "\n+" in p["diff"] and "\n-" in p["diff"], p
assert len(p["commit"]) == 40 and p["branch"] == "asr/incident-1", p
for part in ("build", "test"):
    assert d[part]["status"] == 0 and d[part]["ms"] > 0 and d[part]["output"], (part, d[part])
v = d["verification"]
assert v["ok"] is True and v["at"] == st["verified"] and "fault gone" in v["detail"], v
assert d["plan"]["id"] == d["remediation"]["plan"] and d["plan"]["steps"], d["plan"]
assert d["remediation"]["journal"] and all(r["key"].startswith("rem:") for r in d["remediation"]["journal"])
assert d["timeline"] and d["line"], d
print(f"stages ok; mttr {d['mttr_ms']} ms, detection {d['detection_ms']} ms, build {d['build']['ms']} ms, test {d['test']['ms']} ms")
PY
pass "incident 1: all nine stages in order, the diff, build and test output, the verification"
PATCH_COMMIT=$(j 'd["patch"]["commit"]')
expect_eq "approved by" "api-test: diff read" "$(db "select approved_by from remediations where incident_id=1")"
PLAN1=$(j 'd["plan"]["id"]')
check "incident 1's plan" 200 GET "/api/v1/plans/$PLAN1"
is "plan 1" "1 verified succeeded True" 'd["incident_id"], d["status"], d["remediation_state"], d["diff"].startswith("--- a/")'
check "the service serves the fix" 200 GET /api/v1/services/shop
is "shop's commit is the patch's" "$PATCH_COMMIT" 'd["commit"]'
check "resolving a resolved incident" 409 POST /api/v1/incidents/1/resolve "${AUTH[@]}"

# ---- 5. Approval: crashes wait for an operator ---------------------------------------------
rem() { db "select $2 from remediations where incident_id=$1 order by id desc limit 1"; }
crash() { # N: crash N of the shop; prints its incident's id once its remediation is decided
    http POST "http://127.0.0.1:$SHOP_PORT/test-fault/crash" >/dev/null
    wait_for "crash incident $1" $((10 * SLOW)) db_is "select count(*) from incidents where kind='exit'" "$1"
    local id
    id=$(db "select max(id) from incidents where kind='exit'")
    wait_for "remediation of incident $id" $((10 * SLOW)) db_is "select count(*) from remediations where incident_id=$id" 1
    wait_for "shop healthy again" $((20 * SLOW)) healthy "$SHOP_PORT"
    echo "$id"
}
# a: approved through its plan.
a=$(crash 1)
check "plans awaiting approval" 200 GET "/api/v1/plans?status=awaiting_approval"
is "the crash's plan waits" "1 $a awaiting_approval True" \
    'len(d["plans"]), d["plans"][0]["incident_id"], d["plans"][0]["remediation_state"], d["plans"][0]["requires_approval"]'
PA=$(j 'd["plans"][0]["id"]')
check "incident waiting" 200 GET "/api/v1/incidents/$a"
is "incident $a: awaiting approval, not yet resolved" "awaiting_approval None None" \
    'd["remediation"]["state"], d["stages"]["resolved"], d["mttr_ms"]'
check "approve a plan without the token" 401 POST "/api/v1/plans/$PA/approve" -d '{"by": "mallory"}'
check "approve a plan" 200 POST "/api/v1/plans/$PA/approve" "${AUTH[@]}" -d '{"by": "api-test"}'
is "approve's answer" "$a $PA approved" 'd["incident"], d["plan"], d["decision"]'
wait_for "incident $a resolved" $((30 * SLOW)) db_is "select status from incidents where id=$a" resolved
expect_eq "approved by" "api-test" "$(rem "$a" approved_by)"
expect_eq "remediation of $a" succeeded "$(rem "$a" state)"
check "approve it again" 409 POST "/api/v1/plans/$PA/approve" "${AUTH[@]}"
check "reject it now" 409 POST "/api/v1/plans/$PA/reject" "${AUTH[@]}"
check "approve an unknown plan" 404 POST /api/v1/plans/999999/approve "${AUTH[@]}"
check "approve an unknown incident" 404 POST /api/v1/incidents/999999/approve "${AUTH[@]}"
check "nothing awaits approval" 200 GET "/api/v1/plans?status=awaiting_approval"
is "no plan waits" 0 'len(d["plans"])'

# b: rejected through its plan, then resolved by hand (an open incident would absorb the next crash).
sleep 0.6 # the detection cooldown, so the next crash opens an incident of its own
b=$(crash 2)
PB=$(db "select plan_id from remediations where incident_id=$b")
check "reject a plan" 200 POST "/api/v1/plans/$PB/reject" "${AUTH[@]}" -d '{"by": "api-test", "reason": "not now"}'
is "reject's answer" "$b $PB rejected" 'd["incident"], d["plan"], d["decision"]'
expect_eq "remediation of $b" rejected "$(rem "$b" state)"
says "the reason is kept" "not now" "$(rem "$b" reason)"
check "a rejected incident stays open" 200 GET "/api/v1/incidents/$b"
is "incident $b" "open rejected" 'd["status"], d["remediation"]["state"]'
check "resolve it by hand" 200 POST "/api/v1/incidents/$b/resolve" "${AUTH[@]}" -d '{"reason": "looked at it"}'
is "resolve's answer" "$b resolved" 'd["incident"], d["status"]'
check "resolved by hand has no MTTR" 200 GET "/api/v1/incidents/$b"
is "incident $b" "resolved None" 'd["status"], d["mttr_ms"]'

# c: rejected through its incident.
sleep 0.6
c=$(crash 3)
check "reject an incident's plan" 200 POST "/api/v1/incidents/$c/reject" "${AUTH[@]}" -d '{"reason": "later"}'
is "reject's answer" "$c rejected" 'd["incident"], d["decision"]'
expect_eq "remediation of $c" rejected "$(rem "$c" state)"
check "reject it again" 409 POST "/api/v1/incidents/$c/reject" "${AUTH[@]}"
check "resolve it" 200 POST "/api/v1/incidents/$c/resolve" "${AUTH[@]}"

# d: approved through its incident, by the CLI over the control socket (the same route).
sleep 0.6
d=$(crash 4)
"$ASR_BIN" approve "$d" --state-dir "$STATE" >"$WORK/cli.txt" 2>&1 || fail "asr approve: $(cat "$WORK/cli.txt")"
wait_for "incident $d resolved" $((30 * SLOW)) db_is "select status from incidents where id=$d" resolved
expect_eq "remediation of $d" succeeded "$(rem "$d" state)"
"$ASR_BIN" approve "$d" --state-dir "$STATE" >"$WORK/cli.txt" 2>&1 && fail "asr approve accepted a second approval"
grep -q "not awaiting approval\|no plan awaiting\|awaiting" "$WORK/cli.txt" || fail "asr approve's refusal: $(cat "$WORK/cli.txt")"
pass "asr approve: approved once, refused again ($(head -n 1 "$WORK/cli.txt"))"

# ---- 6. Deploy and rollback over HTTP ------------------------------------------------------
# The shop serves the patch; the commit it started on is built already, so deploying it back
# and rolling back are pure cutovers (another build would be another run of the demo's own
# timing-sensitive tests).
check "before the deploy" 200 GET /api/v1/services/shop
C0=$(j 'd["commit"]')
S0=$(j 'd["active_slot"]')
NEW=$SHOP_COMMIT0
[ "$C0" != "$NEW" ] || fail "the shop should serve the patch, not the commit it started on"
check "deploy an unknown service" 404 POST /api/v1/services/nosuch/deploy "${AUTH[@]}"
check "deploy a ref that is not there" 409 POST /api/v1/services/shop/deploy "${AUTH[@]}" -d '{"ref": "no-such-ref"}'
check "deploy" 200 POST /api/v1/services/shop/deploy "${AUTH[@]}" -d "{\"ref\": \"$NEW\"}"
is "deploy's answer" "shop $NEW" 'd["service"], d["result"]["commit"]'
check "after the deploy" 200 GET /api/v1/services/shop
is "shop on the new commit, the other slot" "$NEW True" "d['commit'], d['active_slot'] != '$S0'"
check "rollback" 200 POST /api/v1/services/shop/rollback "${AUTH[@]}"
is "rollback's answer" "shop $C0" 'd["service"], d["result"]["commit"]'
check "after the rollback" 200 GET /api/v1/services/shop
is "shop back on the commit before, the slot before" "$C0 $S0" 'd["commit"], d["active_slot"]'
"$ASR_BIN" deploy shop --state-dir "$STATE" >"$WORK/cli.txt" 2>&1 || fail "asr deploy: $(cat "$WORK/cli.txt")"
grep -q "^deploy shop: ${NEW:0:12} serving from slot" "$WORK/cli.txt" || fail "asr deploy's answer: $(cat "$WORK/cli.txt")"
pass "asr deploy: $(tail -n 1 "$WORK/cli.txt")"

# ---- 7. Incidents: filters and paging -------------------------------------------------------
NINC=$(db "select count(*) from incidents")
check "all incidents" 200 GET "/api/v1/incidents?limit=500"
is "every incident, newest first" "$(db "select group_concat(id, ' ') from (select id from incidents order by id desc)")" \
    '" ".join(str(i["id"]) for i in d["incidents"])'
is "the last page has no next" None 'd["next"]'
is "a summary's fields" "True True" \
    'all("stages" in i and "mttr_ms" in i and "detection_ms" in i and "remediation" in i for i in d["incidents"]), all("context_before" not in i for i in d["incidents"])'
check "state=open" 200 GET "/api/v1/incidents?state=open"
is "open incidents" "$(db "select count(*) from incidents where status='open'")" 'len(d["incidents"])'
check "state=resolved" 200 GET "/api/v1/incidents?state=resolved"
is "resolved incidents" "$(db "select count(*) from incidents where status='resolved'")" 'len(d["incidents"])'
check "service=shop" 200 GET "/api/v1/incidents?service=shop"
is "shop's incidents" "$NINC" 'len(d["incidents"])'
check "service=upstream" 200 GET "/api/v1/incidents?service=upstream"
is "upstream's incidents" "$(db "select count(*) from incidents where service='upstream'")" 'len(d["incidents"])'
check "signature filter" 200 GET "/api/v1/incidents?signature=FAULT_SQL_INJECTION_TEST&service=shop"
is "the SQL fault's incident" 1 '" ".join(str(i["id"]) for i in d["incidents"])'
# Paging: two at a time, following "next" to the end, gives the same list.
ids=""
next="/api/v1/incidents?limit=2"
pages=0
while [ "$next" != None ]; do
    check "page $((pages + 1))" 200 GET "$next"
    page=$(j '" ".join(str(i["id"]) for i in d["incidents"])')
    [ -z "$page" ] || ids="${ids:+$ids }$page" # a full last page is followed by an empty one
    next=$(j 'd["next"]')
    pages=$((pages + 1))
    [ "$pages" -le "$NINC" ] || fail "paging does not end"
done
expect_eq "paged ids" "$(db "select group_concat(id, ' ') from (select id from incidents order by id desc)")" "$ids"
# With a filter, "next" keeps it.
check "filtered page" 200 GET "/api/v1/incidents?state=resolved&service=shop&limit=1"
says "next should keep the filter" "state=resolved" "$(j 'd["next"]')"
check "before=ID" 200 GET "/api/v1/incidents?before=$a"
is "before $a" "$(db "select group_concat(id, ' ') from (select id from incidents where id < $a order by id desc)")" \
    '" ".join(str(i["id"]) for i in d["incidents"])'
for q in limit=0 limit=501 limit=abc limit= before=0 before=x state=closed; do
    check "bad query $q" 400 GET "/api/v1/incidents?$q"
done
check "plans: bad limit" 400 GET "/api/v1/plans?limit=0"
check "plans, all" 200 GET "/api/v1/plans"
is "every plan, newest first" "$(db "select group_concat(id, ' ') from (select id from plans order by id desc)")" \
    '" ".join(str(p["id"]) for p in d["plans"])'

# ---- 8. Audit and metrics -----------------------------------------------------------------
check "audit" 200 GET /api/v1/audit
is "audit verifies" "True None" 'd["ok"], d.get("problem")'
is "audit rows" "$(db "select count(*) from audit")" 'd["rows"]'
check "audit with rows" 200 GET "/api/v1/audit?rows=3"
is "three recent rows" 3 'len(d["recent"])'
check "audit: bad rows" 400 GET "/api/v1/audit?rows=501"
"$ASR_BIN" audit verify --state-dir "$STATE" >/dev/null || fail "asr audit verify"

check "metrics" 200 GET /metrics
header Content-Type | grep -q "text/plain; version=0.0.4" || fail "/metrics' type: $(header Content-Type)"
cp "$WORK/body" "$WORK/metrics.txt"
if command -v promtool >/dev/null; then
    promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.txt" 2>&1 || fail "promtool: $(cat "$WORK/promtool.txt")"
    pass "promtool check metrics"
else
    log "promtool is not installed: skipped its check"
fi
# docs/metrics.md: asr_mttr_seconds' count and sum are the store's recoveries, exactly.
MTTR=$(db "SELECT count(*), coalesce(sum(i.resolved_at - i.first_seen), 0) FROM incidents i
    WHERE i.status = 'resolved' AND (SELECT state FROM remediations r WHERE r.incident_id = i.id
    ORDER BY r.id DESC LIMIT 1) = 'succeeded'")
read -r MC MS <<<"${MTTR//|/ }"
expect_eq "remediated incidents" 3 "$MC"
expect_eq "asr_mttr_seconds_count" "$MC" "$(awk '/^asr_mttr_seconds_count/ {print $2}' "$WORK/metrics.txt")"
expect_eq "asr_mttr_seconds_sum" "$(awk -v ms="$MS" 'BEGIN {printf "%.3f", ms / 1000}')" \
    "$(awk '/^asr_mttr_seconds_sum/ {printf "%.3f", $2}' "$WORK/metrics.txt")"

# ---- 9. The event stream ------------------------------------------------------------------
kill "$SSE_PID" 2>/dev/null || true
wait "$SSE_PID" 2>/dev/null || true
head -n 1 "$WORK/sse.txt" | grep -q "^retry: 1000" || fail "the stream should open with retry: $(head -c 200 "$WORK/sse.txt")"
python3 - "$WORK/sse.txt" "$EVENTS_AT" "$a" <<'PY' || fail "the event stream: $(head -c 3000 "$WORK/sse.txt")"
import json, sys
text, start, a = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
msgs = [m for m in text.split("\n\n") if m.startswith("id: ")]
ids, kinds = [], {}
for m in msgs:
    lines = m.split("\n")
    assert len(lines) == 2 and lines[1].startswith("data: "), m
    e = json.loads(lines[1][6:])
    assert set(e) == {"id", "at", "service", "actor", "kind", "incident", "detail"}, e
    assert int(lines[0][4:]) == e["id"]
    ids.append(e["id"])
    kinds.setdefault(e["kind"], set()).add(e["incident"])
# It began at the store's head when it connected (nothing older), and missed nothing after.
assert ids[0] > start, (ids[0], start)
assert ids == list(range(ids[0], ids[0] + len(ids))), "ids not consecutive"
for k in ("incident.opened", "plan.made", "remediation.decided", "action.intent", "action.result",
          "plan.outcome", "incident.resolved", "deploy.started", "build.passed", "test.passed",
          "slot.started", "deploy.switched"):
    assert k in kinds, (k, sorted(kinds))
assert {1, a} <= kinds["incident.opened"] and {1, a} <= kinds["incident.resolved"], kinds
print(f"{len(ids)} events, {len(kinds)} kinds")
PY
pass "the event stream carried every event in order, live"
# Resuming: after Last-Event-ID (or ?after=) the stream starts with the next event.
MID=$(db "select max(id) - 5 from events")
curl -s -N -m 2 -H "Last-Event-ID: $MID" "$B/api/v1/events" >"$WORK/sse2.txt" || true
expect_eq "resumed after Last-Event-ID $MID" "id: $((MID + 1))" "$(grep -m 1 '^id:' "$WORK/sse2.txt")"
curl -s -N -m 2 "$B/api/v1/events?after=$MID" >"$WORK/sse3.txt" || true
expect_eq "resumed after ?after=$MID" "id: $((MID + 1))" "$(grep -m 1 '^id:' "$WORK/sse3.txt")"
check "a bad Last-Event-ID" 400 GET /api/v1/events -H "Last-Event-ID: x"
check "a bad after" 400 GET "/api/v1/events?after=-1"

# ---- 10. CloudWatch ingest ----------------------------------------------------------------
# envelope KIND MESSAGE: a subscription delivery as AWS sends it to a Lambda (gzip, base64).
envelope() {
    python3 - "$1" "$2" <<'PY'
import base64, gzip, json, sys, time
kind, msg = sys.argv[1], sys.argv[2]
inner = {"messageType": kind, "owner": "123456789012", "logGroup": "/aws/ecs/shop",
         "logStream": "shop/web/1", "subscriptionFilters": ["asr"],
         "logEvents": [{"id": "1", "timestamp": int(time.time() * 1000), "message": msg}]}
if kind == "CONTROL_MESSAGE":
    inner["logGroup"], inner["logStream"] = "testLogGroup", "testLogStream"
data = base64.b64encode(gzip.compress(json.dumps(inner).encode())).decode()
print(json.dumps({"awslogs": {"data": data}}))
PY
}
I=/api/v1/ingest/cloudwatch
check "ingest garbage" 400 POST $I "${AUTH[@]}" -d 'not a delivery'
check "ingest a JSON object that is not one" 400 POST $I "${AUTH[@]}" -d '{"awslogs": {"data": "!!"}}'
envelope CONTROL_MESSAGE "CWL CONTROL MESSAGE: Checking health of destination FAULT_DB_TIMEOUT route=/x reason=y" >"$WORK/control.json"
check "a CONTROL_MESSAGE" 200 POST $I "${AUTH[@]}" --data-binary @"$WORK/control.json"
is "control: nothing accepted" "0 True" 'd["accepted"], d["control"]'
envelope DATA_MESSAGE "$(date -u +%FT%TZ) WARN FAULT_DB_TIMEOUT route=/checkout reason=pool_exhausted wait_ms=5000" >"$WORK/data.json"
check "ingest for an unknown service" 404 POST "$I?service=nosuch" "${AUTH[@]}" --data-binary @"$WORK/data.json"
N0=$(db "select count(*) from incidents")
check "ingest a fault line" 200 POST "$I?service=shop" "${AUTH[@]}" --data-binary @"$WORK/data.json"
is "ingest's answer" "1 1 shop cloudwatch:/aws/ecs/shop/shop/web/1" 'd["accepted"], d["lines"], d["service"], d["source"]'
wait_for "the ingested fault's incident" $((10 * SLOW)) db_is "select count(*) from incidents where signature='FAULT_DB_TIMEOUT'" 1
expect_eq "one incident more" $((N0 + 1)) "$(db "select count(*) from incidents")"
check "the ingested incident" 200 GET "/api/v1/incidents?signature=FAULT_DB_TIMEOUT"
is "its source" "shop cloudwatch:/aws/ecs/shop/shop/web/1" 'd["incidents"][0]["service"], d["incidents"][0]["source"]'

# ---- 11. The CLI over the control socket, and no token configured: 403 ---------------------
"$ASR_BIN" status --state-dir "$STATE" >"$WORK/cli.txt" 2>&1 || fail "asr status: $(cat "$WORK/cli.txt")"
grep -q "^daemon: running (pid $DAEMON_PID)" "$WORK/cli.txt" || fail "asr status: $(cat "$WORK/cli.txt")"
grep -q "^shop .*healthy" "$WORK/cli.txt" || fail "asr status: $(cat "$WORK/cli.txt")"
pass "asr status"
# The control socket's form of a call: one JSON line {method, path, query?, body?} in, one line
# {ok, status, body} out (the CLI's commands are such calls).
python3 - "$STATE/asr.sock" "$WORK/socket.txt" <<'PY' || fail "the control socket: $(cat "$WORK/socket.txt")"
import json, socket, sys
def call(req):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    s.sendall((json.dumps(req) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data.splitlines()[-1])
out = open(sys.argv[2], "w")
for req in ({"method": "GET", "path": "/api/v1/incidents", "query": {"limit": "1", "state": "resolved"}},
            {"method": "GET", "path": "/api/v1/incidents/999999"},
            {"method": "POST", "path": "/api/v1/incidents/999999/resolve", "body": {"reason": "x"}}):
    r = call(req)
    print(json.dumps(req), json.dumps(r), file=out)
    assert set(r) == {"ok", "status", "body"}, r
    if req["path"] == "/api/v1/incidents":
        assert r["ok"] is True and r["status"] == 200 and len(r["body"]["incidents"]) == 1, r
    else:
        assert r["ok"] is False and r["status"] == 404 and r["body"]["status"] == 404, r
PY
pass "the control socket answers the same routes, trusted, with {ok, status, body}"
[ -z "${API_EXAMPLES:-}" ] || cp "$WORK/socket.txt" "$WORK/sse.txt" "$API_EXAMPLES/"
sed -i '/^  token_env: ASR_TEST_TOKEN$/d' "$CFG"
n=$(grep -c "config reloaded" "$WORK/daemon.log" || true)
kill -HUP "$DAEMON_PID"
wait_for "config reload" $((10 * SLOW)) sh -c "[ \$(grep -c 'config reloaded' '$WORK/daemon.log') -gt $n ]"
check "no token configured: POST refused" 403 POST "/api/v1/incidents/$c/resolve" "${AUTH[@]}"
says "403's error" "no API token is configured" "$(j 'd["error"]')"
check "no token configured: deploy refused" 403 POST /api/v1/services/shop/deploy
check "no token configured: GET from loopback still open" 200 GET /api/v1/services/shop
"$ASR_BIN" incident resolve "$(db "select max(id) from incidents where status='open'")" --state-dir "$STATE" \
    >"$WORK/cli.txt" 2>&1 || fail "asr incident resolve: $(cat "$WORK/cli.txt")"
pass "the CLI still acts over the control socket"
if grep -q -- "$ASR_TEST_TOKEN" "$WORK/daemon.log" "$STATE"/*.log 2>/dev/null; then fail "the token was logged"; fi
sqlite3 "$STATE/asr.db" .dump 2>/dev/null | grep -q -- "$ASR_TEST_TOKEN" && fail "the token is in the store"

# ---- 12. Reads from another machine need the token -------------------------------------------
# A second, small daemon (one service that builds nothing) listens on this machine's first
# non-loopback IPv4 address, so requests to it come from that address, not from loopback.
OTHER_IP=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -m 1 -E '^[0-9]+(\.[0-9]+){3}$' || true)
if [ -z "$OTHER_IP" ]; then
    log "no non-loopback IPv4 address here: reads from another machine are not checked"
else
    P2=$(free_port)
    cat >"$WORK/other.yaml" <<YAML
services:
  - name: static
    repo: $REPO/upstream
    start: [python3, -m, http.server, "\${PORT}", --bind, 127.0.0.1]
    listen: 127.0.0.1:$(free_port)
    health: {path: /, interval_ms: 200, timeout_ms: 1000, rise: 1, fall: 3}
api: {listen: "$OTHER_IP:$P2", token_env: ASR_TEST_TOKEN}
YAML
    "$ASR_BIN" run -c "$WORK/other.yaml" --state-dir "$WORK/state2" >"$WORK/other.log" 2>&1 &
    OTHER_PID=$!
    B_LOOPBACK=$B
    B=http://$OTHER_IP:$P2
    wait_for "the second daemon's API" $((10 * SLOW)) curl -s -o /dev/null -m 2 "$B/"
    check "a read from another machine" 401 GET /api/v1/status
    [ -n "$(header WWW-Authenticate)" ] || fail "401 without WWW-Authenticate"
    check "a read from another machine, with a wrong token" 401 GET /api/v1/services -H "Authorization: Bearer nope"
    check "metrics from another machine" 401 GET /metrics
    check "the stream from another machine" 401 GET /api/v1/events
    check "a read from another machine, with the token" 200 GET /api/v1/status "${AUTH[@]}"
    is "the second daemon" "static" '" ".join(s["name"] for s in d["services"])'
    check "the dashboard from another machine (no data in it)" 200 GET /
    sed -i 's/, token_env: ASR_TEST_TOKEN}$/}/' "$WORK/other.yaml"
    n=$(grep -c "config reloaded" "$WORK/other.log" || true)
    kill -HUP "$OTHER_PID"
    wait_for "the second daemon's reload" $((10 * SLOW)) sh -c "[ \$(grep -c 'config reloaded' '$WORK/other.log') -gt $n ]"
    check "a read from another machine, no token configured" 403 GET /api/v1/status "${AUTH[@]}"
    says "403's error" "none is configured" "$(j 'd["error"]')"
    kill -TERM "$OTHER_PID"
    wait "$OTHER_PID" || fail "the second daemon did not stop cleanly: $(tail -n 20 "$WORK/other.log")"
    B=$B_LOOPBACK
fi

stop_daemon || fail "the daemon did not stop cleanly: $(tail -n 20 "$WORK/daemon.log")"
QPID=$QPY_PID
eval "exec ${QPY[1]}>&-" # the query helper ends at the end of its input
wait "$QPID" || true
pass "the HTTP API"
