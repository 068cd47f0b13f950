# `asr detect --cloudwatch`: CloudWatch Logs subscription payloads, built exactly as AWS builds
# them (inner JSON -> gzip -> base64 -> {"awslogs":{"data":...}}) by cw_payloads.py, give the
# same incidents as the same lines read from a file; a CONTROL_MESSAGE is ignored; every bad
# payload (truncated, not gzip, not base64, a gzip bomb, a huge envelope, malformed or mistyped
# JSON, random bytes) gives one clear error line naming it and no crash, while the good payloads
# of the same input are still processed; a raw gzip file works; without --service the service is
# the one named by the log group. No daemon: `asr detect` runs over files with demo/asr.yaml.
source "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d /tmp/asr-it.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CFG=$ASR_SOURCE_DIR/demo/asr.yaml
PAYLOADS="python3 $ASR_SOURCE_DIR/tests/integration/cw_payloads.py"
$PAYLOADS make "$WORK" || fail "cw_payloads.py make failed"

# detect NAME ARGS...: runs asr detect with the demo config; stdout to $WORK/NAME.jsonl, stderr to
# $WORK/NAME.err; prints the exit status. A status of 128 or more is a crash (a signal).
detect() {
    local name=$1 rc=0
    shift
    "$ASR_BIN" detect -c "$CFG" "$@" >"$WORK/$name.jsonl" 2>"$WORK/$name.err" || rc=$?
    [ "$rc" -lt 128 ] || fail "asr detect $* crashed (status $rc): $(head -c 2000 "$WORK/$name.err")"
    echo "$rc"
}
same_incidents() { # what A B
    $PAYLOADS compare "$WORK/$2.jsonl" "$WORK/$3.jsonl" >"$WORK/cmp.txt" 2>&1 ||
        fail "$1: incidents differ: $(cat "$WORK/cmp.txt")"
    pass "$1: $(cat "$WORK/cmp.txt")"
}
no_stderr() { # name
    [ ! -s "$WORK/$1.err" ] || fail "$1: unexpected stderr: $(head -c 2000 "$WORK/$1.err")"
}

# The file is the reference: it must hold every kind of incident the payloads are compared on.
expect_eq "detect over the file" 0 "$(detect file --service shop "$WORK/app.log")"
no_stderr file
kinds=$(python3 -c '
import json, sys
incs = [json.loads(l) for l in open(sys.argv[1])]
sigs = sorted(set(i["signature"] for i in incs))
print(len(incs), ",".join(sigs), sum(i["verifications"] for i in incs),
      max(i["count"] for i in incs))' "$WORK/file.jsonl")
expect_eq "incidents, signatures, verifications, largest count from the file" \
    "11 FAULT_DB_TIMEOUT,FAULT_EXTERNAL_API_LATENCY,FAULT_SQL_INJECTION_TEST,generic:error,generic:fatal,generic:oom 1 3" \
    "$kinds"

# Four DATA_MESSAGE deliveries over two streams, a CONTROL_MESSAGE between them.
expect_eq "detect over the payloads" 0 "$(detect cw --service shop --cloudwatch "$WORK/payloads.txt")"
no_stderr cw
same_incidents "payloads vs file" file cw
grep -q '"source":"cloudwatch:/aws/ecs/shop/ecs/shop/' "$WORK/cw.jsonl" ||
    fail "no incident names its CloudWatch source: $(head -c 600 "$WORK/cw.jsonl")"
! grep -q 'route=/control' "$WORK/cw.jsonl" || fail "the CONTROL_MESSAGE was processed"
pass "the CONTROL_MESSAGE was ignored"

# Only a CONTROL_MESSAGE: nothing to detect, not an error.
sed -n 3p "$WORK/payloads.txt" >"$WORK/control.txt"
grep -q '"awslogs"' "$WORK/control.txt" || fail "payloads.txt line 3 is not the control payload"
expect_eq "detect over a CONTROL_MESSAGE alone" 0 "$(detect control --service shop --cloudwatch "$WORK/control.txt")"
no_stderr control
expect_eq "incidents from a CONTROL_MESSAGE alone" 0 "$(wc -l <"$WORK/control.jsonl")"

# All events in one delivery as raw gzip bytes (not base64, no envelope).
expect_eq "detect over a raw gzip file" 0 "$(detect raw --service shop --cloudwatch "$WORK/raw.gz")"
no_stderr raw
same_incidents "raw gzip vs file" file raw

# Bad payloads among the good ones: status 1, one error line per bad payload, naming it, and the
# good payloads still give every incident of the file.
expect_eq "detect over good and bad payloads" 1 "$(detect bad --service shop --cloudwatch "$WORK/bad.txt")"
while read -r n name; do
    got=$(grep -c "^asr: detect: payload $n: cloudwatch: " "$WORK/bad.err" || true)
    [ "$got" = 1 ] || fail "payload $n ($name): expected one error line, got $got: $(cat "$WORK/bad.err")"
    pass "payload $n ($name): $(grep "^asr: detect: payload $n: " "$WORK/bad.err")"
done <"$WORK/bad.txt.expect"
expect_eq "stderr lines for the bad payloads" "$(wc -l <"$WORK/bad.txt.expect")" "$(wc -l <"$WORK/bad.err")"
same_incidents "good payloads among bad ones vs file" file bad

# Without --service, a config with several services: the log group's last part names it.
expect_eq "detect by log group" 1 "$(detect groups --cloudwatch "$WORK/groups.txt")"
expect_eq "stderr of detect by log group" \
    "asr: detect: payload 3: log group '/aws/ecs/nosuch' names no service of $CFG (use --service NAME)" \
    "$(cat "$WORK/groups.err")"
python3 - "$WORK/groups.jsonl" "$WORK/file.jsonl" <<'PY' || fail "service selection by log group"
import json, sys
incs = [json.loads(l) for l in open(sys.argv[1])]
ref = [json.loads(l) for l in open(sys.argv[2])]
shop = [i for i in incs if i["service"] == "shop"]
up = [i for i in incs if i["service"] == "upstream"]
assert len(shop) + len(up) == len(incs), [i["service"] for i in incs]
# shop: its signatures applied, the same incidents as the file.
key = lambda i: (i["fingerprint"], i["count"], i["signature"])
assert [key(i) for i in shop] == [key(i) for i in ref], (shop, ref)
assert all(i["source"] == "cloudwatch:/aws/ecs/shop/ecs/shop/a1b2" for i in shop)
# upstream has no signatures: only generic incidents, under its own name.
assert up and all(i["kind"] == "generic" and i["fingerprint"].startswith("upstream:template:")
                  for i in up), up
assert any("CRITICAL FAULT_SQL_INJECTION_TEST" in i["line"] for i in up), up
print(f"shop {len(shop)} incidents (as from the file), upstream {len(up)} generic incidents")
PY
pass "service selection by log group"
