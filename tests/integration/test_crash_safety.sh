# Crash safety (issue 5, acceptance): asr is killed with SIGKILL at TRIALS (default 10) random
# points of a demo remediation and restarted each time on the same state dir and repository:
# every incident must reach a final state, with 0 duplicated commits, reverts, deploys, journal
# keys or webhook calls; `asr audit verify` passes and `git fsck --strict` is clean.
#
# The remediation is the patch-loop one (test_patch_loop.sh): FAULT_DB_TIMEOUT, planned from its
# playbook, committed on asr/incident-<id>, built, tested, deployed blue/green and verified by
# replaying the fault. One un-killed run first measures its duration T (fault to final state)
# and must pass the same checks; the checker is then shown doctored states it must flag.
# Most trials kill at a random time in the i-th of m equal windows of [0, T) after the fault; a
# few kill a random delay after the daemon logs the line that starts a short phase (the commit,
# the cutover, ...: see PLAN), so that every run covers detection and planning, the commit,
# build, test, cutover, verification and finishing. Each trial starts from a copy of one
# prepared repository and state dir (playbooks indexed, releases built) at the same paths,
# starts `asr run`, sends the fault, kills the daemon, restarts it, waits up to 30 s for a final
# state, stops it, and checks (crash_check.py says what). Webhooks go to tests/webhook_server.py.
# Every trial runs; the summary counts final states, phases at the kill and duplicates.
#
# Then the undo path (see "the undo path" below): with only a playbook whose patch builds and
# passes its tests but does not remove the fault, the remediation must end failed, its commit
# reverted once, its release bad and the service back on the release it ran before, whatever
# kill lands in the verification, the revert or the rollback (UNDO_TRIALS more trials, each
# after a line of the log; about 50 s).
#
#   TRIALS=n           number of kill points (default 10; 4 under ASan, when ASAN_OPTIONS is set;
#                      issue 5's acceptance run was 20)
#   SEED=n             the kill points' random seed (printed; set it to replay a run)
#   KILLS="..."        kill at these points instead, one trial each: MS after the fault, or
#                      EVENT+MS after a line of the log (EVENT as in EVENT_RE below)
#   UNDO_TRIALS=n      kill points on the undo path (default 4; 2 under ASan; 0: no undo path)
#   UNDO_KILLS="..."   the undo path's kill points instead, as KILLS (e.g. "replayed+530")
source "$(dirname "$0")/lib.sh"
CHECK=(python3 "$(dirname "$0")/crash_check.py")
if [ -n "${ASAN_OPTIONS:-}" ]; then
    TRIALS=${TRIALS:-4}
    UNDO_TRIALS=${UNDO_TRIALS:-2}
    log "sanitizer build (ASAN_OPTIONS is set): $TRIALS trials instead of 10, $UNDO_TRIALS of the undo path instead of 4"
else
    # 10 + 4 keeps CI under 20 minutes; issue 5's acceptance ran TRIALS=20 UNDO_TRIALS=6.
    TRIALS=${TRIALS:-10}
    UNDO_TRIALS=${UNDO_TRIALS:-4}
fi
EXPECT=any # what crash_check.py wants the remediation to end as: any final state, or "failed"
SEED=${SEED:-$((RANDOM * 32768 + RANDOM))}
FINAL_DEADLINE=30

setup
sed -i 's/deploy: {healthy_timeout_ms: 5000,/deploy: {verify_window_ms: 500, healthy_timeout_ms: 5000,/' "$CFG"
grep -q 'verify_window_ms: 500' "$CFG" || fail "could not set verify_window_ms in $CFG"
RESULTS=$WORK/results.jsonl
BASE=$WORK/base

# ---- helpers -----------------------------------------------------------------------------------

now_ms() { date +%s%3N; }

# poll SECONDS COMMAND...: like wait_for, but returns 1 on timeout instead of failing the test.
poll() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

final_state() { "${CHECK[@]}" final --state "$STATE"; }

