# A storm (issue 5, acceptance "Storm"): a service that dies about 1 s after every start, for
# STORM_SECONDS (default 40, what CI affords twice; the 300 s figures in docs/execution.md come
# from STORM_SECONDS=300 run by hand). It prints a FATAL line before each exit, and now and then
# dies another way (exit 4, SIGABRT), so the storm brings new fingerprints, hence new incidents,
# after the circuit opened. Measured from the store and the log:
# - restarts by the supervisor never exceed restart.budget within any restart.window_ms, even
#   with asr's own blue/green restart in the middle (it does not refill the restart budget);
# - remediations that ran never exceed policy.budget;
# - exactly one escalation for the whole storm, and it says that the circuit of the service
#   opened, why, and what an operator does next; every other incident is recorded (a refused
#   remediation "held on remediation N" or "circuit open since ...") and not escalated again;
# - the daemon stays healthy: a calm second service answers through its proxy at every probe,
#   asr status answers, the daemon's RSS does not keep growing; asr audit verify passes;
# - an operator's deploy of a fix closes the circuit: the next crash is remediated again;
# - webhooks (tests/webhook_server.py as the receiver): at most one event that needs a person
#   (escalated, failed, circuit_open) for the storm: this is where an alert storm would show.
source "$(dirname "$0")/lib.sh"
# 40 s: the restart budget is spent at about 28 s, and CI runs every test twice within its time
# budget (plain and under the sanitizers).
STORM_SECONDS=${STORM_SECONDS:-40}
# Exit 3 most of the time; exit 4 and SIGABRT now and then (new fingerprints mid-storm).
STORM_CRASHES=${STORM_CRASHES:-exit:3,exit:3,exit:3,exit:3,exit:4,exit:3,exit:3,exit:3,signal:ABRT}
# stable_ms 500: each start lives past it, so every crash is restarted at once, with no back-off:
# the hardest storm (with the default 1000 the back-off spaces the restarts out instead).
RESTART_BUDGET=20
RESTART_WINDOW_MS=60000
REM_BUDGET=3

WORK=$(mktemp -d /tmp/asr-it.XXXXXX)
trap teardown EXIT
REPO=$WORK/repo
STATE=$WORK/state
CFG=$WORK/asr.yaml
mkdir -p "$REPO"
cp "$ASR_SOURCE_DIR/tests/fixtures/storm/storm.py" "$REPO/"
git -C "$REPO" init -q
git_commit "storm service" >/dev/null
STORM_PORT=$(free_port)
CALM_PORT=$(free_port)
# The webhook receiver: every request it gets is a JSON line in hooks.jsonl. It runs from $WORK,
# so the teardown's kill of everything under $WORK ends it too.
cp "$ASR_SOURCE_DIR/tests/webhook_server.py" "$WORK/"
WEBHOOK_RECORD=$WORK/hooks.jsonl python3 "$WORK/webhook_server.py" >"$WORK/hooks.out" 2>&1 &
wait_for "the webhook receiver" 10 grep -q "^listening " "$WORK/hooks.out"
HOOK_PORT=$(awk '/^listening / {print $2}' "$WORK/hooks.out")
touch "$WORK/hooks.jsonl"
cat >"$CFG" <<EOF
state_dir: $STATE
log_level: info
notify: {url: "http://127.0.0.1:$HOOK_PORT/hook"}
playbooks: $ASR_SOURCE_DIR/demo/playbooks
llm: {provider: none}
services:
  - name: storm
    repo: $REPO
    build: [python3, -m, py_compile, storm.py]
    start: [python3, storm.py, --port, "\${PORT}"]
    env: ["STORM_STATE=$WORK/turn", "STORM_CRASHES=$STORM_CRASHES"]
    listen: 127.0.0.1:$STORM_PORT
    health: {path: /health, interval_ms: 200, timeout_ms: 1000, rise: 1, fall: 3}
    policy: {budget: {remediations: $REM_BUDGET, per: 1h}, cooldown: 10m}
    restart: {backoff_initial_ms: 100, backoff_max_ms: 30000, stable_ms: 500, budget: $RESTART_BUDGET, window_ms: $RESTART_WINDOW_MS}
  - name: calm
    repo: $REPO
    build: [python3, -m, py_compile, storm.py]
    start: [python3, storm.py, --port, "\${PORT}"]
    env: [STORM_LIFE_MS=0]
    listen: 127.0.0.1:$CALM_PORT
    health: {path: /health, interval_ms: 500, timeout_ms: 1000, rise: 1, fall: 3}
