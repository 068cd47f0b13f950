#!/usr/bin/env bash
# detect_labels.sh - asr's generic detectors scored against the alert labels of BGL_2k, at line
# level and at incident level, next to the naive severity baseline (shared/bench/BASELINES.md,
# "Detection labels"). Definitions and the recorded results: bench/detection_labels.md.
#
# 1. Strips the label (first field; '-' = not an alert) from each line of BGL_2k.log into a temp
#    file, so asr never sees it.
# 2. Line level: bench/sigscan_lines (the generic detectors alone, no configured signatures)
#    prints, per line, the generic kind it matched and the template id the detector's miner gives
#    it.
# 3. Incident level: `asr detect` with a config holding one service `bgl`, no signatures and the
#    default detection settings (generic detectors on).
# 4. bench/detect_labels.py scores both against the labels, computes the naive baseline from the
#    severity field in the same run, and checks that the two asr outputs agree.
#
# Usage: bench/detect_labels.sh [BUILD_DIR]   (default: $ASR_BUILD, else build; it must hold asr
#        and bench/sigscan_lines: cmake --build BUILD_DIR --target asr asr-exec sigscan_lines)
# Environment: ASR_DATA (default ../shared/datasets/loghub_2k next to the repo). The data are
# read in place and never copied into the repository (see the dataset's README for its licence).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-${ASR_BUILD:-$here/../build}}
ASR=$BUILD/asr
SIGSCAN=$BUILD/bench/sigscan_lines
DATA=${ASR_DATA:-$here/../../shared/datasets/loghub_2k}
LOG=$DATA/BGL/BGL_2k.log
for f in "$ASR" "$SIGSCAN"; do
    [ -x "$f" ] || { echo "detect_labels.sh: $f is missing: build it first" >&2; exit 1; }
done
[ -r "$LOG" ] || { echo "detect_labels.sh: $LOG is not readable (set ASR_DATA)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The label is everything up to the first space; the rest of the line is what a log file of
# the machine would hold.
cut -d' ' -f2- "$LOG" > "$tmp/bgl.log"
# asr detect skips the filesystem checks, so repo/start/listen only have to be well formed.
cat > "$tmp/bgl.yaml" <<'EOF'
services:
  - name: bgl
    repo: .
    start: [/bin/true]
    listen: 127.0.0.1:9
EOF

"$SIGSCAN" "$tmp/bgl.log" > "$tmp/lines.tsv"
"$ASR" detect -c "$tmp/bgl.yaml" --service bgl "$tmp/bgl.log" > "$tmp/incidents.jsonl"

echo "# asr generic detectors on BGL_2k ($(git -C "$here/.." rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d))"
echo
python3 "$here/detect_labels.py" "$LOG" "$tmp/lines.tsv" "$tmp/incidents.jsonl" \
    "$DATA/BGL/BGL_2k.log_structured_corrected.csv"
