# What leaves the host during a remediation, through the running daemon (issue 5): the demo shop
# with a webhook (tests/webhook_server.py), a remote for its fix branches (a real bare repository)
# and a GitHub pull request (tests/github_server.py). A FAULT_DB_TIMEOUT line carrying planted
# secrets is written to the shop's log file, next to context lines carrying more. asr fixes the
# fault with its playbook; then:
#   - the fix commit has the configured author, and its branch is pushed to the remote;
#   - the webhook got one "remediated" event with an Idempotency-Key;
#   - one pull request was opened for asr/incident-<id>;
#   - no planted secret is in any commit (message or tree) of any branch, any branch name, the
#     pushed repository, any webhook request or any request to the GitHub server; the GitHub
#     token is in no body;
#   - a plan's notify step sends its message (once), then the plan goes on (here: escalates, which
#     is announced too).
source "$(dirname "$0")/lib.sh"
setup
mkdir -p "$STATE"
# The demo's playbook for FAULT_DB_TIMEOUT, and one whose plan for FAULT_SQL_INJECTION_TEST
# is a notify step and then an escalation.
mkdir -p "$WORK/kb"
cp "$ASR_SOURCE_DIR/demo/playbooks/db-statement-limit-too-short.yaml" "$WORK/kb/"
cat >"$WORK/kb/tell-the-team.yaml" <<'EOF'
id: tell-the-team
title: Malformed SQL in the orders report (tell the team, then hand it over)
version: 1
match:
  signature: FAULT_SQL_INJECTION_TEST
  service: shop
symptoms: |
  The orders report fails with a syntax error.
steps:
  - action: notify
    message: "the orders report query is malformed; a person is needed"
  - action: escalate
    reason: "a query change needs review"
verify:
  request: {method: POST, path: /test-fault/run}
  expect: {status: 200}
EOF
"$ASR_BIN" kb add "$WORK/kb" --state-dir "$STATE" >/dev/null || fail "kb add"

# The stand-ins, each on a port of its own choosing, run from a copy in $WORK so that the
# teardown (pkill -f "$WORK/") ends them.
start_server() { # name script env...
    local name=$1 script=$2
    shift 2
    cp "$ASR_SOURCE_DIR/tests/$script" "$WORK/$script"
    env "$@" python3 "$WORK/$script" >"$WORK/$name.out" 2>&1 &
    for _ in $(seq 1 100); do
        grep -q '^listening ' "$WORK/$name.out" 2>/dev/null && break
        sleep 0.05
    done
    awk '/^listening /{print $2; exit}' "$WORK/$name.out"
}
export ASR_TEST_GH_TOKEN=ghp_TestTokenForTheLocalGithubServer0123456789
WH_PORT=$(start_server webhook webhook_server.py WEBHOOK_RECORD="$WORK/webhook.jsonl")
GH_PORT=$(start_server github github_server.py GITHUB_RECORD="$WORK/github.jsonl" \
    GITHUB_TEST_TOKEN="$ASR_TEST_GH_TOKEN" GITHUB_TEST_REPO=acme/shop)
[ -n "$WH_PORT" ] && [ -n "$GH_PORT" ] || fail "the stand-in servers did not start"
git init -q --bare "$WORK/remote.git"
: >"$WORK/shop-extra.log"

sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 300, healthy_timeout_ms: 5000,/' "$CFG"
extra="    log_files: [$WORK/shop-extra.log]
    git: {author_name: Fix Bot, author_email: fixbot@example.test, remote: $WORK/remote.git, token_env: ASR_TEST_GH_TOKEN, github: {api_url: \"http://127.0.0.1:$GH_PORT\", repo: acme/shop, base: main}}"
python3 - "$CFG" "$extra" <<'PY'
import sys
p, extra = sys.argv[1], sys.argv[2]
s = open(p).read()
s = s.replace("    logs: [stdout, stderr]\n", "    logs: [stdout, stderr]\n" + extra + "\n", 1)
open(p, "w").write(s)
PY
printf 'notify: {url: "http://127.0.0.1:%s/hook", timeout_ms: 3000}\n' "$WH_PORT" >>"$CFG"

start_daemon
wait_for "shop healthy" 20 healthy "$SHOP_PORT"
db_is() { [ "$(db "$1")" = "$2" ]; }

# The planted secrets: each kind the redactor knows, as a log line would carry them.
SECRETS=(
    "Sup3r-S3cret-Passw0rd-4711"
    "AKIAQWERTYUIOPASDFGH"
    "ghp_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
    "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
    "sk_live_51HqLyjWDarjtT1zdp7dcXyZ"
    "pa55w0rd-in-a-url-0815"
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJlLXNlY3JldC0xMjM0"
)
{
    echo "2026-11-28T07:00:00Z INFO db: connecting to postgres://shop:${SECRETS[5]}@db.internal/shop"
    echo "2026-11-28T07:00:00Z INFO deploy: using aws key ${SECRETS[1]} and token ${SECRETS[2]}"
    echo "2026-11-28T07:00:00Z INFO notify: slack token ${SECRETS[3]} stripe ${SECRETS[4]}"
    echo "2026-11-28T07:00:01Z ERROR FAULT_DB_TIMEOUT route=/test-fault/db-timeout reason=statement_timeout password=${SECRETS[0]} Authorization: Bearer ${SECRETS[6]}"
} >>"$WORK/shop-extra.log"
wait_for "an incident" 20 db_is "select count(*) > 0 from incidents where parent_id is null" 1
id=$(db "select min(id) from incidents where parent_id is null")
# The same fault through the service itself, so the replay has something to fix.
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "remediation succeeded" 40 db_is "select state from remediations where incident_id=$id" succeeded
branch="asr/incident-$id"
sha=$(git -C "$REPO" rev-parse "refs/heads/$branch")
expect_eq "the fix's author" "Fix Bot <fixbot@example.test>" "$(git -C "$REPO" log -1 --format='%an <%ae>' "$sha")"
wait_for "the branch pushed" 20 bash -c "[ \"\$(git -C '$WORK/remote.git' rev-parse 'refs/heads/$branch' 2>/dev/null)\" = '$sha' ]"
wait_for "a pull request" 20 bash -c "grep -q '\"method\": \"POST\"' '$WORK/github.jsonl' 2>/dev/null"
wait_for "the remediated event" 20 bash -c "grep -q remediated '$WORK/webhook.jsonl' 2>/dev/null"
sleep 0.5 # anything that would come twice comes now
python3 - "$WORK" "$branch" <<'PY' || fail "what was sent"
import json, sys
work, branch = sys.argv[1], sys.argv[2]
hooks = [json.loads(l) for l in open(work + "/webhook.jsonl")]
events = [json.loads(h["body"]) for h in hooks]
remediated = [e for e in events if e.get("kind") == "remediated"]
assert len(remediated) == 1, "one remediated event, got %d" % len(remediated)
keys = [h["headers"].get("Idempotency-Key") for h in hooks]
assert all(keys) and len(keys) == len(set(keys)), "every event has its own Idempotency-Key: %s" % keys
gh = [json.loads(l) for l in open(work + "/github.jsonl")]
posts = [r for r in gh if r["method"] == "POST"]
assert len(posts) == 1, "one pull request created, got %d" % len(posts)
body = json.loads(posts[0]["body"])
assert body["head"] == branch and body["base"] == "main", body
print("   webhook events: %s; GitHub requests: %d (1 created: %s)" %
      ([e.get("kind") for e in events], len(gh), body["title"][:60]))
PY
pass "pushed, announced, one pull request"

# No planted secret anywhere it could leave by: every commit and tree of every branch (and of
# the pushed repository), every branch name, every webhook and GitHub request; the token in no
# body.
{
    for g in "$REPO" "$WORK/remote.git"; do
        git -C "$g" for-each-ref --format='%(refname)'
        git -C "$g" log --all --format='%H%n%an %ae%n%B' -p
    done
    cat "$WORK/webhook.jsonl" "$WORK/github.jsonl"
} >"$WORK/outbound.txt"
leaks=0
for s in "${SECRETS[@]}"; do
    if grep -qF "$s" "$WORK/outbound.txt"; then
        log "LEAK: $s"
        leaks=$((leaks + 1))
    fi
done
grep -qF "$ASR_TEST_GH_TOKEN" <(python3 -c 'import json,sys; [print(json.loads(l)["body"]) for l in open(sys.argv[1])]' "$WORK/github.jsonl") &&
    { log "LEAK: the GitHub token in a request body"; leaks=$((leaks + 1)); }
expect_eq "planted secrets in commits, branches, webhook and GitHub requests" 0 "$leaks"
# ... and the secrets did reach asr: the incident holds them (so the check above means something).
db "select line || context_before from incidents where id=$id" | grep -qF "${SECRETS[1]}" ||
    fail "the planted secrets never reached the incident: the leak check proves nothing"
"$ASR_BIN" audit verify --state-dir "$STATE" >/dev/null || fail "audit verify"
git -C "$REPO" fsck --strict >/dev/null 2>&1 || fail "git fsck (work repo)"
git -C "$WORK/remote.git" fsck --strict >/dev/null 2>&1 || fail "git fsck (remote)"
pass "0 of ${#SECRETS[@]} secrets left the host; audit and fsck clean"

# A plan's notify step: the message goes out once, then the next step (an escalation, announced).
before=$(wc -l <"$WORK/webhook.jsonl")
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/run" >/dev/null
wait_for "the notify plan ran" 20 db_is "select state from remediations r join incidents i on i.id=r.incident_id where i.signature='FAULT_SQL_INJECTION_TEST'" escalated
wait_for "two more events" 20 bash -c "[ \$(wc -l <'$WORK/webhook.jsonl') -ge $((before + 2)) ]"
sleep 0.3
expect_eq "the notify step's events" "notify:the orders report query is malformed; a person is needed escalated" \
    "$(tail -n +$((before + 1)) "$WORK/webhook.jsonl" | python3 -c 'import json,sys; print(" ".join(e["kind"] + (":" + e["message"] if e.get("message") else "") for e in (json.loads(json.loads(l)["body"]) for l in sys.stdin)))')"
