#!/usr/bin/env bash
# Installs the Debian 12 packages that asr needs to build, test and run its demo and benchmarks,
# but only those that are missing, so a machine that has them all does not touch apt at all.
#
#   scripts/install-deps.sh           the packages for building, testing and the demo
#   scripts/install-deps.sh --bench   those plus the reference proxies bench/cutover.sh compares
#                                     asr's proxy with (bench/run-all.sh calls it this way)
#   scripts/install-deps.sh --fuzz    those plus clang and its runtimes for libFuzzer (make fuzz)
set -euo pipefail

packages=(
    build-essential cmake pkg-config git curl
    libuv1-dev libsqlite3-dev libyaml-dev libhttp-parser-dev libgit2-dev libjansson-dev
    libmicrohttpd-dev libcmocka-dev libcurl4-openssl-dev zlib1g-dev libpcre2-dev
    wrk supervisor bubblewrap
    # The operator surface's tests (issue 6): promtool checks GET /metrics, and the dashboard's
    # browser test drives Debian's Chromium with playwright-core from npm (tests/browser).
    prometheus chromium
)
# Node.js and npm for the browser test, unless a node with npm is already installed (NodeSource's
# nodejs package carries its own npm and conflicts with Debian's).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    packages+=(nodejs npm)
fi
# Signature matching uses Hyperscan's API (pkg-config libhs): Intel's Hyperscan on amd64, and its
# portable fork Vectorscan, which Debian builds for the other architectures.
if [ "$(dpkg --print-architecture)" = amd64 ]; then
    packages+=(libhyperscan-dev)
else
    packages+=(libvectorscan-dev)
fi

# Only for the benchmarks: bench/cutover.sh runs its own nginx and HAProxy (private configs, free
# ports on 127.0.0.1, in the foreground); the system services these packages ship are not used.
bench_packages=(
    nginx-light haproxy
)

# Only for `make fuzz`: the test suite replays the fuzz corpora with the ordinary compiler.
fuzz_packages=(
    clang libclang-rt-14-dev
)

bench=0
case ${1-} in
    "") ;;
    --bench) bench=1 ;;
    --fuzz) packages+=("${fuzz_packages[@]}") ;;
    *) echo "usage: $0 [--bench|--fuzz]" >&2; exit 2 ;;
esac
[ "$bench" -eq 0 ] || packages+=("${bench_packages[@]}")

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "asr: installing missing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# Installing nginx-light, haproxy or prometheus would start their system services (nginx on port
# 80, Prometheus on 9090); asr only wants their programs, so unless the machine already has a
# policy-rc.d, one that denies every start (exit 101) is in place for the install and removed
# afterwards.
policy=/usr/sbin/policy-rc.d
own_policy=0
remove_policy() { [ "$own_policy" -eq 0 ] || $sudo rm -f "$policy"; }
if [ ! -e "$policy" ]; then
    trap remove_policy EXIT
    printf '#!/bin/sh\n# scripts/install-deps.sh: no service starts during the install\nexit 101\n' |
        $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    own_policy=1
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
