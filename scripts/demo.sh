#!/usr/bin/env bash
# The runtime demo (`make demo`): asr builds the demo shop from git, serves it blue/green behind
# its proxy on 127.0.0.1:8080, survives a crash, deploys a fix with no dropped request, refuses a
# bad release, and rolls back. Everything runs in a temporary directory that is removed at the
# end; nothing outside it is touched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
asr=${ASR_BIN:-$root/build/asr}
work=$(mktemp -d /tmp/asr-demo.XXXXXX)
repo=$work/repo
state=$work/state
daemon=""

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
run() { printf '   $ %s\n' "$*"; "$@" 2>&1 | sed 's/^/     /'; }
cleanup() {
    if [ -n "$daemon" ]; then
        kill -TERM "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 http://127.0.0.1:8080/health)" = 200 ]; }
commit() { git -C "$repo" add -A && git -C "$repo" -c user.name=demo -c user.email=demo@asr.invalid commit -qm "$1"; }

for port in 8080 8081; do
    if curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/"; then
        echo "asr demo: port $port is already in use; stop whatever serves it and retry" >&2
        exit 1
    fi
done

bold "1. The demo service lives in a git repository"
mkdir -p "$repo"
cp -r "$root/demo/app" "$root/demo/upstream" "$root/demo/asr.yaml" "$repo/"
make -s -C "$repo/app" clean >/dev/null 2>&1 || true
make -s -C "$repo/upstream" clean >/dev/null 2>&1 || true
git -C "$repo" init -q
commit "shop: initial version"
say "repository $repo at $(git -C "$repo" rev-parse --short HEAD)"

bold "2. asr run: build, test, start blue, health-check, serve on 127.0.0.1:8080"
t0=$(date +%s%N)
"$asr" run -c "$repo/asr.yaml" --state-dir "$state" >"$work/asr.log" 2>&1 &
daemon=$!
until healthy; do
    kill -0 "$daemon" 2>/dev/null || { cat "$work/asr.log"; exit 1; }
    sleep 0.05
done
say "GET /health is 200 through the proxy $(ms_since "$t0") ms after start (build and tests included)"
run "$asr" status --state-dir "$state"

bold "3. The service has faults; each one logs a marker line, and asr opens an incident"
for route in run db-timeout db-timeout db-timeout; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:8080/test-fault/$route")
    say "POST /test-fault/$route -> $code"
done
sleep 0.3
grep -E 'incident [0-9]+ opened' "$work/asr.log" | sed -E 's/^.*WARN  /     /' | tail -n 2
say "one incident per fingerprint; the repeats are counted, and related faults are grouped:"
run "$asr" incidents --state-dir "$state"

bold "4. A crash: the process aborts; asr restarts it at once"
t0=$(date +%s%N)
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8080/test-fault/crash || true)
until healthy; do sleep 0.005; done
say "the crashing request got $code; the service answered 200 again $(ms_since "$t0") ms later"
grep -E 'slot.(exited|recovered)' "$work/asr.log" | sed -E 's/^.*(INFO |WARN )  /     /' | tail -n 2
sleep 0.3
say "the crash is an incident too, with what the process said last as its context:"
id=$("$asr" incidents --state-dir "$state" --json | python3 -c 'import json,sys; print([i["id"] for i in map(json.loads, sys.stdin) if i["kind"] == "exit"][0])')
run "$asr" incident show "$id" --state-dir "$state"

bold "5. Deploy a fix while clients keep calling: blue/green, no failed request"
sed -i 's/"SELECT FROM orders"/"SELECT count(*) FROM orders"/' "$repo/app/src/db.c"
commit "shop: fix the orders report SQL"
(
    ok=0 bad=0
    end=$((SECONDS + 60))
    while [ ! -e "$work/stop" ] && [ $SECONDS -lt $end ]; do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 http://127.0.0.1:8080/)" = 200 ]; then
            ok=$((ok + 1))
        else bad=$((bad + 1)); fi
    done
    echo "$ok $bad" >"$work/load"
) &
load=$!
run "$asr" deploy shop --state-dir "$state"
touch "$work/stop"
wait "$load"
read -r ok bad <"$work/load"
say "requests during the deploy: $ok ok, $bad failed"
say "POST /test-fault/run -> $(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8080/test-fault/run) (fixed)"

bold "6. A bad release: it builds, but its /health fails. asr keeps the old one serving"
sed -i 's/reply_str(app, conn, MHD_HTTP_OK, "{\\"status\\":\\"ok\\"}")/reply_str(app, conn, MHD_HTTP_SERVICE_UNAVAILABLE, "{\\"status\\":\\"down\\"}")/' "$repo/app/src/routes.c"
sed -i 's|^\t./tests/run.sh$|\t@echo "(integration tests skipped in this commit)"|' "$repo/app/Makefile"
commit "shop: a change that breaks /health"
run "$asr" deploy shop --state-dir "$state" || true
say "GET /health -> $(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/health), still the fixed release"

bold "7. Roll back to the previous good release (no rebuild)"
run "$asr" rollback shop --state-dir "$state"
say "POST /test-fault/run -> $(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8080/test-fault/run) (the first release again, with its fault)"
run "$asr" status --state-dir "$state"

bold "8. Stop: SIGTERM drains and stops every slot"
kill -TERM "$daemon"
wait "$daemon" && say "asr exited cleanly"
daemon=""
say "full daemon log was $work/asr.log (removed with the demo directory)"
