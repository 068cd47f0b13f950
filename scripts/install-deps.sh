#!/usr/bin/env bash
# Installs the Debian 12 packages that asr needs to build, test and run its demo and benchmarks,
# but only those that are missing, so a machine that has them all does not touch apt at all.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git curl
    libuv1-dev libsqlite3-dev libyaml-dev libhttp-parser-dev libgit2-dev libjansson-dev
    libmicrohttpd-dev libcmocka-dev libcurl4-openssl-dev zlib1g-dev libpcre2-dev
    clang libclang-rt-14-dev
    wrk supervisor bubblewrap
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "asr: installing missing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
