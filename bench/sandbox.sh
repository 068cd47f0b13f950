#!/usr/bin/env bash
# sandbox.sh - what the build sandbox costs per build or test step (docs/sandbox.md).
#
# Runs `true` N times (default 50) the way the daemon starts a step, interleaved:
#   outside  asr-exec PPID -- true                                (deploy.sandbox: none)
#   inside   asr-exec PPID -- bwrap <flags> -- asr-exec --rlimit ... -- true   (bwrap)
# with the same bubblewrap arguments as src/recover/sandbox.c (keep them in step), and prints
# the median, mean and p90 wall time of each and the difference: the sandbox's fixed cost.
#
#   bench/sandbox.sh [BUILD_DIR]      BUILD_DIR holds asr-exec (default build/)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}
N=${N:-50}
[ -x "$BIN/asr-exec" ] || { echo "sandbox.sh: no $BIN/asr-exec (make first)" >&2; exit 1; }
command -v bwrap >/dev/null || { echo "sandbox.sh: bwrap is not installed" >&2; exit 1; }
REL=$(mktemp -d "${TMPDIR:-/tmp}/asr-sandbox-bench.XXXXXX")
trap 'rm -rf "$REL"' EXIT

python3 - "$N" "$(cd "$BIN" && pwd)/asr-exec" "$(command -v bwrap)" "$REL" <<'PY'
import os, statistics, subprocess, sys, time

n, shim, bwrap, rel = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
pid = str(os.getpid())
base = ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
        "--unshare-cgroup-try", "--die-with-parent", "--cap-drop", "ALL", "--ro-bind", "/", "/",
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
mib = 1024 * 1024
outside = [shim, pid, "--", "true"]
inside = ([shim, pid, "--", bwrap] + base +
          ["--ro-bind", shim, shim, "--bind", rel, rel, "--chdir", rel, "--setenv", "TMPDIR",
           "/tmp", "--", shim, "--rlimit", f"as={4096 * mib}", "--rlimit", "nproc=1024",
           "--rlimit", f"fsize={1024 * mib}", "--", "true"])
times = {"outside": [], "inside": []}
for argv in (outside, inside):  # warm the page cache once
    subprocess.run(argv, check=True)
for _ in range(n):
    for name, argv in (("outside", outside), ("inside", inside)):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times[name].append((time.perf_counter() - t0) * 1000)

def p90(v):
    return sorted(v)[int(0.9 * (len(v) - 1))]

print(f"N={n} runs each, interleaved; load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
for name, v in times.items():
    print(f"{name:8} median {statistics.median(v):6.2f} ms  mean {statistics.mean(v):6.2f} ms"
          f"  p90 {p90(v):6.2f} ms")
d = statistics.median(times["inside"]) - statistics.median(times["outside"])
m = statistics.mean(times["inside"]) - statistics.mean(times["outside"])
print(f"RESULT sandbox cost per step: median +{d:.2f} ms, mean +{m:.2f} ms")
PY
