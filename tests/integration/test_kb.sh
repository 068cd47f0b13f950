# The knowledge base from the command line: the demo playbooks are indexed, a search ranks the
# playbook an operator would pick first and says why, and a broken playbook is refused with its
# FILE:LINE error while the index keeps what it had.
source "$(dirname "$0")/lib.sh"
WORK=$(mktemp -d /tmp/asr-it.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
STATE=$WORK/state
kb() { "$ASR_BIN" kb "$@" --state-dir "$STATE"; }

kb add "$ASR_SOURCE_DIR/demo/playbooks" >"$WORK/add.out" || fail "kb add: $(cat "$WORK/add.out")"
n=$(grep -c '^indexed playbook' "$WORK/add.out")
[ "$n" -ge 12 ] || fail "indexed $n playbooks, expected at least 12"
expect_eq "kb list" "$n" "$(kb list --json | wc -l)"

top() { kb search "$1" --json --limit 1 | python3 -c 'import json,sys; h=json.loads(sys.stdin.readline()); print(h["ref"])'; }
expect_eq "db timeout line" db-statement-limit-too-short "$(top 'FAULT_DB_TIMEOUT route=/orders reason=statement_timeout')"
expect_eq "oom line" out-of-memory "$(top 'kernel: Out of memory: Killed process 1234 (shop)')"
why=$(kb search "statement_timeout" --json --limit 1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["why"])')
case $why in *bm25*) pass "why: $why" ;; *) fail "no reason given: $why" ;; esac

# A broken playbook: refused with FILE:LINE, nothing indexed from it, the rest still there.
mkdir -p "$WORK/bad"
printf 'id: broken\ntitle: Broken\nmatch: {text: x}\nsymptoms: x\nsteps:\n  - {action: reboot}\nverify: {request: {method: GET, path: /health}, expect: {status: 200}}\n' >"$WORK/bad/broken.yaml"
if kb add "$WORK/bad/broken.yaml" 2>"$WORK/bad.err"; then fail "a playbook with action reboot was accepted"; fi
grep -q "broken.yaml:6" "$WORK/bad.err" || fail "error does not name FILE:LINE: $(cat "$WORK/bad.err")"
grep -q "not on the whitelist" "$WORK/bad.err" || fail "error does not say why: $(cat "$WORK/bad.err")"
expect_eq "index unchanged" "$n" "$(kb list --json | wc -l)"
pass "knowledge base CLI"