# The processes of this test's trial: those whose working directory or executable is under $WORK
# (slots, builds, tests, asr-git; the slots' argv is relative, so argv does not tell).
trial_procs() {
    python3 - "$WORK/" <<'PY'
import os, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    where = []
    for link in ("cwd", "exe"):
        try:
            where.append(os.readlink(f"/proc/{pid}/{link}") + "/")
        except OSError:
            pass
    if any(w.startswith(sys.argv[1]) for w in where):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            comm = "?"
        print(f"{pid}:{comm}", end=" ")
PY
}
no_trial_procs() { [ -z "$(trial_procs)" ]; }
dead() { ! kill -0 "$1" 2>/dev/null; }

# A fresh trial: the prepared repository and state dir, copied to the paths they were made at
# (the store records absolute release directories).
fresh() {
    rm -rf "$REPO" "$STATE" "$WORK"/daemon*.log "$WORK/status.json"
    cp -a "$BASE/repo" "$REPO"
    cp -a "$BASE/state" "$STATE"
}

# Fills $WORK/status.json, SERVED, HEALTH and REPLAY while the daemon runs after the final state.
observe() {
    "$ASR_BIN" status --state-dir "$STATE" --json >"$WORK/status.json" 2>/dev/null || echo '{}' >"$WORK/status.json"
    HEALTH=000
    poll 5 healthy "$SHOP_PORT" && HEALTH=200 || HEALTH=$(http GET "http://127.0.0.1:$SHOP_PORT/health")
    SERVED=$(curl -s -m 5 "http://127.0.0.1:$SHOP_PORT/version" |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("commit",""))' 2>/dev/null || true)
    REPLAY=""
    if [ "$(db "select count(*) from remediations where state='succeeded'")" != 0 ]; then
        # The fix must hold; marked as a verification so a failing answer opens no incident.
        REPLAY=$(http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" -H 'X-Asr-Verification: 1')
    fi
}

# check TRIAL KILL_MS PHASE [LEFT_RUNNING [HOW]]: the checker's verdict on the stopped trial,
# appended to $RESULTS.
check() {
    "${CHECK[@]}" check --state "$STATE" --repo "$REPO" --base "$BASE_SHA" \
        --base-deploy "$BASE_DEPLOY" --status "$WORK/status.json" --served "$SERVED" \
        --health "$HEALTH" --replay "$REPLAY" --asr "$ASR_BIN" \
        --trial "$1" --kill-ms "$2" --phase "$3" --left-running "${4:-}" --kill-how "${5:-}" --out "$RESULTS" \
        --webhook-log "$HOOK_RECORD" --webhook-from "${HOOK_FROM:-0}" --expect "$EXPECT"
}

# ---- webhooks ----------------------------------------------------------------------------------
# Notifications go to tests/webhook_server.py, one receiver for the whole test (its argv names
# $WORK so that lib.sh's teardown ends it), which records every request. Each trial checks the
# requests that came during it: every one has an Idempotency-Key, and none came twice (a
# remediation sends one event as it ends: remediated, failed or escalated).
HOOK_RECORD=$WORK/webhooks.jsonl
: >"$HOOK_RECORD"
WEBHOOK_RECORD=$HOOK_RECORD python3 "$ASR_SOURCE_DIR/tests/webhook_server.py" "$WORK/webhook" >"$WORK/webhook.out" 2>&1 &
disown $! # ended by lib.sh's teardown, without bash reporting it
wait_for "the webhook receiver" 10 grep -q '^listening ' "$WORK/webhook.out"
HOOK_PORT=$(sed -n 's/^listening //p' "$WORK/webhook.out")
printf 'notify: {url: "http://127.0.0.1:%s/hook", timeout_ms: 2000}\n' "$HOOK_PORT" >>"$CFG"
"$ASR_BIN" config check -c "$CFG" >/dev/null || fail "the config with notify does not load: $("$ASR_BIN" config check -c "$CFG" 2>&1)"
hook_lines() { wc -l <"$HOOK_RECORD"; }

# ---- the prepared repository and state dir --------------------------------------------------------

mkdir -p "$STATE"
start_daemon
wait_for "shop healthy (first build)" 60 healthy "$SHOP_PORT"
stop_daemon || fail "the daemon exited with an error on SIGTERM while preparing"
# The undo path indexes a playbook of its own in a copy of the state dir as it is now.
cp -a "$STATE" "$WORK/state-unindexed"
"$ASR_BIN" kb add "$ASR_SOURCE_DIR/demo/playbooks" --state-dir "$STATE" >/dev/null || fail "kb add"
mkdir -p "$BASE"
cp -a "$REPO" "$BASE/repo"
cp -a "$STATE" "$BASE/state"
BASE_SHA=$(git -C "$REPO" rev-parse HEAD)
BASE_DEPLOY=$(db "select coalesce(max(id), 0) from deployments")
pass "prepared: repository at ${BASE_SHA:0:12}, releases built, playbooks indexed"

# ---- one un-killed run: T, and the checks must pass ----------------------------------------------

fresh
start_daemon
wait_for "shop healthy" 30 healthy "$SHOP_PORT"
HOOK_FROM=$(hook_lines)
t0=$(now_ms)
http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
wait_for "the un-killed remediation's final state" 60 final_state
T=$(($(db "select max(finished_at) from remediations") - t0))
# Its timeline, in ms after the fault: F the incident on disk, D the deploy of the commit began
# (planning, the gate and the commit are over), C0 the new slot started and C1 the cutover.
F=$(($(db "select opened_at from incidents order by id limit 1") - t0))
D=$(($(db "select min(started_at) from deployments where kind='deploy' and id > $BASE_DEPLOY") - t0))
C0=$(($(db "select min(at) from events where service='shop' and kind='slot.started' and at >= $t0") - t0))
C1=$(($(db "select min(at) from events where service='shop' and kind='deploy.switched' and at >= $t0") - t0))
# P0, P1: the patch step began (asr-git commit-edits started) and its commit was journaled.
P0=$(($(db "select min(at) from journal where idem_key like 'rem:%:step:1' and phase='intent'") - t0))
P1=$(($(db "select min(at) from journal where idem_key like 'rem:%:commit:1'") - t0))
expect_eq "the un-killed remediation" succeeded "$(db "select group_concat(state) from remediations")"
observe
stop_daemon || fail "the daemon exited with an error on SIGTERM"
check 0 "$T" none >"$WORK/check0.txt" || fail "the un-killed run does not pass the checks: $(cat "$WORK/check0.txt")"
rem_t0=$(db "select first_seen from incidents where id=1")
log "the un-killed remediation's journal, ms from the fault line: $(db "select group_concat(idem_key || ' ' || phase || ' ' || (at - $rem_t0), ', ') from journal")"
pass "un-killed run: succeeded in T = $T ms, checks pass"
[ "$T" -ge 1000 ] && [ "$T" -le 60000 ] || fail "T = $T ms is not a plausible remediation time"

# The checker must be able to fail: doctored copies of the un-killed run's end state, several
# doctorings per copy (every expected violation must be named).
doctor() { # NAME HEALTH PATTERN...: the checker on $WORK/doc must fail naming each PATTERN
    local name=$1 health=$2 out pat
    shift 2
    if out=$("${CHECK[@]}" check --state "$WORK/doc/state" --repo "$WORK/doc/repo" --base "$BASE_SHA" \
        --base-deploy "$BASE_DEPLOY" --status "$WORK/doc/status.json" --served "$SERVED" \
        --health "$health" --replay "$REPLAY" --asr "$ASR_BIN" --trial 0 --kill-ms 0 \
        --phase doctored --out "$WORK/doc/results.jsonl" --webhook-log "$WORK/doc/webhooks.jsonl" \
        --expect "$EXPECT" 2>&1); then
        fail "the checker passed a doctored state ($name): $out"
    fi
    for pat in "$@"; do
        grep -qE "$pat" <<<"$out" || fail "the checker missed a doctoring ($name), expected /$pat/: $out"
    done
}
undoctor() {
    rm -rf "$WORK/doc"
    mkdir -p "$WORK/doc"
    cp -a "$REPO" "$WORK/doc/repo"
    cp -a "$STATE" "$WORK/doc/state"
    cp "$WORK/status.json" "$WORK/doc/status.json"
    tail -n +"$((HOOK_FROM + 1))" "$HOOK_RECORD" >"$WORK/doc/webhooks.jsonl"
}
docsql() { python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()" "$WORK/doc/state/asr.db" "$1"; }
doccommit() { # PARENT TREE MESSAGE: a commit on asr/incident-1 in the doctored repository
    git -C "$WORK/doc/repo" update-ref refs/heads/asr/incident-1 \
        "$(git -C "$WORK/doc/repo" -c user.name=t -c user.email=t@t commit-tree -p "$1" -m "$3" "$2")"
}
patch_sha=$(git -C "$REPO" rev-parse refs/heads/asr/incident-1)
undoctor
doccommit "$patch_sha" "$patch_sha^{tree}" "$(git -C "$REPO" log -1 --format=%B "$patch_sha")"
docsql "insert into deployments (service, kind, from_release, to_release, started_at, ended_at, outcome)
        select service, kind, from_release, to_release, started_at + 1, ended_at + 1, outcome
        from deployments where kind='deploy';
        drop trigger audit_append_only_update;
        update audit set detail='{}' where seq=(select max(seq) from audit);"
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [s.update(commit='0'*40) for s in d['services'] if s['name']=='shop']; json.dump(d, open(sys.argv[1],'w'))" "$WORK/doc/status.json"
touch "$WORK/doc/repo/.git/refs/heads/asr/incident-1.lock"
for k in dup-key dup-key; do
    printf '{"method": "POST", "path": "/hook", "headers": {"Idempotency-Key": "%s"}, "body": "{}"}\n' "$k" >>"$WORK/doc/webhooks.jsonl"
done
doctor "a second commit, a double deploy, the service off the fix, a lock, an audit row, no service, a webhook twice" 000 \
    "webhooks: Idempotency-Key dup-key received 2 times" \
    "duplicated commit: plan 1 has 2 commits" "deploys: shop release [0-9]+ deployed 2 times by remediation 1" \
    "asr status says shop runs 000000000000, not the commit" "lock file\\(s\\) left: refs/heads/asr/incident-1.lock" \
    "asr audit verify: exit 1" "GET /health through the proxy answered 000"
undoctor
docsql "update remediations set state='running', finished_at=NULL"
doctor "a remediation left running" 200 "remediation 1 is running"
undoctor
doccommit "$patch_sha" "$BASE_SHA^{tree}" "$(printf 'Revert\n\nAsr-Incident: 1\nAsr-Plan: 1\nAsr-Reverts: %s' "$patch_sha")"
doctor "the fix reverted" 200 "its commit [0-9a-f]+ is reverted"
undoctor
docsql "update remediations set state='failed'"
doctor "a failed remediation's commit kept" 200 "\(failed\): its commit [0-9a-f]+ is not reverted" \
    "still serves its commit" "was deployed and is good, not bad" "is resolved, not open"
rm -rf "$WORK/doc"
pass "the checker flags doctored states: a duplicated commit, a double deploy, a webhook received twice, the service off the fix, a git lock, an edited audit row, no service, a remediation left running, a reverted fix, a failed remediation's commit kept"

# ---- the trials --------------------------------------------------------------------------------

# kills_plan WORDS: PLAN from kill points given by hand ("MS" after the fault, "EVENT+MS" after
# a line of the log), one trial each.
kills_plan() {
    PLAN=()
    local k
    for k in $1; do
        case "$k" in
        *+*) PLAN+=("e ${k#*+} ${k%+*}") ;;
        *) PLAN+=("t $k") ;;
        esac
    done
}

