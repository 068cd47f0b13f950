# The build and test sandbox (docs/sandbox.md), through the real daemon and a tiny repository
# whose build script does what the commit's `mode` file says. In the bubblewrap sandbox:
#   ok       writes in its release dir (and its private /tmp): builds, tests, serves;
#   write    writes outside the release dir (a canary in the test's dir, $HOME, the state dir,
#            the repo): every write refused, the build fails, nothing changed;
#   net      connects to a listener on the host's 127.0.0.1: refused, the listener gets nothing;
#   memory   allocates 512 MiB under sandbox_memory_mb: 256: fails;
#   bigfile  writes 4 MiB under sandbox_file_mb: 1: killed by SIGXFSZ;
#   hang     sleeps past build_timeout_ms, with a setsid child: killed, nothing left behind;
#   procs    starts 40 processes under sandbox_procs: 32: fails (as an ordinary user: the kernel
#            does not enforce the limit for root, so as root the daemon runs as nobody here).
# Then `sandbox: none` builds `net` unsandboxed (the listener gets its line) with the warning in
# the log, and with bwrap missing from PATH a `sandbox: bwrap` build is refused with the fix.
source "$(dirname "$0")/lib.sh"

command -v bwrap >/dev/null || fail "bwrap is not installed (scripts/install-deps.sh installs it)"
# Not lib.sh's setup: the work dir is outside /tmp, because the sandbox has a private /tmp that
# would hide the real target of a write (the write must fail on the read-only tree itself).
WORK=$(mktemp -d "${ASR_TEST_TMP:-/var/tmp}/asr-it.XXXXXX")
trap teardown EXIT
REPO=$WORK/repo
STATE=$WORK/state
CFG=$WORK/asr.yaml
PORT=$(free_port)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
mkdir -p "$REPO" "$WORK/home"
echo original >"$WORK/canary"
echo original >"$WORK/home/canary"

# A listener on the host's loopback that records every connection and what it was sent.
"$PY" - "$WORK/listener.log" <<'PY' &
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
open(sys.argv[1] + ".port", "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept()
    c.settimeout(2)
    try:
        data = c.recv(200)
    except OSError:
        data = b""
    with open(sys.argv[1], "a") as f:
        f.write("connection %r\n" % data)
    c.close()
PY
disown # teardown kills it (its argv holds $WORK); no "Killed" notice at exit
wait_for "listener" 5 test -s "$WORK/listener.log.port"
LISTEN_PORT=$(cat "$WORK/listener.log.port")

cat >"$REPO/build.sh" <<'SH'
#!/bin/sh
# The build of tests/integration/test_sandbox.sh: does what the commit's `mode` file says.
mode=$(cat mode)
echo "mode $mode, uid $(id -u)"
case $mode in
ok*)
    echo "built $ASR_COMMIT" >out.txt || exit 1
    echo scratch >"/tmp/asr-sandbox-scratch-$ASR_COMMIT" || exit 1
    ;;
write)
    refused=0
    for f in "$CANARY" "$HOME/canary" "$HOME/new-file" "$STATE_DIR/escape" "$REPO_DIR/escape"; do
        if echo pwned >>"$f"; then echo "wrote $f"; else refused=$((refused + 1)); fi
    done
    echo "$refused of 5 writes refused"
    exit 1
    ;;
net)
    bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$LISTEN_PORT" && echo hello-from-the-build >&3' ||
        { echo "no connection"; exit 1; }
    echo connected
    echo "built $ASR_COMMIT" >out.txt
    ;;
memory)
    dd if=/dev/zero of=/dev/null bs=512M count=1 || exit 1
    ;;
bigfile)
    head -c 4194304 /dev/zero >big
    st=$?
    echo "head exit status $st"
    exit "$st"
    ;;
hang)
    setsid sleep 3141 &
    sleep 3142
    ;;
procs)
    for i in $(seq 40); do sleep 2 & done
    wait
    echo "40 processes started"
    ;;
esac
SH
printf '#!/bin/sh\n# The test step: the build left its mark in the release.\ngrep -q built out.txt\n' \
    >"$REPO/test.sh"
chmod +x "$REPO/build.sh" "$REPO/test.sh"
echo ok >"$REPO/mode"
git -C "$REPO" init -q
good=$(git_commit "ok")
commit_mode() { echo "$1" >"$REPO/mode" && git_commit "mode $1"; }

