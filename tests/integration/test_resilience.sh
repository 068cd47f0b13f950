# The daemon under hostile or unlucky conditions: a flood of idle connections cannot starve its
# health checks (it caps connections per proxy and keeps descriptors in reserve), an idle client
# on the control socket does not keep a stopping daemon alive, and the services die with asr
# even when asr is killed with SIGKILL.
source "$(dirname "$0")/lib.sh"
setup

# 256 descriptors in all (soft and hard): the cap per proxy is then 64 connections.
(ulimit -n 256 && exec "$ASR_BIN" run -c "$CFG" --state-dir "$STATE") >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
wait_for "shop healthy" 20 healthy "$SHOP_PORT"
python3 - "$SHOP_PORT" <<'PY' &
import socket, sys, time
socks = []
for _ in range(400):
    try:
        socks.append(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2))
    except OSError:
        pass
time.sleep(6)  # hold them: two health intervals x fall would have killed the slot before
PY
flood=$!
sleep 4
expect_eq "health while 400 idle connections are held" healthy "$(status_field shop "s['health']")"
expect_eq "no restart caused by the flood" 0 "$(status_field shop "s['restarts']")"
wait "$flood"
wait_for "connection refusals logged" 5 grep -q "refusing new ones" "$WORK/daemon.log"
wait_for "serving after the flood" 5 healthy "$SHOP_PORT"
pass "the flood was capped and the service kept serving"

# An idle client on the control socket must not hold up a stop.
python3 -c "
import socket, time
s = socket.socket(socket.AF_UNIX); s.connect('$STATE/asr.sock'); time.sleep(30)" &
idle_client=$!
sleep 0.3
shop_pid=$(status_field shop "s['pid']")
t0=$(date +%s)
stop_daemon || fail "daemon exit status"
[ $(($(date +%s) - t0)) -lt 10 ] || fail "stop took too long with an idle control client"
pass "stopped despite an idle control client"
kill "$idle_client" 2>/dev/null || true

# SIGKILL of asr: its services must not live on (PR_SET_PDEATHSIG through asr-exec).
start_daemon
wait_for "shop healthy again" 20 healthy "$SHOP_PORT"
shop_pid=$(status_field shop "s['pid']")
up_pid=$(status_field upstream "s['pid']")
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
DAEMON_PID=""
wait_for "shop process gone after asr was killed" 5 bash -c "! kill -0 $shop_pid 2>/dev/null"
wait_for "upstream process gone after asr was killed" 5 bash -c "! kill -0 $up_pid 2>/dev/null"
pass "services died with asr"
# And the next daemon takes over cleanly (the stale socket and the interrupted state).
start_daemon
wait_for "shop healthy after a restart of asr" 20 healthy "$SHOP_PORT"
pass "a new daemon took over"