EOF
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "config check: $("$ASR_BIN" config check -c "$CFG" 2>&1)"

db_is() { [ "$(db "$1")" = "$2" ]; }
escalations() { grep -c "escalated to a person" "$WORK/daemon.log" || true; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status" 2>/dev/null || echo 0; }

start_daemon
wait_for "calm healthy" 30 healthy "$CALM_PORT"
wait_for "the storm's first incident" 30 db_is "select count(*) > 0 from incidents where service='storm'" 1
t0=$SECONDS
log "storm started; watching it for ${STORM_SECONDS}s"

# During the storm: every 5 s the calm service and the control socket must answer, and the
# daemon's RSS is sampled.
probes=0 probe_failures=0
: >"$WORK/rss.txt"
while [ $((SECONDS - t0)) -lt "$STORM_SECONDS" ]; do
    sleep 5
    probes=$((probes + 1))
    [ "$(http GET "http://127.0.0.1:$CALM_PORT/health")" = 200 ] || probe_failures=$((probe_failures + 1))
    "$ASR_BIN" status --state-dir "$STATE" >/dev/null 2>&1 || probe_failures=$((probe_failures + 1))
    echo "$((SECONDS - t0)) $(rss_kb)" >>"$WORK/rss.txt"
done
kill -0 "$DAEMON_PID" 2>/dev/null || fail "the daemon died during the storm"
expect_eq "calm service and asr status answered at every probe ($probes probes)" 0 "$probe_failures"

# ---- counts, from the store and the log -----------------------------------------------------
python3 - "$STATE/asr.db" "$WORK/daemon.log" "$RESTART_BUDGET" "$RESTART_WINDOW_MS" "$REM_BUDGET" \
    "$WORK/rss.txt" "$WORK/hooks.jsonl" >"$WORK/figures.txt" <<'PY' || fail "storm figures: $(cat "$WORK/figures.txt")"
import json, re, sqlite3, sys
dbp, logp, budget, window, rem_budget, rssp, hooksp = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
c = sqlite3.connect(f"file:{dbp}?mode=ro", uri=True)
log = open(logp, encoding="utf-8", errors="replace").read()
q = lambda sql: c.execute(sql).fetchall()
# Restarts by the supervisor: slot starts that no deployment made (a deployment logs its own
# "started <sha> in slot X (pid N, ...); waiting for health").
deploy_pids = {int(p) for p in re.findall(r"storm: started \w+ in slot \w+ \(pid (\d+),", log)}
starts = [(at, int(re.search(r"pid=(\d+)", d).group(1)))
          for at, d in q("select at, detail from events where service='storm' and kind='slot.started' order by id")]
restarts = [at for at, pid in starts if pid not in deploy_pids]
worst = max((sum(1 for u in restarts if t <= u < t + window) for t in restarts), default=0)
events = dict(q("select kind, count(*) from events where service='storm' group by kind"))
incidents = q("select count(*) from incidents where service='storm'")[0][0]
plans = q("select count(*) from plans p join incidents i on i.id = p.incident_id where i.service='storm'")[0][0]
states = dict(q("select state, count(*) from remediations where service='storm' group by state"))
ran = q("select count(*) from remediations where service='storm' and started_at is not null")[0][0]
loud = re.findall(r"^.*escalated to a person.*$", log, re.M)
quiet = len(re.findall(r"recorded, not escalated again", log))
refused = q("select reason from remediations where service='storm' and state='refused'")
rss = [int(l.split()[1]) for l in open(rssp) if l.split()[1] != "0"]
hooks = [json.loads(json.loads(l)["body"]) for l in open(hooksp) if l.strip()]
hooks = [h for h in hooks if h.get("service") == "storm"]
kinds = {}
for h in hooks:
    kinds[h.get("kind")] = kinds.get(h.get("kind"), 0) + 1
paged = sum(kinds.get(k, 0) for k in ("escalated", "failed", "circuit_open"))
print(f"restarts {len(restarts)} (worst {window // 1000} s window: {worst}, budget {budget}); "
      f"slot.exited {events.get('slot.exited', 0)}; service.failed {events.get('service.failed', 0)}; "
      f"incidents {incidents}; plans {plans}; remediations {sum(states.values())} {states} "
      f"(ran {ran}, budget {rem_budget}); escalations {len(loud)}; recorded quietly {quiet}; "
      f"webhooks {kinds}; "
      f"rss kB first {rss[0] if rss else 0} max {max(rss, default=0)} last {rss[-1] if rss else 0}")
bad = []
if worst > budget: bad.append(f"{worst} restarts within {window} ms, budget {budget}")
if len(restarts) == 0: bad.append("no restart at all: the storm did not happen")
if ran > rem_budget: bad.append(f"{ran} remediations ran, budget {rem_budget}")
if len(loud) != 1: bad.append(f"{len(loud)} escalations, want 1: " + " | ".join(l[:200] for l in loud))
elif not re.search(r"circuit (of storm is open since|opened at)", loud[0]): bad.append(f"the escalation does not name the circuit: {loud[0]}")
elif "asr deploy storm" not in loud[0]: bad.append(f"the escalation does not say what to do: {loud[0]}")
if paged > 1: bad.append(f"{paged} webhooks need a person for one storm: {kinds}")
if quiet != len(refused): bad.append(f"{quiet} quiet log lines for {len(refused)} refused remediations")
for (r,) in refused:
    if not (r.startswith("held on remediation ") or r.startswith("circuit open")):
        bad.append(f"a refusal that is neither held nor the circuit's: {r}")
if not any(r.startswith("circuit open since") for (r,) in refused):
    bad.append("no incident was recorded as refused by the open circuit")
if len(rss) >= 4:
    base = rss[len(rss) // 4]
    if rss[-1] > base * 3 // 2 + 8192: bad.append(f"RSS grew from {base} to {rss[-1]} kB")
if bad:
    print("FAIL: " + "; ".join(bad))
    sys.exit(1)
PY
log "storm figures: $(cat "$WORK/figures.txt")"
[ -z "${STORM_LOG:-}" ] || cp "$WORK/daemon.log" "$STORM_LOG" # to read the storm afterwards
pass "restarts and remediations within their budgets, one escalation, the rest recorded"

# The circuit is visible on every incident it refused.
id=$(db "select incident_id from remediations where service='storm' and reason like 'circuit open since%' order by id limit 1")
"$ASR_BIN" incident show "$id" --state-dir "$STATE" | grep -q "refused: circuit open since" ||
    fail "asr incident show $id should say the circuit is open"
pass "asr incident show $id says the circuit is open"
"$ASR_BIN" status --state-dir "$STATE" | grep -q "circuit open:" ||
    fail "asr status should say the circuit of storm is open: $("$ASR_BIN" status --state-dir "$STATE")"
expect_eq "asr status --json: the circuit of storm" open \
    "$("$ASR_BIN" status --state-dir "$STATE" --json | python3 -c 'import json,sys; print([s for s in json.load(sys.stdin)["services"] if s["name"]=="storm"][0].get("circuit",{}).get("state","closed"))')"
escalated=$(escalations)

# ---- the operator's fix: a deploy closes the circuit --------------------------------------
touch "$REPO/FIXED"
fix=$(git_commit "storm: fixed")
"$ASR_BIN" deploy storm --ref "$fix" --state-dir "$STATE" >/dev/null 2>&1 || fail "deploy of the fix"
wait_for "storm healthy on the fix" 20 healthy "$STORM_PORT"
rems=$(db "select count(*) from remediations where service='storm'")
kill -KILL "$(status_field storm "s['pid']")"
wait_for "the kill's remediation" 20 db_is "select count(*) from remediations where service='storm'" $((rems + 1))
wait_for "the remediation after the fix succeeded" 30 db_is "select state from remediations where service='storm' order by id desc limit 1" succeeded
pass "after the fix asr acts again: the circuit closed"
expect_eq "no new escalation" "$escalated" "$(escalations)"

"$ASR_BIN" audit verify --state-dir "$STATE" >/dev/null || fail "audit verify: $("$ASR_BIN" audit verify --state-dir "$STATE" 2>&1)"
pass "audit verify"
stop_daemon || fail "the daemon did not stop cleanly"
pass "storm of ${STORM_SECONDS}s"