# write_cfg FILE REPO STATE HOME PORT [EXTRA-DEPLOY-KEYS]
write_cfg() {
    cat >"$1" <<EOF
state_dir: $3
services:
  - name: sbx
    repo: $2
    build: [./build.sh]
    test: [./test.sh]
    start: [$PY, -m, http.server, --bind, 127.0.0.1, "\${PORT}"]
    env: [CANARY=$WORK/canary, STATE_DIR=$3, REPO_DIR=$2, LISTEN_PORT=$LISTEN_PORT]
    listen: 127.0.0.1:$5
    health: {path: /out.txt, interval_ms: 100, timeout_ms: 1000, rise: 1, fall: 3}
    deploy: {build_timeout_ms: 3000, sandbox_memory_mb: 256, sandbox_procs: 32, sandbox_file_mb: 1${6:-}}
EOF
}
write_cfg "$CFG" "$REPO" "$STATE" "$WORK/home" "$PORT"
start() { # [env assignments...]: the daemon, with $HOME in the test's dir
    env HOME="$WORK/home" "$@" "$ASR_BIN" run -c "$CFG" --state-dir "$STATE" >>"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
}
serving() { [ "$(http GET "http://127.0.0.1:$PORT/out.txt")" = 200 ]; }
build_output() { db "select build_output from releases where commit_sha='$1'"; }
deploy_fails() { # NAME SHA: deploying SHA must fail; the CLI's output goes to $WORK/NAME.out
    if "$ASR_BIN" deploy sbx --ref "$2" --state-dir "$STATE" >"$WORK/$1.out" 2>&1; then
        fail "$1: the deploy succeeded: $(cat "$WORK/$1.out")"
    fi
    build_output "$2" >"$WORK/$1.build"
}
expect_in() { # WHAT FILE TEXT
    grep -qF -- "$3" "$2" || fail "$1: no '$3' in: $(cat "$2")"
    pass "$1: '$3'"
}

# (e) A normal build: it writes in its release dir and its own /tmp; tested and served.
start
wait_for "sbx serving the build's out.txt" 20 serving
rel=$STATE/releases/sbx/$good
expect_eq "out.txt in the release" "built $good" "$(cat "$rel/out.txt")"
[ ! -e "/tmp/asr-sandbox-scratch-$good" ] || fail "the build's /tmp is the host's /tmp"
pass "the build's /tmp was private"
grep -q "sbx: build.started: commit=${good:0:12} sandbox=bwrap (no network" "$WORK/daemon.log" ||
    fail "no build.started line saying bwrap"
grep -q "sbx: test.started: commit=${good:0:12} sandbox=bwrap" "$WORK/daemon.log" ||
    fail "no test.started line saying bwrap"
pass "build and test ran in the bwrap sandbox (log and events)"
expect_eq "events saying bwrap" 2 "$(db "select count(*) from events where kind in ('build.started','test.started') and detail like '%sandbox=bwrap%'")"

# (a) Writes outside the release dir.
sha=$(commit_mode write)
deploy_fails write "$sha"
expect_in "write: deploy" "$WORK/write.out" "build failed"
expect_in "write: build output" "$WORK/write.build" "5 of 5 writes refused"
expect_in "write: build output" "$WORK/write.build" "Read-only file system"
expect_eq "canary in the test dir" original "$(cat "$WORK/canary")"
expect_eq "canary in \$HOME" original "$(cat "$WORK/home/canary")"
for f in "$WORK/home/new-file" "$STATE/escape" "$REPO/escape"; do
    [ ! -e "$f" ] || fail "the build created $f"
done
pass "no file created outside the release"

# (b) The network: the host's loopback is out of reach.
net=$(commit_mode net)
deploy_fails net "$net"
expect_in "net: build output" "$WORK/net.build" "no connection"
[ ! -s "$WORK/listener.log" ] || fail "the listener got: $(cat "$WORK/listener.log")"
pass "the listener on the host's 127.0.0.1:$LISTEN_PORT got nothing"

# (c) Memory, and the file size limit.
sha=$(commit_mode memory)
deploy_fails memory "$sha"
expect_in "memory: build output" "$WORK/memory.build" "memory exhausted"
sha=$(commit_mode bigfile)
deploy_fails bigfile "$sha"
expect_in "bigfile: build output" "$WORK/bigfile.build" "head exit status 153" # 128 + SIGXFSZ

# (d) The timeout kills the whole sandbox, the setsid child included.
sha=$(commit_mode hang)
t0=$(date +%s%N)
deploy_fails hang "$sha"
ms=$((($(date +%s%N) - t0) / 1000000))
expect_in "hang: deploy" "$WORK/hang.out" "build timed out after"
[ "$ms" -lt 9000 ] || fail "the timed-out deploy took $ms ms"
wait_for "the hung build's processes gone" 5 bash -c '! pgrep -f "sleep 314[12]"'
pass "hang: killed after $ms ms, nothing left behind"
expect_eq "still serving the good build" "$good" "$(status_field sbx "s['commit']")"

# `sandbox: none`: the same network build runs unsandboxed, with a warning.
write_cfg "$CFG" "$REPO" "$STATE" "$WORK/home" "$PORT" ", sandbox: none"
n=$(grep -c "config reloaded" "$WORK/daemon.log" || true)
kill -HUP "$DAEMON_PID"
wait_for "config reload" 10 bash -c "[ \$(grep -c 'config reloaded' '$WORK/daemon.log') -gt $n ]"
"$ASR_BIN" deploy sbx --ref "$net" --state-dir "$STATE" >"$WORK/none.out" 2>&1 ||
    fail "unsandboxed deploy failed: $(cat "$WORK/none.out")"
expect_in "none: the listener" "$WORK/listener.log" "hello-from-the-build"
expect_in "none: log" "$WORK/daemon.log" "unsandboxed build of sbx (deploy.sandbox: none)"
expect_in "none: log" "$WORK/daemon.log" "build.started: commit=${net:0:12} sandbox=none (unsandboxed)"
expect_in "none: deploy progress" "$WORK/none.out" "running build unsandboxed"
stop_daemon

# `sandbox: bwrap` with bwrap missing (a PATH without it): refused, recorded, with the fix.
write_cfg "$CFG" "$REPO" "$STATE" "$WORK/home" "$PORT"
mkdir -p "$WORK/bin"
start PATH="$WORK/bin"
wait_for "sbx serving again" 20 serving
grep -q "sandbox: bubblewrap is not installed" "$WORK/daemon.log" || fail "the probe's warning is missing"
sha=$(commit_mode ok-again)
deploy_fails refused "$sha"
msg="build refused: bubblewrap is not installed (apt-get install bubblewrap), or set deploy.sandbox: none in $CFG"
expect_in "refused: deploy" "$WORK/refused.out" "$msg"
expect_eq "refused: build status" 126 "$(db "select build_status from releases where commit_sha='$sha'")"
expect_eq "refused: release state" bad "$(db "select state from releases where commit_sha='$sha'")"
expect_in "refused: build output" "$WORK/refused.build" "$msg"
stop_daemon

# (procs) The process limit, with asr as an ordinary user: as root the daemon runs as nobody.
U=$WORK/user
as_user=()
if [ "$(id -u)" -eq 0 ]; then
    command -v setpriv >/dev/null || fail "setpriv (util-linux) is needed to run asr as nobody"
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    chmod 755 "$WORK"
    "${as_user[@]}" test -x "$ASR_BIN" || fail "nobody cannot run $ASR_BIN"
fi
mkdir -p "$U/home"
cp -a "$REPO" "$U/repo"
echo procs >"$U/repo/mode"
git -C "$U/repo" add -A
git -C "$U/repo" -c user.name=asr-test -c user.email=test@asr.invalid commit -qm procs
procs=$(git -C "$U/repo" rev-parse HEAD)
[ "$(id -u)" -ne 0 ] || chown -R 65534:65534 "$U"
write_cfg "$U/asr.yaml" "$U/repo" "$U/state" "$U/home" "$(free_port)"
env -i PATH=/usr/bin:/bin HOME="$U/home" "${as_user[@]}" "$ASR_BIN" run -c "$U/asr.yaml" \
    >"$WORK/user.log" 2>&1 &
DAEMON_PID=$!
STATE=$U/state
wait_for "the procs build" 20 bash -c "grep -q 'deploy.failed' '$WORK/user.log'"
build_output "$procs" >"$WORK/procs.build"
expect_in "procs: build output" "$WORK/procs.build" "Cannot fork"
grep -q "40 processes started" "$WORK/procs.build" && fail "40 processes started under a limit of 32"
grep -q "processes 32 (not enforced" "$WORK/user.log" && fail "the ordinary user's limit said not enforced"
stop_daemon
pass "sandbox: all checks passed"