# run_trials: one trial for each line of PLAN ("t MS" or "e MS EVENT"), from a fresh copy of
# $BASE; the killer waits up to T/500 + 5 s for its line. Each trial's verdict (checked with
# $EXPECT) goes to $RESULTS; FAILED counts the failed trials.
run_trials() {
    local i n kind delay event killer how kill_ms kill_note left_running phase trial_bad procs p out
    rm -f "$RESULTS"
    FAILED=0
    for ((i = 0; i < ${#PLAN[@]}; i++)); do
        n=$((i + 1))
        fresh
        start_daemon
        if ! poll 30 healthy "$SHOP_PORT"; then
            log "trial $n: FAILED: shop not healthy 30 s after the start"
            tail -n 20 "$WORK/daemon.log" >&2
            FAILED=$((FAILED + 1))
            stop_daemon || true
            continue
        fi
        HOOK_FROM=$(hook_lines)
        # The killer sends the fault and kills asr; asr is disowned so that bash does not report it.
        disown "$DAEMON_PID"
        read -r kind delay event <<<"${PLAN[$i]}"
        killer=("${CHECK[@]}" kill --pid "$DAEMON_PID" --delay-ms "$delay" --timeout-s $((T / 500 + 5))
            --url "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout")
        how=""
        if [ "$kind" = e ]; then
            killer+=(--log "$WORK/daemon.log" --from "$(stat -c %s "$WORK/daemon.log")" --after "${EVENT_RE[$event]}")
            how="$event+$delay"
        fi
        read -r kill_ms kill_note < <("${killer[@]}") || kill_ms=-1
        how+="${kill_note:+ $kill_note}"
        poll 10 dead "$DAEMON_PID" || fail "asr (pid $DAEMON_PID) still runs 10 s after SIGKILL"
        DAEMON_PID=""
        sleep 0.05
        left_running=$(trial_procs)
        phase=$("${CHECK[@]}" phase --state "$STATE" --repo "$REPO" --base "$BASE_SHA") || phase="?"
        mv "$WORK/daemon.log" "$WORK/daemon-killed.log"
        start_daemon
        trial_bad=""
        poll 30 healthy "$SHOP_PORT" || trial_bad+="shop not healthy 30 s after the restart; "
        if ! poll "$FINAL_DEADLINE" final_state; then
            trial_bad+="no final state ${FINAL_DEADLINE} s after the restart: $(final_state); "
        fi
        observe
        stop_daemon || trial_bad+="the restarted daemon exited with an error on SIGTERM; "
        if ! poll 5 no_trial_procs; then
            procs=$(trial_procs)
            trial_bad+="processes outlived the stopped daemon: $procs; "
            for p in $procs; do kill -KILL "${p%%:*}" 2>/dev/null || true; done
        fi
        out=$(check "$n" "$kill_ms" "$phase" "$left_running" "$how" 2>&1) || trial_bad+="checks; "
        printf '%s\n' "$out" >&2
        [ -z "$left_running" ] || log "    note: still running 50 ms after the kill: $left_running"
        if [ -n "$trial_bad" ]; then
            FAILED=$((FAILED + 1))
            log "    trial $n failed: ${trial_bad%; } (daemon logs: killed run, then restart, last lines)"
            grep -E "WARN|ERROR" "$WORK/daemon-killed.log" | tail -n 5 | sed 's/^/      killed: /' >&2 || true
            grep -E "WARN|ERROR|execute|remediat" "$WORK/daemon.log" | tail -n 8 | sed 's/^/      restart: /' >&2 || true
            log "    its journal: $(db "select group_concat(id || ' ' || idem_key || ' ' || phase || ' ok=' || coalesce(ok, '-'), '; ') from journal")"
            # A trial that failed before the checker ran still counts in the summary.
            grep -q "\"trial\": $n," "$RESULTS" 2>/dev/null ||
                printf '{"trial": %d, "kill_ms": %d, "phase": "%s", "states": {}, "duplicates": 0, "failures": ["%s"]}\n' \
                    "$n" "$kill_ms" "$phase" "harness" >>"$RESULTS"
        fi
    done
}

# log_plan: the kill points, on one line.
log_plan() {
    local p kind delay event points=""
    for p in "${PLAN[@]}"; do
        read -r kind delay event <<<"$p"
        points+=" ${event:+$event+}$delay"
    done
    log "kill points (ms after the fault, or after a line of the log):$points"
}

# summary WHAT SECONDS: the checker's summary of $RESULTS; a failure is added to VERDICT.
VERDICT=""
summary() {
    local rc=0
    log "summary of $1 (${#PLAN[@]} trials in $2 s; T = $T ms, seed $SEED):"
    "${CHECK[@]}" summary --results "$RESULTS" >&2 || rc=$?
    if [ "$FAILED" = 0 ] && [ "$rc" = 0 ]; then
        return 0
    fi
    VERDICT+="$1: $FAILED of ${#PLAN[@]} trials failed; "
    log "FAILED: $1: $FAILED of ${#PLAN[@]} trials failed (seed $SEED; replay with SEED=$SEED)"
    return 1
}

# The kill points. Most trials kill at a random time in the i-th of m equal windows of [0, T).
# The short phases would get a point in some runs only (planning, the gate and the commit take
# a few tens of ms, the cutover about 100 ms, of T's seconds, and a loaded machine shifts them by
# more than that), so k = min(5, n/3) trials kill a random delay after the daemon logs the line
# that starts them instead: the deploy's "slot.started" (cutover), the patch step's start
# (asr-git commit-edits at work), "incident N opened" (planning, the gate), "deploy.switched"
# (between the cutover and the verification) and "deploy.started" (export, build), in that
# order of need. A plan line is "t MS" or "e MS EVENT".
declare -A EVENT_RE=([opened]='incident [0-9]+ opened'
    [patch]='execute: remediation [0-9]+ of incident [0-9]+: step [0-9]+: patch'
    [deploy.started]='shop: deploy\.started: .*kind=deploy'
    [slot.started]='shop: slot\.started: '
    [deploy.switched]='shop: deploy\.switched: .*kind=deploy'
    [replayed]='\[shop/[a-z]+ err\] FAULT_DB_TIMEOUT .*verification=1'
    [rollback.started]='shop: deploy\.started: .*kind=rollback'
    [rollback.switched]='shop: deploy\.switched: .*kind=rollback')
mapfile -t PLAN < <(python3 - "$TRIALS" "$T" "$F" "$D" "$C0" "$C1" "$P0" "$P1" "$SEED" <<'PY'
import random, sys
n, T, F, D, C0, C1, P0, P1, seed = map(int, sys.argv[1:])
r = random.Random(seed)
anchors = [("slot.started", C0, max(C1 - C0, 50) + 30), ("patch", P0, max(P1 - P0, 20) + 10),
           ("opened", F, max(P0 - F, 10) + 10), ("deploy.switched", C1, 30),
           ("deploy.started", D, 50)][:min(5, n // 3)]
m = n - len(anchors)
plan = []
for i in range(m):
    at = int(r.uniform(i * T / m, (i + 1) * T / m))
    plan.append((at, f"t {at}"))
for name, at, spread in anchors:
    plan.append((at, f"e {int(r.uniform(0, spread))} {name}"))
for _, line in sorted(plan):
    print(line)
PY
)
[ -z "${KILLS:-}" ] || kills_plan "$KILLS"
if [ "${#PLAN[@]}" -gt 0 ]; then
    trials_t0=$SECONDS
    log "${#PLAN[@]} trials, seed $SEED; the un-killed run, ms after the fault: incident $F, commit $P0-$P1, deploy $D, cutover $C0-$C1, final $T"
    log_plan
    run_trials
    summary "the patch that works" $((SECONDS - trials_t0)) &&
        pass "crash safety: ${#PLAN[@]} kills, every incident final, 0 duplicates, audit and git clean"
fi

# ---- the undo path: a patch that does not remove the fault --------------------------------------

# The playbook "bad-patch-nofix" of test_bad_patches.sh, the only one indexed: its patch builds
# and passes the tests but changes only a comment, so the replayed request still fails after
# the cutover. The remediation must end failed: the patch's release marked bad, its commit
# reverted by a new commit (Asr-Reverts; asr-git revert is idempotent), the service rolled back
# to the release it ran before. One un-killed run measures its timeline and must pass the checks
# (crash_check.py check --expect failed, which also wants the service on the original release,
# exactly one patch commit and it reverted, its release bad); then UNDO_TRIALS kills land a
# random delay after a line of the daemon log, placed from that timeline: in the verification's
# window (after the replay's fault line), in the revert (asr-git revert at work, about 40 ms, a
# measured delay after the replay's line), in the rollback (after its "deploy.started"), at its
# end (after its "deploy.switched": the remediation is being finished) and between the cutover
# and the replay.
if [ "$UNDO_TRIALS" -gt 0 ]; then
    phase2_t0=$SECONDS
    mkdir -p "$WORK/kb-undo"
    cat >"$WORK/kb-undo/bad-nofix.yaml" <<'EOF'
id: bad-patch-nofix
title: Database statement limit (a patch that builds and passes but fixes nothing)
version: 1
match:
  signature: FAULT_DB_TIMEOUT
  service: shop
symptoms: |
  The slow report is interrupted by its statement time limit.
steps:
  - action: patch
    message: "db: reword a comment (the limit stays 50 ms)"
    edits:
      - path: src/db.c
        search: |
          /* Time limit for one statement, in ms. Too short on purpose: the fix for fault 3. */
        replace: |
          /* Time limit for one statement, in milliseconds. */
verify:
  request: {method: POST, path: /test-fault/db-timeout}
  expect: {status: 200, body_contains: '"status":"ok"', body_not_contains: statement_timeout}
  timeout_ms: 10000
EOF
    # The same repository and releases as the first base, the state dir before its playbooks.
    rm -rf "$REPO" "$STATE" "$WORK"/daemon*.log "$WORK/status.json"
    cp -a "$BASE/repo" "$REPO"
    cp -a "$WORK/state-unindexed" "$STATE"
    "$ASR_BIN" kb add "$WORK/kb-undo" --state-dir "$STATE" >/dev/null || fail "kb add $WORK/kb-undo"
    BASE=$WORK/base-undo
    mkdir -p "$BASE"
    cp -a "$REPO" "$BASE/repo"
    cp -a "$STATE" "$BASE/state"
    BASE_DEPLOY=$(db "select coalesce(max(id), 0) from deployments")
    EXPECT=failed
    RESULTS=$WORK/results-undo.jsonl
    pass "prepared the undo path: only bad-patch-nofix indexed"

    # The un-killed failing run: T, its timeline, and the checks must pass.
    fresh
    start_daemon
    wait_for "shop healthy" 30 healthy "$SHOP_PORT"
    HOOK_FROM=$(hook_lines)
    log_from=$(stat -c %s "$WORK/daemon.log")
    t0=$(now_ms)
    http POST "http://127.0.0.1:$SHOP_PORT/test-fault/db-timeout" >/dev/null
    wait_for "the un-killed failing remediation's final state" 60 final_state
    T=$(($(db "select max(finished_at) from remediations") - t0))
    expect_eq "the un-killed remediation of the nofix patch" failed "$(db "select group_concat(state) from remediations")"
    # Its timeline, ms after the fault: S the cutover to the patch, V the replay's fault line in
    # the log (the verification window follows), V1 the verification failed, R0-R1 the revert,
    # B0 the rollback began ("deploy.started"), B1 it switched, B2 its result.
    ev() { db "select coalesce(min(at), 0) - $t0 from events where service='shop' and kind='$1' and detail like '%kind=$2 %' and at >= $t0"; }
    jr() { db "select coalesce(min(at), 0) - $t0 from journal where idem_key like 'rem:%:$1:%' and phase='$2'"; }
    S=$(ev deploy.switched deploy)
    V=$(python3 - "$WORK/daemon.log" "$log_from" "${EVENT_RE[replayed]}" <<'PY'
import datetime, re, sys
f = open(sys.argv[1], "rb")
f.seek(int(sys.argv[2]))
for line in f.read().decode("utf-8", "replace").splitlines():
    if re.search(sys.argv[3], line):
        at = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
        print(int(at.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000))
        break
else:
    print(0)
PY
    )
    V=$((V - t0))
    V1=$(jr verify result)
    R0=$(jr revert intent)
    R1=$(jr revert result)
    B0=$(ev deploy.started rollback)
    B1=$(ev deploy.switched rollback)
    B2=$(jr rollback result)
    observe
    stop_daemon || fail "the daemon exited with an error on SIGTERM"
    check 0 "$T" none >"$WORK/check0.txt" || fail "the un-killed failing run does not pass the checks: $(cat "$WORK/check0.txt")"
    for x in S V V1 R0 R1 B0 B1 B2; do
        [ "${!x}" -gt 0 ] && [ "${!x}" -le "$T" ] || fail "the un-killed failing run's timeline: $x = ${!x} ms (T = $T ms): a line or journal row missing"
    done
    log "the un-killed failing run, ms after the fault: cutover $S, replay's line $V, verification failed $V1, revert $R0-$R1, rollback $B0-$B1-$B2, final $T"
    pass "un-killed failing run: failed in T = $T ms, commit reverted, release bad, service on ${BASE_SHA:0:12}, checks pass"

    # The checker must flag a failing run's doctored end states too.
    revert_sha=$(git -C "$REPO" rev-parse refs/heads/asr/incident-1)
    patch_sha=$(git -C "$REPO" rev-parse "$revert_sha^")
    fix_rel=$(db "select id from releases where service='shop' and commit_sha='$patch_sha'")
    undoctor
    git -C "$WORK/doc/repo" update-ref refs/heads/asr/incident-1 "$patch_sha"
    docsql "update releases set state='good' where id=$fix_rel"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); [s.update(commit=sys.argv[2]) for s in d['services'] if s['name']=='shop']; json.dump(d, open(sys.argv[1],'w'))" "$WORK/doc/status.json" "$patch_sha"
    served_was=$SERVED
    SERVED=$patch_sha
    doctor "the patch kept: not reverted, its release good, the service on it" 200 \
        "\(failed\): its commit [0-9a-f]+ is not reverted" "release $fix_rel is good, not bad" \
        "asr status says shop runs [0-9a-f]+, not the original release" \
        "GET /version through the proxy serves [0-9a-f]+, not the original release"
    SERVED=$served_was
    undoctor
    doccommit "$revert_sha" "$revert_sha^{tree}" "$(git -C "$REPO" log -1 --format=%B "$revert_sha")"
    docsql "insert into deployments (service, kind, from_release, to_release, started_at, ended_at, outcome)
            select service, kind, from_release, to_release, started_at + 1, ended_at + 1, outcome
            from deployments where kind='rollback';"
    doctor "a second revert, a second rollback" 200 "duplicated revert: [0-9a-f]+ is reverted 2 times" \
        "deploys: shop release [0-9]+ deployed 2 times by remediation 1"
    undoctor
    git -C "$WORK/doc/repo" update-ref -d refs/heads/asr/incident-1
    docsql "update remediations set state='escalated'; delete from journal where idem_key like 'rem:1:notify:%'"
    doctor "no commit, the remediation escalated, its end not announced" 200 \
        "remediation 1 is escalated, expected failed" "no commit of plan 1" "its end was never announced"
    rm -rf "$WORK/doc"
    pass "the checker (--expect failed) flags: the patch not reverted, its release good, the service on it; a second revert, a second rollback; no commit; a remediation not failed, its end not announced"

    # The kill points: the undo's phases in order of need, the i-th trial in the i-th (cycling).
    mapfile -t PLAN < <(python3 - "$UNDO_TRIALS" "$S" "$V" "$V1" "$R0" "$R1" "$B0" "$B1" "$B2" "$SEED" <<'PY'
import random, sys
n, S, V, V1, R0, R1, B0, B1, B2, seed = map(int, sys.argv[1:])
r = random.Random(seed + 1)
KINDS = [("replayed", R0 - V, max(R1 - V, R0 - V + 5)),  # asr-git revert at work
         ("rollback.started", 0, max(B1 - B0, 10)),      # the rollback, up to its switch
         ("replayed", 0, max(V1 - V - 10, 10)),          # the verification's window
         ("rollback.switched", 0, max(B2 - B1, 5) + 5),  # rolled back, not yet finished
         ("deploy.switched", 0, max(V - S, 10) + 10)]    # the cutover done, the replay
for i in range(n):
    name, lo, hi = KINDS[i % len(KINDS)]
    print(f"e {int(r.uniform(max(lo, 0), hi))} {name}")
PY
    )
    [ -z "${UNDO_KILLS:-}" ] || kills_plan "$UNDO_KILLS"
    trials_t0=$SECONDS
    log "the undo path: ${#PLAN[@]} trials, seed $SEED"
    log_plan
    run_trials
    summary "the undo path" $((SECONDS - trials_t0)) &&
        pass "crash safety of the undo path: ${#PLAN[@]} kills, every remediation failed with its commit reverted once, its release bad, the service on ${BASE_SHA:0:12}, 0 duplicates, audit and git clean ($((SECONDS - phase2_t0)) s in all)"
fi

[ -z "$VERDICT" ] || fail "${VERDICT%; } (replay with SEED=$SEED)"
