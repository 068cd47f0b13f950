#!/usr/bin/env bash
# templates.sh - template-mining quality and speed of `asr templates` on Loghub-2k (DEV half).
#
# For each of the 8 DEV systems: runs `asr templates` with the system's format and masks
# (from shared/datasets/loghub_2k/SETTINGS.md, kept below as data), scores it with
# shared/bench/logparse_eval.py against the corrected labels, and prints GA, PA and clusters /
# true groups next to the reference Drain (shared/bench/BASELINES.md); then the same without
# masks (the product default); then the means. Finally a speed figure: the 8 logs' Content
# repeated to >= 1,000,000 lines, mined single-threaded (the miner loop only, from --time), and
# the whole command end to end.
#
# Usage: bench/templates.sh [ASR_BINARY]   (default: $ASR_BIN, else build/asr)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ASR=${1:-${ASR_BIN:-$here/../build/asr}}
DATA=${ASR_DATA:-$here/../../shared/datasets/loghub_2k}
EVAL=${ASR_EVAL:-$here/../../shared/bench/logparse_eval.py}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

systems=(HDFS Hadoop Spark Zookeeper BGL HPC Thunderbird Apache)
declare -A FMT MASKS DRAIN
FMT[HDFS]='<Date> <Time> <Pid> <Level> <Component>: <Content>'
MASKS[HDFS]='blk_-?\d+
(\d+\.){3}\d+(:\d+)?'
FMT[Hadoop]='<Date> <Time> <Level> \[<Process>\] <Component>: <Content>'
MASKS[Hadoop]='(\d+\.){3}\d+'
FMT[Spark]='<Date> <Time> <Level> <Component>: <Content>'
MASKS[Spark]='(\d+\.){3}\d+
\b[KGTM]?B\b
([\w-]+\.){2,}[\w-]+'
FMT[Zookeeper]='<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>'
MASKS[Zookeeper]='(/|)(\d+\.){3}\d+(:\d+)?'
FMT[BGL]='<Label> <Timestamp> <Date> <Node> <Time> <NodeRepeat> <Type> <Component> <Level> <Content>'
MASKS[BGL]='core\.\d+'
FMT[HPC]='<LogId> <Node> <Component> <State> <Time> <Flag> <Content>'
MASKS[HPC]='=\d+'
FMT[Thunderbird]='<Label> <Timestamp> <Date> <User> <Month> <Day> <Time> <Location> <Component>(\[<PID>\])?: <Content>'
MASKS[Thunderbird]='(\d+\.){3}\d+'
FMT[Apache]='\[<Time>\] \[<Level>\] <Content>'
MASKS[Apache]='(\d+\.){3}\d+'
# Reference Drain GA, PA, clusters / true groups (BASELINES.md).
DRAIN[HDFS]='0.9975 0.6255 16/14'
DRAIN[Hadoop]='0.9475 0.5135 103/114'
DRAIN[Spark]='0.9200 0.3820 29/36'
DRAIN[Zookeeper]='0.9665 0.4970 46/50'
DRAIN[BGL]='0.9625 0.3435 108/120'
DRAIN[HPC]='0.8870 0.6355 47/46'
DRAIN[Thunderbird]='0.9550 0.0465 182/149'
DRAIN[Apache]='1.0000 0.6935 6/6'

# run SYSTEM USE_MASKS: prints "GA PA pred/truth"
run() {
    local s=$1 use=$2 args=()
    if [ "$use" = 1 ]; then
        while IFS= read -r m; do [ -n "$m" ] && args+=(--mask "$m"); done <<<"${MASKS[$s]}"
    fi
    "$ASR" templates --format "${FMT[$s]}" "${args[@]}" "$DATA/$s/${s}_2k.log" >"$tmp/$s.csv"
    python3 "$EVAL" --truth "$DATA/$s/${s}_2k.log_structured_corrected.csv" --pred "$tmp/$s.csv" \
        --json | python3 -c 'import json,sys; j=json.load(sys.stdin);
print("%.4f %.4f %d/%d" % (j["GA"], j["PA"], j["pred_groups"], j["truth_groups"]))'
}

table() {
    local use=$1 title=$2 sga=0 spa=0
    echo "### $title"
    echo
    echo "| system | GA | PA | clusters / true groups | Drain GA | Drain PA | Drain clusters |"
    echo "|---|---|---|---|---|---|---|"
    for s in "${systems[@]}"; do
        read -r ga pa cl < <(run "$s" "$use")
        read -r dga dpa dcl <<<"${DRAIN[$s]}"
        echo "| $s | $ga | $pa | $cl | $dga | $dpa | $dcl |"
        sga=$(python3 -c "print($sga+$ga)")
        spa=$(python3 -c "print($spa+$pa)")
    done
    python3 -c "print('| **mean** | **%.4f** | **%.4f** | | **0.9545** | **0.4671** | |' % ($sga/8, $spa/8))"
    echo
}

[ "${SPEED_ONLY:-0}" = 1 ] || table 1 "With the benchmark's masks"
[ "${SPEED_ONLY:-0}" = 1 ] || table 0 "Without masks (product default)"

# Speed: the Content column of the 8 logs (what the miner sees after the header split),
# repeated to >= 1,000,000 lines, format <Content>.
for s in "${systems[@]}"; do
    python3 -c 'import csv,sys
for r in csv.DictReader(open(sys.argv[1], newline="")): print(r["Content"])' \
        "$DATA/$s/${s}_2k.log_structured_corrected.csv"
done >"$tmp/one.log"
: >"$tmp/big.log"
for _ in $(seq 63); do cat "$tmp/one.log" >>"$tmp/big.log"; done
lines=$(wc -l <"$tmp/big.log")
echo "### Speed ($lines lines, single thread)"
echo
# The machine is shared: the load average says how far to trust the figures.
echo "    load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 1 2 3 4 5; do
    "$ASR" templates --format '<Content>' --time "$tmp/big.log" 2>&1 >/dev/null | sed 's/^/    /'
done | tee "$tmp/speed.txt"
python3 -c 'import re,sys,statistics
v=[float(m) for m in re.findall(r"(\d+) lines/s", open(sys.argv[1]).read())]
print("    median of %d runs: %.0f lines/s (best %.0f)" % (len(v), statistics.median(v), max(v)))' "$tmp/speed.txt"
start=$(date +%s.%N)
"$ASR" templates --format '<Content>' "$tmp/big.log" >/dev/null
end=$(date +%s.%N)
python3 -c "print('    end to end (read, split, mine, CSV out): %.0f lines/s' % ($lines/($end-$start)))"

# The same lines with their headers (timestamps, hosts...) left in: harder, since the first
# token is then a variable and every message of a given length shares one route.
for s in "${systems[@]}"; do cat "$DATA/$s/${s}_2k.log"; echo; done | grep -v '^$' >"$tmp/one.log"
: >"$tmp/big.log"
for _ in $(seq 63); do cat "$tmp/one.log" >>"$tmp/big.log"; done
echo
echo "### Speed, whole lines with headers ($(wc -l <"$tmp/big.log") lines, single thread)"
echo
"$ASR" templates --format '<Content>' --time "$tmp/big.log" 2>&1 >/dev/null | sed 's/^/    /'
